"""Error handling of restique's foundation commands.

restique follows current restic's exit codes (not 0.14's): 10 = repository does not exist,
11 = repository is locked, 12 = wrong password, 1 = any other error. Every error is a single
line on stderr (usually starting with "Fatal:"), and never a Python traceback.

Damage is injected into copies of one restic-made repository. restique runs with --no-cache
there, since a cache (restic's or restique's, keyed by the repository id shared by all copies)
could legitimately hide damaged index or snapshot files.
"""
import base64
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import time
from datetime import datetime, timezone
from types import SimpleNamespace

import pytest

from conftest import PASSWORD, clean_env, restic_path, run_restic, run_restique


# --------------------------------------------------------------------------------------------
# helpers and fixtures



def assert_error(proc, code, *, contains=(), fatal=True, stdout_empty=False, what=""):
    """proc failed with exit `code` (an int or a collection of allowed ints) and printed exactly
    one line on stderr, without a Python traceback."""
    codes = {code} if isinstance(code, int) else set(code)
    detail = (
        f"{what}\nexit status {proc.returncode}\nstdout: {proc.stdout[-1000:]!r}\n"
        f"stderr: {proc.stderr[-3000:]!r}"
    )
    assert b"Traceback" not in proc.stderr, "Python traceback on stderr: " + detail
    assert proc.returncode in codes, f"expected exit status {sorted(codes)}: " + detail
    err_lines = proc.stderr.strip().splitlines()
    assert len(err_lines) == 1, "expected exactly one line on stderr: " + detail
    if fatal:
        assert err_lines[0].startswith(b"Fatal:"), "expected a 'Fatal:' message: " + detail
    for text in (contains,) if isinstance(contains, (bytes, str)) else contains:
        text = text.encode() if isinstance(text, str) else text
        assert text in err_lines[0], f"expected {text!r} in the message: " + detail
    if stdout_empty:
        assert proc.stdout == b"", "nothing should reach stdout: " + detail


def make_writable(path):
    os.chmod(path, 0o600)


def flip_byte(path, offset):
    """Invert all bits of the byte at offset (repository files are read-only: chmod first)."""
    make_writable(path)
    with open(path, "r+b") as f:
        f.seek(offset)
        old = f.read(1)
        assert len(old) == 1, f"{path} has no byte at {offset}"
        f.seek(offset)
        f.write(bytes([old[0] ^ 0xFF]))


def flip_middle_byte(path):
    flip_byte(path, os.path.getsize(path) // 2)


def pack_path(repo, pack_id):
    return repo / "data" / pack_id[:2] / pack_id


@pytest.fixture(scope="module")
def base_repo(tmp_path_factory, private_cache):
    """A format-2 repository with one restic backup; tests that modify it work on a copy."""
    root = tmp_path_factory.mktemp("errors-base")
    src = root / "src"
    src.mkdir()
    # one data blob of 200 KiB (below the chunker's 512 KiB minimum) plus two tiny ones
    (src / "random.bin").write_bytes(random.Random(99).randbytes(200 * 1024))
    (src / "a.txt").write_bytes(b"alpha\n")
    (src / "b.txt").write_bytes(b"bravo\n" * 10)
    repo = root / "repo"
    run_restic(repo, "init")
    run_restic(repo, "backup", "src", cwd=root)

    (index_id,) = os.listdir(repo / "index")
    (snapshot_id,) = os.listdir(repo / "snapshots")
    (key_id,) = os.listdir(repo / "keys")
    index = json.loads(run_restic(repo, "cat", "index", index_id).stdout)
    # the biggest data blob (random.bin's) and the pack holding it
    data_blobs = [
        dict(blob, pack=pack["id"])
        for pack in index["packs"]
        for blob in pack["blobs"]
        if blob["type"] == "data"
    ]
    big = max(data_blobs, key=lambda blob: blob["length"])
    assert big["length"] > 200 * 1024, big
    return SimpleNamespace(
        repo=repo, index_id=index_id, snapshot_id=snapshot_id, key_id=key_id, big_blob=big
    )


@pytest.fixture
def damaged(base_repo, tmp_path):
    """A private copy of base_repo to damage."""
    repo = tmp_path / "repo"
    shutil.copytree(base_repo.repo, repo, symlinks=True)
    return repo


# --------------------------------------------------------------------------------------------
# 1. wrong password


@pytest.mark.parametrize("args", [["cat", "config"], ["list", "snapshots"]], ids=" ".join)
def test_wrong_password_exits_12(base_repo, args):
    proc = run_restique(base_repo.repo, *args, env=clean_env(RESTIC_PASSWORD="wrong"), check=False)
    assert_error(proc, 12, contains=b"wrong password or no key found")
    assert proc.stderr.strip() == b"Fatal: wrong password or no key found"


# --------------------------------------------------------------------------------------------
# 2. missing repository


@pytest.mark.parametrize("args", [["cat", "config"], ["list", "snapshots"]], ids=" ".join)
@pytest.mark.parametrize("kind", ["nonexistent", "empty-dir"])
def test_missing_repository_exits_10(tmp_path, kind, args):
    repo = tmp_path / "no-repo-here"
    if kind == "empty-dir":
        repo.mkdir()
    proc = run_restique(repo, *args, check=False)
    assert_error(proc, 10, contains=str(repo))
    if kind == "empty-dir":
        assert os.listdir(repo) == [], "a failed command must not create files"
    else:
        assert not repo.exists(), "a failed command must not create the repository directory"


# --------------------------------------------------------------------------------------------
# 3. damaged files


def test_flipped_byte_in_pack(base_repo, damaged):
    blob = base_repo.big_blob
    flip_byte(pack_path(damaged, blob["pack"]), blob["offset"] + blob["length"] // 2)
    proc = run_restique(damaged, "--no-cache", "cat", "blob", blob["id"], check=False)
    assert_error(proc, 1, stdout_empty=True, what="cat blob of a damaged data blob")


def test_flipped_byte_in_index(base_repo, damaged):
    flip_middle_byte(damaged / "index" / base_repo.index_id)
    proc = run_restique(damaged, "--no-cache", "list", "blobs", check=False)
    assert_error(proc, 1, what="list blobs with a damaged index")


def test_flipped_byte_in_snapshot(base_repo, damaged):
    flip_middle_byte(damaged / "snapshots" / base_repo.snapshot_id)
    proc = run_restique(damaged, "--no-cache", "cat", "snapshot", base_repo.snapshot_id,
                        check=False)
    assert_error(proc, 1, stdout_empty=True, what="cat snapshot of a damaged snapshot")


def test_flipped_byte_in_key_data(base_repo, damaged):
    key_file = damaged / "keys" / base_repo.key_id
    key = json.loads(key_file.read_bytes())
    data = bytearray(base64.b64decode(key["data"]))
    data[len(data) // 2] ^= 0xFF
    key["data"] = base64.b64encode(bytes(data)).decode()
    make_writable(key_file)
    key_file.write_text(json.dumps(key))
    proc = run_restique(damaged, "--no-cache", "cat", "config", check=False)
    # an unauthenticated key looks exactly like a wrong password, so 12 is acceptable here
    assert_error(proc, {1, 12}, stdout_empty=True, what="cat config with a damaged key")


def test_key_file_not_json(base_repo, damaged):
    key_file = damaged / "keys" / base_repo.key_id
    make_writable(key_file)
    key_file.write_bytes(b"garbage\n")
    proc = run_restique(damaged, "--no-cache", "cat", "config", check=False)
    assert_error(proc, 1, stdout_empty=True, what="cat config with a key file that is not JSON")


def test_flipped_byte_in_config(damaged):
    flip_middle_byte(damaged / "config")
    proc = run_restique(damaged, "--no-cache", "cat", "config", check=False)
    assert_error(proc, 1, stdout_empty=True, what="cat config with a damaged config file")


# --------------------------------------------------------------------------------------------
# 4. truncated pack


def test_truncated_pack(base_repo, damaged):
    blob = base_repo.big_blob
    path = pack_path(damaged, blob["pack"])
    half = os.path.getsize(path) // 2
    assert blob["offset"] + blob["length"] > half, "the blob should extend past the cut"
    make_writable(path)
    os.truncate(path, half)
    proc = run_restique(damaged, "--no-cache", "cat", "blob", blob["id"], check=False)
    assert_error(proc, 1, stdout_empty=True, what="cat blob from a truncated pack")


# --------------------------------------------------------------------------------------------
# 5. locks


def lock_files(repo):
    return sorted(os.listdir(repo / "locks"))


def test_stale_lock_blocks_until_unlock(base_repo, damaged, tmp_path):
    repo = damaged  # a private copy; nothing is actually damaged
    pw = tmp_path / "pw2"
    pw.write_text("second-password\n")
    run_restic(repo, "key", "add", "--new-password-file", pw)
    (other_key,) = [k for k in os.listdir(repo / "keys") if k != base_repo.key_id]

    # a restic backup reading from a pipe holds a (non-exclusive) lock; kill -9 leaves it behind
    backup = subprocess.Popen(
        [restic_path(), "-r", str(repo), "backup", "--stdin", "--stdin-filename", "x"],
        env=clean_env(), stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 60
        while not lock_files(repo):
            assert backup.poll() is None, f"restic backup exited early ({backup.returncode})"
            assert time.monotonic() < deadline, "restic backup did not create a lock in 60 s"
            time.sleep(0.05)
        time.sleep(0.5)  # let restic finish writing the lock file
    finally:
        os.kill(backup.pid, signal.SIGKILL)
        backup.wait()
        backup.stdin.close()
    (stale,) = run_restic(repo, "list", "locks").stdout.decode().split()
    assert lock_files(repo) == [stale]
    lock = json.loads(run_restic(repo, "cat", "lock", stale).stdout)
    assert lock["pid"] == backup.pid and lock["exclusive"] is False, lock

    proc = run_restique(repo, "key", "remove", other_key, check=False)
    assert_error(proc, 11, contains=b"locked", what="exclusive command vs a stale lock")
    assert other_key in os.listdir(repo / "keys"), "the key was removed despite the lock"

    run_restique(repo, "unlock")
    assert lock_files(repo) == [], "unlock did not remove the stale lock"
    assert run_restic(repo, "list", "locks").stdout == b""

    proc = run_restique(repo, "key", "remove", other_key)
    assert other_key not in os.listdir(repo / "keys")
    assert lock_files(repo) == []


def test_foreign_lock_is_not_stale(damaged):
    import restique  # the library; imported here so the other tests run without it

    repo = damaged  # a private copy; nothing is actually damaged
    assert lock_files(repo) == []
    lock = {
        # whole seconds: Go re-marshals times without trailing zeros, which keeps the
        # comparison with `restic cat lock` below exact
        "time": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "exclusive": True,
        "hostname": "otherhost",
        "username": "someone",
        "pid": 4242,
    }
    assert socket.gethostname() != "otherhost"
    r = restique.open_repository(str(repo), password=PASSWORD)
    try:
        lock_id = r.save_unpacked("lock", json.dumps(lock).encode())
    finally:
        r.close()
    assert lock_files(repo) == [lock_id]
    # restic reads what the library wrote
    assert json.loads(run_restic(repo, "--no-lock", "cat", "lock", lock_id).stdout) == lock

    proc = run_restique(repo, "cat", "config", check=False)
    assert_error(proc, 11, contains=b"locked", stdout_empty=True,
                 what="cat config vs an exclusive lock of another host")

    run_restique(repo, "unlock")
    assert lock_files(repo) == [lock_id], "unlock removed a lock of another host"

    run_restique(repo, "unlock", "--remove-all")
    assert lock_files(repo) == [], "unlock --remove-all left the lock"
    run_restique(repo, "cat", "config")


# --------------------------------------------------------------------------------------------
# 6. usage errors


def test_unknown_global_flag(tmp_path):
    proc = run_restique(None, "--bogus", check=False)
    assert_error(proc, 1, contains=b"--bogus", fatal=False, what="restique --bogus")


def test_unknown_command_flag(base_repo):
    proc = run_restique(base_repo.repo, "cat", "config", "--bogus", check=False)
    assert_error(proc, 1, contains=b"--bogus", fatal=False, what="restique cat config --bogus")


@pytest.mark.parametrize(
    "args",
    [["cat", "blob", "0" * 64], ["cat", "blob", "1234"], ["cat", "index", "abc"]],
    ids=["unknown-blob", "short-id", "odd-length-id"],
)
def test_bad_object_ids(base_repo, args):
    proc = run_restique(base_repo.repo, *args, check=False)
    assert_error(proc, 1, stdout_empty=True, what=" ".join(args))


# --------------------------------------------------------------------------------------------
# 7. init errors


def test_init_on_existing_repository(base_repo):
    keys_before = sorted(os.listdir(base_repo.repo / "keys"))
    proc = run_restique(base_repo.repo, "init", check=False)
    assert_error(proc, 1, contains=b"config file already exists")
    assert sorted(os.listdir(base_repo.repo / "keys")) == keys_before, "init added a key"


@pytest.mark.parametrize("version", ["3", "0", "foo"])
def test_init_with_invalid_version(tmp_path, version):
    repo = tmp_path / "repo"
    proc = run_restique(repo, "init", "--repository-version", version, check=False)
    assert_error(proc, 1, what=f"init --repository-version {version}")
    assert not repo.exists(), "nothing may be created for an invalid repository version"
