"""Retries, rate limits and the -o options: transient errors are retried with a notice in
restic's words, permanent ones fail at once, and a server that goes away in the middle of a
backup fails it cleanly, with no snapshot, and the next backup after its return succeeds."""
import os
import subprocess
import time

import pytest

from conftest import clean_env, restique_cmd, run_restic, run_restique
from servers import RcloneServer, start_stub
from restique.backend import FileType, open_backend
from restique.backend.limiter import RateLimitedBackend
from restique.backend.memory import MemoryBackend
from restique.backend.options import BackendOptions, parse_extended
from restique.backend.rest import RestBackend
from restique.backend.retry import RetryBackend, go_duration
from restique.errors import UsageError


def test_go_durations():
    assert [go_duration(s) for s in (0.720853, 1.5, 63.25, 0.0000012, 0.002)] == [
        "720.853ms", "1.5s", "1m3.25s", "1µs", "2ms"]


def test_two_failures_then_success_prints_two_notices():
    stub = start_stub()
    notices = []
    try:
        be = RetryBackend(RestBackend(f"{stub.url}/"), max_time=5, report=notices.append)
        be.save(FileType.PACK, "12345678901234", b"data")
        stub.failures["GET"] = 2
        assert be.load(FileType.PACK, "12345678901234") == b"data"
    finally:
        stub.shutdown()
    assert len(notices) == 3, notices
    for notice in notices[:2]:
        assert notice.startswith("Load(<data/1234567890>, 0, 0) returned error, retrying after ")
        assert notice.endswith(": unexpected HTTP response (500): 500 Internal Server Error")
    assert notices[2] == "Load(<data/1234567890>, 0, 0) operation successful after 2 retries"


def test_permanent_errors_are_not_retried():
    notices = []
    be = RetryBackend(MemoryBackend(), max_time=5, report=notices.append)
    with pytest.raises(FileNotFoundError):
        be.load(FileType.SNAPSHOT, "ab" * 32)
    assert notices == []


def test_retries_stop_after_the_bound():
    stub = start_stub()
    notices = []
    try:
        be = RetryBackend(RestBackend(f"{stub.url}/"), max_time=0.5, report=notices.append)
        stub.failures["HEAD"] = 1000
        start = time.monotonic()
        with pytest.raises(OSError, match="500"):
            be.stat(FileType.KEY, "cd" * 32)
        assert time.monotonic() - start < 2 and 1 <= len(notices) < 10
    finally:
        stub.shutdown()


def test_rate_limit():
    be = RateLimitedBackend(MemoryBackend(), upload_kib=100)
    start = time.monotonic()
    for n in range(4):
        be.save(FileType.PACK, f"{n:064x}", b"x" * 51200)  # 200 KiB at 100 KiB/s: a 1 s burst, then 1 s
    assert 0.8 < time.monotonic() - start < 2.5


def test_extended_options():
    assert parse_extended(["rest.connections=3", "flag"]) == {"rest.connections": "3", "flag": ""}
    with pytest.raises(UsageError, match="present more than once"):
        parse_extended(["a=1", "a=2"])
    opts = BackendOptions(extended={"rest.connections": "3", "s3.region": "x"})
    be = open_backend("rest:http://127.0.0.1:1/r/", opts)
    assert isinstance(be, RetryBackend) and be.connections == 3
    with pytest.raises(UsageError, match="capacity must be a positive number"):
        open_backend("rest:http://127.0.0.1:1/r/", BackendOptions(extended={"rest.connections": "0"}))


def test_limit_flags_no_longer_warn(tmp_path):
    repo = tmp_path / "repo"
    run_restique(repo, "init")
    out = run_restique(repo, "--limit-upload", "100000", "--limit-download", "100000", "snapshots")
    assert b"not implemented" not in out.stderr


def _source_and_rest_server(tmp_path):
    """12 MiB to back up, and a running REST server with the repository's location."""
    src = tmp_path / "src"
    src.mkdir()
    for n in range(12):
        (src / f"f{n}").write_bytes(os.urandom(1 << 20))
    server = RcloneServer(tmp_path / "store").start()
    return src, server, f"rest:{server.url}/r/"


def test_server_gone_in_the_middle_of_a_backup(tmp_path):
    src, server, repo = _source_and_rest_server(tmp_path)
    env = clean_env(RESTIQUE_BACKEND_RETRY_TIME="2s")
    try:
        run_restique(repo, "init", env=env)
        backup = subprocess.Popen([*restique_cmd(), "-r", repo, "--limit-upload", "2048", "backup", src],
                                  env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        time.sleep(1.5)
        server.stop()
        out, err = backup.communicate(timeout=60)
        text = err.decode()
        assert backup.returncode == 1, text
        assert "returned error, retrying after" in text and "Traceback" not in text
        assert text.strip().splitlines()[-1].startswith("Fatal: ")
        server.start()
        assert run_restic(repo, "snapshots", "--json").stdout.strip() in (b"[]", b"null")
        run_restique(repo, "unlock", env=env)  # the lock the failed backup could not remove
        run_restique(repo, "backup", src, env=env)
        run_restic(repo, "check")
    finally:
        server.stop()


def test_sigterm_while_retrying_a_dead_server_stops_at_once(tmp_path):
    """restic cancels its context on SIGTERM, retries included: the backup stops within about a
    second with 143 and one line, and leaves no snapshot."""
    src, server, repo = _source_and_rest_server(tmp_path)
    env = clean_env()  # restic's 15 minutes of retries
    try:
        run_restique(repo, "init", env=env)
        backup = subprocess.Popen([*restique_cmd(), "-r", repo, "--limit-upload", "2048", "backup", src],
                                  env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        time.sleep(1.5)
        server.stop()
        notices = b""
        deadline = time.monotonic() + 30
        while b"returned error, retrying after" not in notices and time.monotonic() < deadline:
            notices += backup.stderr.readline()
        assert b"retrying after" in notices, notices
        stopped_at = time.monotonic()
        backup.terminate()
        out, err = backup.communicate(timeout=30)
        took = time.monotonic() - stopped_at
        text = (notices + err).decode()
        assert backup.returncode == 143, text
        assert took < 2.0, (took, text)
        assert "Traceback" not in text
        server.start()
        assert run_restic(repo, "snapshots", "--json").stdout.strip() in (b"[]", b"null")
    finally:
        server.stop()
