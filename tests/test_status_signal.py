"""SIGUSR1 asks a running command for its status, as restic's does: a backup or restore in a
log prints one status then; any command goes on (SIGUSR1's default would end it)."""
import json
import os
import signal
import subprocess
import time

import pytest

from conftest import clean_env, restique_cmd, run_restique as restique

SLOW_SOURCE = ("--stdin-from-command", "--", "sh", "-c", "sleep 1.5; echo data")


@pytest.fixture(scope="module")
def repo(tmp_path_factory):
    repo = tmp_path_factory.mktemp("usr1") / "repo"
    restique(repo, "init")
    return repo


def run_signalled(repo, *args, signals=1, after=0.6):
    """Run restique with args, send SIGUSR1 `signals` times, 0.2 s apart, from `after` s."""
    proc = subprocess.Popen([*restique_cmd(), "-r", str(repo), *map(str, args)], env=clean_env(),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    time.sleep(after)
    for _ in range(signals):
        proc.send_signal(signal.SIGUSR1)
        time.sleep(0.2)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0 and b"Traceback" not in err, err
    return out


def test_backup_in_a_log_prints_a_status_for_each_signal(repo):
    out = run_signalled(repo, "backup", *SLOW_SOURCE, signals=2)
    status = [line for line in out.splitlines() if line.startswith(b"[0:0")]
    assert len(status) == 2 and all(b" files, " in line for line in status), out.decode()
    assert out.splitlines()[-1].startswith(b"snapshot ")


def test_json_backup_sends_a_status_message(repo):
    out = run_signalled(repo, "backup", "--json", *SLOW_SOURCE, signals=1)
    kinds = [json.loads(line)["message_type"] for line in out.splitlines()]
    assert kinds.count("status") >= 2 and kinds[-1] == "summary"  # the first one, and the asked one


def test_quiet_backup_says_nothing_and_goes_on(repo):
    assert run_signalled(repo, "-q", "backup", *SLOW_SOURCE, signals=2) == b""


def test_restore_in_a_log_prints_a_status(repo, tmp_path):
    source = tmp_path / "src"
    source.mkdir()
    (source / "big.bin").write_bytes(os.urandom(3 << 20))
    restique(repo, "backup", "--host", "restorehost", source)
    out = run_signalled(repo, "--limit-download", "1024", "restore", "latest", "--host", "restorehost",
                        "--target", tmp_path / "t", signals=1, after=1.0)
    assert any(line.startswith(b"[0:0") for line in out.splitlines()), out.decode()
    assert (tmp_path / "t" / str(source).lstrip("/") / "big.bin").read_bytes() == (source / "big.bin").read_bytes()


def test_a_command_without_status_goes_on(tmp_path):
    repo = tmp_path / "repo"
    restique(repo, "init")
    (tmp_path / "data.bin").write_bytes(os.urandom(1 << 20))
    restique(repo, "backup", tmp_path / "data.bin")
    started = time.monotonic()
    out = run_signalled(repo, "--limit-download", "256", "check", "--read-data", signals=2, after=0.8)
    assert b"no errors were found" in out and time.monotonic() - started > 1.4  # signalled while it ran
