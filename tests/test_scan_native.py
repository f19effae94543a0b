"""The native directory scan (restique._scan.scan_dir): every entry's lstat fields, symlink
target and extended attributes equal what os.lstat / os.readlink / os.listxattr give, for
every file type and any name bytes; nodes built from a scan equal nodes built the Python
way; errors name the folder as os.scandir does."""
import errno
import os
import shutil
import socket
import stat
import subprocess
import sys
import tempfile
import threading

import pytest

from restique import _scan
from restique.operations.archiver.dir_scan import DirScans
from restique.operations.fs_metadata import node_from_fields, node_from_stat, read_xattrs

FIELDS = ("st_mode", "st_ino", "st_dev", "st_nlink", "st_uid", "st_gid", "st_size", "st_atime_ns",
          "st_mtime_ns", "st_ctime_ns", "st_rdev")
DROP = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]
ODD_NAMES = [b"\xff\xfe", b"a\nb", b"\x01\x02", b"caf\xc3\xa9", b"caf\xe9", b" lead", b"trail ", b"-", b"\\"]


def _xattrs_supported(path) -> bool:
    try:
        os.setxattr(path, "user.probe", b"1")
        os.removexattr(path, "user.probe")
        return True
    except OSError:
        return False


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    """One folder with every kind of entry the walk meets."""
    base = tmp_path_factory.mktemp("scan") / "d"
    base.mkdir()
    (base / "file").write_bytes(b"x" * 1000)
    (base / "empty").write_bytes(b"")
    os.link(base / "file", base / "hardlink")
    (base / "sub").mkdir()
    (base / "sub" / "inner").write_bytes(b"y")
    os.symlink("file", base / "link")
    os.symlink("does/not/exist", base / "dangling")
    os.symlink(b"\xff/raw-target", os.fsencode(base / "rawlink"))
    os.symlink("t" * 3000, base / "longlink")  # longer than a first guess of the buffer
    os.mkfifo(base / "fifo")
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(str(base / "sock"))
    sock.close()
    os.mknod(base / "chardev", 0o600 | stat.S_IFCHR, os.makedev(1, 3))
    os.mknod(base / "blockdev", 0o600 | stat.S_IFBLK, os.makedev(7, 0))
    os.chmod(base / "file", 0o4755)
    for raw in ODD_NAMES:
        with open(os.path.join(os.fsencode(base), raw), "wb") as f:
            f.write(raw)
    assert _xattrs_supported(base / "file"), "the test folder's file system must keep user xattrs"
    os.setxattr(base / "file", "user.one", b"1")
    os.setxattr(base / "file", "user.binary", bytes(range(256)) * 12)  # 3 KiB, not text
    os.setxattr(base / "file", "user.empty", b"")
    os.setxattr(base / "sub", "user.dir", b"folder")
    return base


def _by_name(entries):
    return {e[0]: e for e in entries}


def test_every_entry_matches_lstat(folder):
    entries = _by_name(_scan.scan_dir(str(folder), True))
    assert sorted(entries) == sorted(os.listdir(folder))
    for name, (_, err, st, _, _) in entries.items():
        assert err == 0
        want = os.lstat(os.path.join(folder, name))
        for field in FIELDS:
            if field == "st_atime_ns" and stat.S_ISLNK(want.st_mode):
                continue  # reading the target (after the scan's lstat) sets the link's atime
            assert getattr(st, field) == getattr(want, field), (name, field)


def test_types_targets_and_xattrs(folder):
    entries = _by_name(_scan.scan_dir(os.fsencode(folder), True))
    kinds = {name: stat.S_IFMT(e[2].st_mode) for name, e in entries.items()}
    assert kinds["fifo"] == stat.S_IFIFO and kinds["sock"] == stat.S_IFSOCK
    assert kinds["chardev"] == stat.S_IFCHR and kinds["blockdev"] == stat.S_IFBLK
    assert entries["chardev"][2].st_rdev == os.makedev(1, 3)
    assert entries["file"][2].st_nlink == 2
    for name in ("link", "dangling", "rawlink", "longlink"):
        assert entries[name][3] == os.readlink(os.path.join(os.fsencode(folder), os.fsencode(name)))
    assert entries["file"][3] is None and entries["sock"][4] is None
    assert sorted(entries["file"][4]) == sorted(read_xattrs(str(folder / "file")))
    assert dict(entries["file"][4])["user.binary"] == bytes(range(256)) * 12
    assert entries["sub"][4] == [("user.dir", b"folder")]
    assert all(e[4] is None for e in _scan.scan_dir(str(folder), False))


def test_names_with_any_bytes(folder):
    names = {e[0] for e in _scan.scan_dir(str(folder), False)}
    for raw in ODD_NAMES:
        assert os.fsdecode(raw) in names
        assert os.fsencode(os.fsdecode(raw)) == raw


def test_nodes_equal_the_python_way(folder):
    """node_from_fields over a scan gives the node node_from_stat gives (the walk used it)."""
    for with_atime in (False, True):
        for name, err, st, link, xattrs in _scan.scan_dir(str(folder), True):
            if stat.S_ISSOCK(st.st_mode):
                continue
            path = os.path.join(str(folder), name)
            ours = node_from_fields(name, st, os.fsdecode(link) if link is not None else None, xattrs, with_atime)
            assert ours == node_from_stat(name, path, os.lstat(path), with_atime), name


def test_errors_name_the_folder_as_scandir_does(folder, tmp_path):
    for path in (str(tmp_path / "missing"), str(folder / "file")):
        with pytest.raises(OSError) as ours:
            _scan.scan_dir(path, False)
        with pytest.raises(OSError) as theirs:
            os.scandir(path)
        assert (type(ours.value), ours.value.errno, ours.value.filename) == \
            (type(theirs.value), theirs.value.errno, theirs.value.filename)


def test_a_held_scan_gives_what_scan_dir_gives(folder, tmp_path):
    for xattrs in (False, True):
        held = _scan.hold_dir(str(folder), xattrs)
        plain = _scan.scan_dir(str(folder), xattrs)
        assert len(held) == len(plain)
        assert sorted(held.folders()) == sorted((e[0], e[2].st_dev) for e in plain
                                                if not e[1] and stat.S_ISDIR(e[2].st_mode))
        assert sorted(held.take()) == sorted(plain)  # stat fields, times' texts, targets, xattrs
        assert len(held) == 0 and held.folders() == []
        with pytest.raises(ValueError):
            held.take()
    for path in (str(tmp_path / "missing"), str(folder / "file")):
        with pytest.raises(OSError) as ours:
            _scan.hold_dir(path, False)
        assert ours.value.filename == path


def test_unreadable_folder_is_a_permission_error():
    """Run as an unprivileged user (root reads every folder)."""
    base = tempfile.mkdtemp(dir="/dev/shm")
    try:
        os.chmod(base, 0o755)
        locked = os.path.join(base, "locked")
        os.mkdir(locked, 0o000)
        code = ("import sys; from restique import _scan\n"
                "try:\n    _scan.scan_dir(sys.argv[1], True)\n"
                "except PermissionError as e:\n    print(e.errno, e.filename)\n")
        out = subprocess.run(DROP + [sys.executable, "-c", code, locked], cwd=base,
                             capture_output=True, text=True, check=True)
        assert out.stdout.split() == [str(errno.EACCES), locked], out.stderr
    finally:
        shutil.rmtree(base)


def test_folder_changing_during_the_scan(tmp_path):
    """Entries created, renamed and removed while scanning: never a crash, and every entry
    is either described completely or reported as vanished."""
    for i in range(200):
        (tmp_path / f"f{i}").write_bytes(b"z")
    stop = threading.Event()

    def churn():
        i = 0
        while not stop.is_set():
            i += 1
            old, new = tmp_path / f"f{i % 200}", tmp_path / f"g{i % 200}"
            try:
                os.rename(old, new)
                os.rename(new, old)
                (tmp_path / f"n{i % 50}").write_bytes(b"n")
                os.unlink(tmp_path / f"n{(i + 25) % 50}")
            except FileNotFoundError:
                pass

    worker = threading.Thread(target=churn)
    worker.start()
    try:
        for _ in range(50):
            for name, err, st, link, xattrs in _scan.scan_dir(str(tmp_path), True):
                assert (err == 0 and stat.S_ISREG(st.st_mode)) or (err == errno.ENOENT and st is None), name
    finally:
        stop.set()
        worker.join()


def test_dir_scans_keep_only_what_the_walk_still_needs(folder):
    scans = DirScans(xattrs=False)
    first = scans.peek(str(folder))
    assert [e[0] for e in first] == sorted(os.listdir(folder))
    assert scans.peek(str(folder)) is first  # the reuse check and the walk share one scan
    assert scans.take(str(folder)) is first
    assert scans.take(str(folder)) is not first  # taken: scanned again when asked again
    scans.peek(str(folder / "sub"))
    scans.forget(str(folder / "sub"))
    assert not scans._kept
