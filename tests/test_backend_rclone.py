"""The rclone backend: the backend contract through `rclone serve restic` started by restique,
the command line round trips with the real restic, and rclone's life: reachable only with
the random credentials, stopped on close, gone when restique is killed."""
import itertools
import signal
import subprocess
import time

import pytest
import requests

from test_backend_conformance import *  # noqa: F401,F403 - the contract, run here against rclone

from conftest import clean_env, restique_cmd, run_restic, run_restique
from restique.backend import FileType
from restique.backend.options import BackendOptions
from restique.backend.rclone import RcloneBackend, command, open_rclone

_numbers = itertools.count()


@pytest.fixture
def fresh():
    """rclone's in-memory remote: a new, empty store for every test (its local remote writes
    files in place, which the contract's whole-or-nothing test would see)."""
    be = open_rclone(f":memory:repo{next(_numbers)}", "rclone::memory:", BackendOptions())
    yield be
    be.close()


def test_command_line_as_restic_builds_it():
    assert command("rclone", "serve restic --stdio --b2-hard-delete", "b2:bucket/path") == [
        "rclone", "serve", "restic", "--b2-hard-delete", "--addr", "127.0.0.1:0", "b2:bucket/path"]
    assert command("/opt/rclone -v", "serve restic", "x:") == [
        "/opt/rclone", "-v", "serve", "restic", "--addr", "127.0.0.1:0", "x:"]


def test_only_restique_can_talk_to_its_rclone(tmp_path):
    be = open_rclone(str(tmp_path), f"rclone:{tmp_path}", BackendOptions())
    try:
        assert isinstance(be, RcloneBackend) and be.url.startswith("http://127.0.0.1:")
        assert requests.head(f"{be.url}/config").status_code == 401
        assert be.auth and be.location == f"rclone:{tmp_path}"
        be.create()  # the backend's own requests carry the user and password
        be.save(FileType.KEY, "ab" * 32, b"key")
        assert be.load(FileType.KEY, "ab" * 32) == b"key"
        proc = be.process
    finally:
        be.close()
    assert proc.poll() is not None, "closing the backend stops rclone"


@pytest.fixture
def files(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    (src / "a.txt").write_text("hello rclone\n")
    (src / "b.bin").write_bytes(os.urandom(2 << 20))
    return src


def _same(target, src):
    inner = target / str(src).lstrip("/")
    for name in ("a.txt", "b.bin"):
        assert (inner / name).read_bytes() == (src / name).read_bytes()


def test_round_trips_with_restic(files, tmp_path):
    mine, theirs = f"rclone:{tmp_path / 'mine'}", f"rclone:{tmp_path / 'theirs'}"
    run_restique(mine, "init")
    run_restique(mine, "backup", files)
    run_restic(mine, "check", "--read-data")
    run_restic(mine, "restore", "latest", "--target", tmp_path / "r1")
    _same(tmp_path / "r1", files)
    run_restic(theirs, "init")
    run_restic(theirs, "backup", files)
    run_restique(theirs, "check", "--read-data")
    run_restique(theirs, "restore", "latest", "--target", tmp_path / "r2")
    _same(tmp_path / "r2", files)
    missing = run_restique(f"rclone:{tmp_path / 'none'}", "snapshots", check=False)
    assert missing.returncode == 10 and b"repository does not exist" in missing.stderr
    bad = run_restique(mine, "-o", "rclone.program=/no/such/rclone", "snapshots", check=False)
    assert (bad.returncode, bad.stderr.count(b"\n")) == (1, 1)


def _children(pid):
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            return [int(p) for p in f.read().split()]
    except FileNotFoundError:
        return []


def _alive(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(") ")[1][0] != "Z"
    except FileNotFoundError:
        return False


def test_rclone_does_not_outlive_a_killed_restique(files, tmp_path):
    repo = f"rclone:{tmp_path / 'repo'}"
    run_restique(repo, "init")
    # a slow upload keeps the backup running while it is killed
    proc = subprocess.Popen([*restique_cmd(), "-r", repo, "--limit-upload", "200", "backup", files],
                            env=clean_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 20
        while not _children(proc.pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        rclone = _children(proc.pid)
        assert rclone, "restique started rclone"
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
        deadline = time.monotonic() + 10
        while any(_alive(pid) for pid in rclone) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not any(_alive(pid) for pid in rclone)
    finally:
        if proc.poll() is None:
            proc.kill()
