"""Folders scanned while the repository is opened (archiver/prescan.py): the scan follows the
walk's order, stops at its bound, never follows a symlinked target or (with -x) another file
system, and the walk takes its scans instead of scanning again, with the same snapshot tree."""
import os
import types

from restique.operations.archiver import BackupOptions, dir_scan
from restique.operations.archiver.prescan import Prescan
from restique.operations.backup import BackupRequest, run_backup
from restique.repository.repository import init_repository

from conftest import PASSWORD


def _scanned(*args, **kw):
    """Everything a prescan of args scans, once it is done."""
    prescan = Prescan(*args, **kw)
    prescan.wait()
    return prescan.finish()


def _tree(root):
    for d in ("b/y", "b/x/deep", "a", "c"):
        (root / d).mkdir(parents=True)
    for i, d in enumerate(("", "a", "b", "b/x", "b/x/deep", "b/y", "c")):
        (root / d / f"f{i}.txt").write_text("data" * (i + 1))
    os.symlink("b", root / "link-to-b")
    (root / "empty").mkdir()


def test_walk_order_and_bound(tmp_path):
    src = tmp_path / "src"
    _tree(src)
    scans = _scanned([str(src)], xattrs=True)
    walked = ["", "a", "b", "b/x", "b/x/deep", "b/y", "c", "empty"]
    assert list(scans) == [os.path.join(str(src), d) if d else str(src) for d in walked]
    # held in their C form until the walk takes them; the symlink is listed but not entered
    assert len(scans[str(src)]) == 6
    assert sorted(name for name, *_ in scans[str(src)].take()) == ["a", "b", "c", "empty", "f0.txt", "link-to-b"]
    assert len(scans[str(src)]) == 0  # taken once: its memory is freed
    # the bound counts entries held: the target (1) and its 6 entries reach 7, then it stops
    assert list(_scanned([str(src)], xattrs=True, limit=7)) == [str(src)]
    prescan = Prescan([str(src)], xattrs=True)
    prescan.wait()
    assert prescan.finish() and prescan.finish() == {}  # handed over once


def test_targets_taken_as_they_are(tmp_path, monkeypatch):
    src = tmp_path / "src"
    _tree(src)
    # a symlinked target is saved as the symlink: not scanned; a missing one is left to the walk
    assert _scanned([str(src / "link-to-b"), str(tmp_path / "missing")], xattrs=True) == {}
    # relative targets are scanned under their absolute paths, as the walk names them
    monkeypatch.chdir(src)
    assert list(_scanned(["b/x"], xattrs=False)) == [str(src / "b/x"), str(src / "b/x/deep")]


def test_one_file_system_stays(tmp_path, monkeypatch):
    src = tmp_path / "src"
    _tree(src)
    real_hold = dir_scan._scan.hold_dir

    class OtherDeviceForB:
        """A held scan in which "b" looks like a mount point."""

        def __init__(self, path, xattrs):
            self.path, self.scan = path, real_hold(path, xattrs)

        def __len__(self):
            return len(self.scan)

        def folders(self):
            return [(name, dev + 1 if self.path == str(src) and name == "b" else dev)
                    for name, dev in self.scan.folders()]

    from restique.operations.archiver import prescan as prescan_module
    monkeypatch.setattr(prescan_module, "_scan", types.SimpleNamespace(hold_dir=OtherDeviceForB))
    crossing = _scanned([str(src)], xattrs=True)
    staying = _scanned([str(src)], xattrs=True, one_file_system=True)
    assert str(src / "b/x") in crossing
    assert not any(path.startswith(str(src / "b")) for path in staying) and str(src / "c") in staying


def test_walk_takes_the_prescanned_folders(tmp_path, monkeypatch):
    src = tmp_path / "src"
    _tree(src)
    repos = [init_repository(str(tmp_path / name), PASSWORD, kdf_params=(1 << 10, 8, 1)) for name in ("r1", "r2")]
    try:
        plain = run_backup(repos[0], BackupRequest(paths=[str(src)], options=BackupOptions(read_concurrency=1)))
        scanned = []
        real_scan = dir_scan._scan.scan_dir

        def counting(path, xattrs):
            scanned.append(path)
            return real_scan(path, xattrs)

        prescan = Prescan([str(src)], xattrs=True)
        prescan.wait()  # all scanned before the walk starts
        monkeypatch.setattr(dir_scan, "_scan", types.SimpleNamespace(scan_dir=counting))
        ahead = run_backup(repos[1], BackupRequest(paths=[str(src)], options=BackupOptions(read_concurrency=1),
                                                   prescan=prescan))
    finally:
        for repo in repos:
            repo.close()
    assert scanned == []  # every folder came from the prescan
    assert ahead.tree == plain.tree
    stats = ahead.progress.stats
    assert (stats.files.new, stats.errors) == (7, 0)


def _lent_after(targets, monkeypatch):
    """Whether backup's prescan of targets lends the core to the key derivation's helper lane."""
    from restique.cli import cmd_backup
    from restique.repository import derivations

    lent = []
    monkeypatch.setattr(derivations, "lend_core", lambda: lent.append(True))
    ended = []
    prescan = Prescan([str(t) for t in targets], xattrs=True,
                      when_done=lambda p: (cmd_backup._lend_core(p), ended.append(p)))
    prescan.wait()
    assert ended == [prescan]  # called once, with the prescan, in its thread
    return bool(lent)


def test_the_core_is_lent_for_files_of_which_one_is_chunked(tmp_path, monkeypatch):
    """A backup of files with a chunked one holds read buffers larger than the helper's memory
    anyway; a folder's prescan uses the core itself (folders_scanned, largest_file)."""
    from restique.cli import cmd_backup
    from restique.repository.chunker import MIN_SIZE

    big, small = tmp_path / "big.bin", tmp_path / "small.txt"
    big.write_bytes(b"x" * MIN_SIZE)
    small.write_bytes(b"y" * (MIN_SIZE - 1))
    folder = tmp_path / "folder"
    folder.mkdir()
    (folder / "big.bin").write_bytes(b"x" * MIN_SIZE)
    os.symlink(big, tmp_path / "link-to-big")
    assert _lent_after([big], monkeypatch) and _lent_after([small, big], monkeypatch)
    assert not _lent_after([small], monkeypatch)
    assert not _lent_after([tmp_path / "link-to-big"], monkeypatch)  # a symlink is not followed
    assert not _lent_after([folder], monkeypatch) and not _lent_after([big, folder], monkeypatch)
    assert not _lent_after([tmp_path / "missing"], monkeypatch)
    # a stream (stdin, a command's output) is always chunked
    lent = []
    monkeypatch.setattr("restique.repository.derivations.lend_core", lambda: lent.append(True))
    cmd_backup._lend_core(None)
    assert lent == [True]
