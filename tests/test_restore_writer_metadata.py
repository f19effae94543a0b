"""Restore writers create new files and set a finished file's owner, times and mode through
its descriptor, a batch per native call (restique._restore); the finish step only sets what
they cannot (extended attributes, hard links, files that were there before). What is restored,
and the errors reported, must be what the finish step alone gave."""
import errno
import hashlib
import os
import stat

import pytest

from conftest import PASSWORD, run_restic
from restique import _restore
from restique.operations.restorer import RestoreOptions, Restorer, file_writer, finish
from restique.operations.restorer import metadata as metadata_module
from restique.operations.restorer.metadata import CHMOD, CHOWN, UTIME, apply_metadata, calls_problem
from restique.operations.restorer.recording import EntryMeta, FinishRecording
from restique.operations.snapshot_lookup import find_snapshot
from restique.repository.repository import open_repository

OLD_NS = 1_400_000_000_987_654_321
MODES = (0o644, 0o444, 0o4755, 0o2750, 0o600, 0o1777)


@pytest.fixture
def snapshot(restic_repo, tmp_path):
    """A restic backup of small files in assorted modes and times, one with an extended
    attribute, two hard links of one file and a symlink: (repo, tree id, source path)."""
    src = tmp_path / "src"
    (src / "sub").mkdir(parents=True)
    for i, mode in enumerate(MODES):
        for d in (src, src / "sub"):
            path = d / f"f{i}"
            path.write_bytes(os.urandom(100 + 700 * i))
            os.chmod(path, mode)
            os.utime(path, ns=(OLD_NS - 10**9 * i - 3, OLD_NS + 17 * i))
    (src / "empty").write_bytes(b"")
    (src / "xattr").write_bytes(b"with an attribute")
    try:
        os.setxattr(src / "xattr", "user.note", b"kept")
    except OSError:
        pass  # the file system has none: the file is then plain too
    (src / "linked").write_bytes(b"two names")
    os.link(src / "linked", src / "sub" / "linked2")
    os.symlink("f1", src / "link")
    for d in (src / "sub", src):
        os.utime(d, ns=(OLD_NS, OLD_NS))
    run_restic(restic_repo, "backup", str(src), cwd=str(tmp_path))
    repo = open_repository(str(restic_repo), PASSWORD)
    snap, _ = find_snapshot(repo, "latest")
    return repo, snap.tree, src


def _entries(root):
    out = {}
    for dirpath, dirnames, names in os.walk(root):
        for name in names + dirnames:
            path = os.path.join(dirpath, name)
            st = os.lstat(path)
            content = None
            if stat.S_ISREG(st.st_mode):
                with open(path, "rb") as f:
                    content = hashlib.sha256(f.read()).hexdigest()
            elif stat.S_ISLNK(st.st_mode):
                content = os.readlink(path)
            out[os.path.relpath(path, root)] = (st.st_mode, st.st_uid, st.st_gid, st.st_mtime_ns,
                                                st.st_nlink, content)
    return out


def test_writers_set_plain_files_metadata_and_the_finish_step_the_rest(snapshot, tmp_path, monkeypatch):
    repo, tree, src = snapshot
    by_finish = []

    def recorded(node, path, *args):
        by_finish.append(os.path.basename(path))
        return apply_metadata(node, path, *args)

    monkeypatch.setattr(finish, "apply_metadata", recorded)
    target = tmp_path / "out"
    stats = Restorer(repo, tree, RestoreOptions(str(target))).restore()
    assert not stats.errors and stats.files_restored == stats.files_total
    out = target / str(src).lstrip("/")
    finished = set(by_finish)  # by the first restore
    monkeypatch.setattr(FinishRecording, "plain_metadata", lambda self, record: None)
    by_finish_only = tmp_path / "by-finish"  # as before the writers set any
    assert not Restorer(repo, tree, RestoreOptions(str(by_finish_only))).restore().errors
    before = by_finish_only / str(src).lstrip("/")
    for i in range(len(MODES)):  # atime too, to the nanosecond (before reading them)
        assert os.lstat(out / f"f{i}").st_atime_ns == os.lstat(before / f"f{i}").st_atime_ns
    assert _entries(out) == _entries(src) == _entries(before)
    # the finish step: directories, the symlink, the hard links, the file with an attribute
    # (where the file system keeps them); every other file was finished by its writer
    plain = {f"f{i}" for i in range(len(MODES))} | {"empty"}
    assert not plain & finished - {"empty"}  # an empty file has no writer
    assert {"link", "linked", "linked2", "sub"} <= finished
    if _has_xattr(src / "xattr"):
        assert "xattr" in finished
        assert os.getxattr(out / "xattr", "user.note") == b"kept"


def _has_xattr(path):
    try:
        return "user.note" in os.listxattr(path)
    except OSError:
        return False


def test_a_metadata_failure_of_a_writer_is_reported_as_the_finish_step_words_it(snapshot, tmp_path, monkeypatch):
    repo, tree, src = snapshot
    real = _restore.finish_files

    def chmod_fails(calls, closing):
        failures = real(calls, closing)
        return failures + [(i, CHMOD, errno.EIO) for i in range(len(calls))]

    monkeypatch.setattr(file_writer._restore, "finish_files", chmod_fails)
    target = tmp_path / "out"
    stats = Restorer(repo, tree, RestoreOptions(str(target))).restore()
    out = target / str(src).lstrip("/")
    errors = dict(stats.errors)
    location = os.path.join(str(src), "sub", "f1")
    assert errors[location] == f"chmod {out / 'sub' / 'f1'}: input/output error"
    assert (out / "sub" / "f1").read_bytes() == (src / "sub" / "f1").read_bytes()


@pytest.mark.parametrize("call, name", [(CHOWN, "chown"), (UTIME, "utime"), (CHMOD, "chmod")])
@pytest.mark.parametrize("as_root", [False, True])
@pytest.mark.parametrize("err", [errno.EIO, errno.EPERM])
def test_calls_problem_words_a_failure_as_apply_metadata_does(tmp_path, monkeypatch, call, name, as_root, err):
    path = tmp_path / "file"
    path.write_bytes(b"x")
    meta = EntryMeta()
    meta.type, meta.unix_mode, meta.uid, meta.gid = "file", 0o644, os.getuid(), os.getgid()
    meta.atime_ns = meta.mtime_ns = OLD_NS
    meta.xattrs, meta.linktarget, meta.user, meta.group = (), "", "", ""

    def failing(*args, **kwargs):
        raise OSError(err, os.strerror(err), str(path))

    monkeypatch.setattr(metadata_module.os, name, failing)
    expected = apply_metadata(meta, str(path), True, False, as_root)
    monkeypatch.undo()
    assert calls_problem(str(path), [(call, err)], as_root) == expected


def test_native_calls_create_set_and_close(tmp_path):
    flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC
    good, missing = str(tmp_path / "new"), str(tmp_path / "no" / "new")
    fd, err = _restore.open_files([(good, flags, 0o600), (missing, flags, 0o600)])
    assert fd >= 0 and err == -errno.ENOENT
    os.write(fd, b"content")
    failures = _restore.finish_files([(fd, os.getuid(), os.getgid(), -1_500_000_000, OLD_NS, 0o4640)], [fd])
    assert failures == []
    st = os.lstat(good)
    assert (stat.S_IMODE(st.st_mode), st.st_atime_ns, st.st_mtime_ns) == (0o4640, -1_500_000_000, OLD_NS)
    with pytest.raises(OSError):
        os.fstat(fd)  # closed
    assert _restore.finish_files([(fd, 0, 0, 0, 0, 0o600)], []) == [(0, CHOWN, errno.EBADF),
                                                                     (0, UTIME, errno.EBADF),
                                                                     (0, CHMOD, errno.EBADF)]


def test_the_restore_hands_the_gil_on_quickly_and_leaves_the_interval_as_it_was(snapshot, tmp_path):
    """Its threads take turns at the GIL every GIL_SWITCH_SECONDS while it runs (the default
    5 ms kept a worker back after every native call); the caller's interval comes back."""
    import sys

    from restique.operations.restorer import RestoreProgress
    from restique.operations.restorer.restorer import GIL_SWITCH_SECONDS

    repo, tree, _ = snapshot
    seen = set()

    class Progress(RestoreProgress):
        def item(self, action, location, size):
            seen.add(sys.getswitchinterval())

    before = sys.getswitchinterval()
    assert before != GIL_SWITCH_SECONDS
    stats = Restorer(repo, tree, RestoreOptions(str(tmp_path / "out")), Progress()).restore()
    assert not stats.errors
    assert seen == {GIL_SWITCH_SECONDS}
    assert sys.getswitchinterval() == before
