"""`restique mount` through a real FUSE mount (root and /dev/fuse needed): the tree under
ids/<id>/ equals the backed-up source, restic's virtual directories, new snapshots within
5 s, concurrent readers, and clean ends on SIGINT, SIGTERM and an external unmount."""
import hashlib
import os
import re
import signal
import stat
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager

import pytest

from conftest import TRACEBACK, clean_env, restique_cmd, run_restic, run_restique
from test_backup import build_full_tree, saved_id, walk

UTC = clean_env(TZ="UTC")


def start_mount(repo, mnt, *flags):
    proc = subprocess.Popen([*restique_cmd(), "-r", str(repo), "mount", *flags, str(mnt)], env=UTC,
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 30
    while not os.path.ismount(mnt):
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            out, err = proc.communicate()
            pytest.fail(f"mount did not come up (exit {proc.returncode}): {out!r} {err!r}")
        time.sleep(0.05)
    return proc


def finish(proc, timeout=20):
    out, err = proc.communicate(timeout=timeout)
    assert TRACEBACK not in err, err
    return proc.returncode, out.decode(), err.decode()


@contextmanager
def mounted(repo, mnt, *flags):
    mnt.mkdir(exist_ok=True)
    proc = start_mount(repo, mnt, *flags)
    try:
        yield proc
    finally:
        if os.path.ismount(mnt):
            subprocess.run(["fusermount3", "-u", "-z", str(mnt)], check=False)
        if proc.poll() is None:
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    base = tmp_path_factory.mktemp("mount")
    source = base / "src"
    build_full_tree(source)
    repo = base / "repo"
    run_restique(repo, "init")
    sid = saved_id(run_restique(repo, "backup", "--json", "--host", "vm", "--tag", "t1", source, env=UTC))
    return base, source, repo, sid


def digest(path) -> str:
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def compare_with_source(source, top):
    """Every entry below source looks the same below top (the mounted snapshot's copy)."""
    srcb, topb = os.fsencode(source), os.fsencode(top)
    inodes = {}
    for rel in walk(srcb):
        st, mt = os.lstat(os.path.join(srcb, rel)), os.lstat(os.path.join(topb, rel))
        where = os.fsdecode(rel)
        assert stat.S_IFMT(mt.st_mode) == stat.S_IFMT(st.st_mode), where
        if not stat.S_ISLNK(st.st_mode):
            assert stat.S_IMODE(mt.st_mode) == stat.S_IMODE(st.st_mode), where
        assert (mt.st_uid, mt.st_gid, mt.st_mtime_ns) == (st.st_uid, st.st_gid, st.st_mtime_ns), where
        if stat.S_ISREG(st.st_mode):
            assert (mt.st_size, mt.st_nlink) == (st.st_size, st.st_nlink), where
            assert digest(os.path.join(topb, rel)) == digest(os.path.join(srcb, rel)), where
            inodes.setdefault(st.st_ino, set()).add(mt.st_ino)
        elif stat.S_ISLNK(st.st_mode):
            assert os.readlink(os.path.join(topb, rel)) == os.readlink(os.path.join(srcb, rel)), where
        elif stat.S_ISCHR(st.st_mode):
            assert mt.st_rdev == st.st_rdev, where
    # one inode number per source file: hard links share theirs, other files differ
    assert sorted(len(v) for v in inodes.values()) == [1] * len(inodes)
    assert len({next(iter(v)) for v in inodes.values()}) == len(inodes)
    assert sorted(os.listdir(topb)) == sorted(os.listdir(srcb))
    assert os.getxattr(os.path.join(topb, b"xattr.txt"), "user.test") == b"v"


def test_tree_equals_source_and_virtual_dirs(world):
    base, source, repo, sid = world
    mnt = base / "mnt"
    with mounted(repo, mnt):
        assert sorted(os.listdir(mnt)) == ["hosts", "ids", "snapshots", "tags"]
        listed = subprocess.run(["ls", "-ai", mnt / "ids"], capture_output=True, text=True).stdout.split()
        dots = dict(zip(listed[1::2], map(int, listed[0::2])))  # restic's mount lists . and ..
        assert (dots["."], dots[".."]) == (os.stat(mnt / "ids").st_ino, os.stat(mnt).st_ino)
        assert stat.S_IMODE(os.stat(mnt / "ids").st_mode) == 0o555
        compare_with_source(source, str(mnt / "ids" / sid[:8]) + str(source))
        when = os.readlink(mnt / "snapshots" / "latest")
        assert os.readlink(mnt / "hosts" / "vm" / "latest") == when
        assert os.readlink(mnt / "tags" / "t1" / "latest") == when
        assert sorted(os.listdir(mnt / "hosts" / "vm")) == sorted([when, "latest"])
        assert (mnt / "snapshots" / "latest" / str(source)[1:] / "small.txt").read_bytes() == b"hello restique\n"
        with pytest.raises(OSError):
            (mnt / "ids" / "new").mkdir()


def test_new_snapshot_appears_within_5_seconds(world):
    base, source, repo, _ = world
    mnt = base / "mnt-new"
    with mounted(repo, mnt):
        before = set(os.listdir(mnt / "ids"))
        new = saved_id(run_restique(repo, "backup", "--json", "--host", "later", source / "links", env=UTC))
        written = time.monotonic()
        while new[:8] not in os.listdir(mnt / "ids"):
            assert time.monotonic() - written < 5, "the new snapshot did not show up within 5 s"
            time.sleep(0.2)
        assert set(os.listdir(mnt / "ids")) == before | {new[:8]}
        assert "later" in os.listdir(mnt / "hosts")
        # the same snapshot; a same-second suffix (-1) is per folder, so hosts/later/ may not need it
        same_second = re.compile(r"-\d+$")
        assert os.readlink(mnt / "hosts" / "later" / "latest") == same_second.sub("", os.readlink(mnt / "snapshots" / "latest"))
    run_restique(repo, "forget", new)


def test_concurrent_readers_of_one_large_file(world):
    base, source, repo, sid = world
    mnt = base / "mnt-read"
    expected = digest(source / "random20m.bin")
    with mounted(repo, mnt):
        path = str(mnt / "ids" / sid[:8]) + str(source) + "/random20m.bin"
        with ThreadPoolExecutor(4) as pool:
            assert list(pool.map(digest, [path] * 4)) == [expected] * 4


@pytest.mark.parametrize("how, code", [("SIGINT", 130), ("SIGTERM", 143), ("umount", 0)])
def test_ends_cleanly(world, how, code):
    base, source, repo, _ = world
    mnt = base / f"mnt-{how}"
    with mounted(repo, mnt) as proc:
        os.listdir(mnt / "ids")
        if how == "umount":
            subprocess.run(["fusermount3", "-u", str(mnt)], check=True)
        else:
            proc.send_signal(getattr(signal, how))
        rc, out, err = finish(proc)
    assert rc == code, err
    assert not os.path.ismount(mnt)
    assert out.splitlines() == [f"Now serving the repository at {mnt}",
                                "Use another terminal or tool to browse the contents of this folder.",
                                "When finished, quit with Ctrl-c here or umount the mountpoint."]
    assert err.strip() == ("signal interrupt received, cleaning up" if how == "SIGINT" else "")
    assert run_restique(repo, "list", "locks").stdout == b""


def test_repository_written_by_restic(world, tmp_path):
    _, source, _, _ = world
    repo = tmp_path / "restic-repo"
    run_restic(repo, "init")
    run_restic(repo, "backup", "--host", "rh", source)
    mnt = tmp_path / "mnt"
    with mounted(repo, mnt, "--owner-root", "--time-template", "2006-01-02_15.04.05"):
        (short,) = os.listdir(mnt / "ids")
        top = str(mnt / "ids" / short) + str(source)
        assert digest(top + "/random20m.bin") == digest(source / "random20m.bin")
        assert os.stat(top + "/nested/a/other.txt").st_uid == 0
        assert ":" not in os.readlink(mnt / "snapshots" / "latest")


def test_errors_are_one_line(world, tmp_path):
    repo = world[2]
    proc = run_restique(repo, "mount", tmp_path / "missing", check=False)
    assert proc.returncode == 1
    assert proc.stderr.decode() == f"Fatal: mountpoint {tmp_path / 'missing'} does not exist\n"
    proc = run_restique(repo, "mount", check=False)
    assert (proc.returncode, proc.stderr) == (1, b"Fatal: wrong number of parameters\n")


def _write_calls(pid) -> int:
    with open(f"/proc/{pid}/io") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("syscw:"))


def test_a_folder_is_listed_in_two_requests_and_again_from_the_kernels_cache(world):
    """Folders open without asking the mount (it answered the first opendir "not
    implemented"): a first listing takes two requests (the entries, then their end), each
    answered with one write; the kernel keeps it, so listing the folder again asks nothing."""
    base, source, repo, sid = world
    mnt = base / "mnt-requests"
    with mounted(repo, mnt) as proc:
        top = os.open(str(mnt / "ids" / sid[:8]) + str(source), os.O_RDONLY | os.O_DIRECTORY)
        try:  # listed through the open folder: no lookups along its path
            before = _write_calls(proc.pid)
            names = os.listdir(top)
            first = _write_calls(proc.pid) - before
            again = os.listdir(top)
            second = _write_calls(proc.pid) - before - first
        finally:
            os.close(top)
    assert sorted(names) == sorted(os.listdir(source)) and again == names
    assert (first, second) == (2, 0)
