"""Restore memory: planned files keep no path strings of their own (their directory's pair is
shared), the finish step learns which files it finishes from the plan walk's recording, and
local pack reads are small. Each must leave what is restored exactly as before."""
import hashlib
import os

import pytest

from conftest import PASSWORD, run_restic
from restique.operations.restorer import RestoreOptions, Restorer
from restique.operations.restorer import pack_reader
from restique.operations.snapshot_lookup import find_snapshot
from restique.repository.repository import open_repository

OLD_NS = 1_500_000_000_123_456_789


@pytest.fixture
def snapshot(restic_repo, tmp_path):
    """A restic backup of 3 directories of 12 files (random, 20-60 KiB: several per read),
    and the source: (repo, tree id, source path)."""
    src = tmp_path / "src"
    for d in ("one", "one/two", "three"):
        (src / d).mkdir(parents=True)
        for i in range(12):
            path = src / d / f"f{i:02d}"
            path.write_bytes(os.urandom(20_000 + 3_000 * i))
            os.chmod(path, 0o640 if i % 2 else 0o604)
            os.utime(path, ns=(OLD_NS + i, OLD_NS + 1000 * i))
    run_restic(restic_repo, "backup", str(src), cwd=str(tmp_path))
    repo = open_repository(str(restic_repo), PASSWORD)
    snap, _ = find_snapshot(repo, "latest")
    return repo, snap.tree, src


def _files(root):
    out = {}
    for dirpath, _, names in os.walk(root):
        for name in names:
            path = os.path.join(dirpath, name)
            st = os.lstat(path)
            with open(path, "rb") as f:
                digest = hashlib.sha256(f.read()).hexdigest()
            out[os.path.relpath(path, root)] = (st.st_mode, st.st_mtime_ns, digest)
    return out


def test_planned_files_share_their_directory_and_name_the_right_paths(snapshot, tmp_path):
    repo, tree, src = snapshot
    target = tmp_path / "out"
    restorer = Restorer(repo, tree, RestoreOptions(str(target), verify=True))
    stats = restorer.restore()
    assert not stats.errors
    files = restorer._files
    assert len(files) == 36
    by_dir = {}
    for f in files:
        assert "location" not in f.__slots__ and "target" not in f.__slots__
        assert f.target == os.path.join(str(target), f.location.lstrip("/"))
        assert f.location == os.path.join(str(src), os.path.relpath(f.target, target / str(src).lstrip("/")))
        by_dir.setdefault(os.path.dirname(f.target), []).append(f.directory)
    for pairs in by_dir.values():  # one (location, target) pair per directory, shared
        assert all(p is pairs[0] for p in pairs)
    assert _files(target / str(src).lstrip("/")) == _files(src)
    assert restorer.verify() == 36


def test_metadata_set_only_on_files_the_restore_wrote_or_found_right(snapshot, tmp_path):
    repo, tree, src = snapshot
    target = tmp_path / "out"
    Restorer(repo, tree, RestoreOptions(str(target))).restore()
    out = target / str(src).lstrip("/")
    same = out / "one" / "f03"  # content right: its metadata is set again
    os.chmod(same, 0o600)
    os.utime(same, ns=(1, 2))
    changed = out / "three" / "f05"  # content differs: written, then its metadata set
    changed.write_bytes(b"local")
    os.utime(changed, ns=(1, 2))
    stats = Restorer(repo, tree, RestoreOptions(str(target), overwrite="if-newer")).restore()
    assert not stats.errors
    want = _files(src)
    got = _files(out)
    assert got["one/f03"] == want["one/f03"]  # older than the snapshot's: restored
    assert got == want

    os.chmod(same, 0o600)
    os.utime(same, ns=(OLD_NS * 2, OLD_NS * 2))  # newer: if-newer leaves it and its metadata
    Restorer(repo, tree, RestoreOptions(str(target), overwrite="if-newer")).restore()
    st = os.lstat(same)
    assert (st.st_mode & 0o777, st.st_mtime_ns) == (0o600, OLD_NS * 2)
    Restorer(repo, tree, RestoreOptions(str(target), overwrite="never")).restore()
    assert os.lstat(same).st_mode & 0o777 == 0o600


def test_failed_file_is_named_by_its_snapshot_path_and_gets_no_metadata(snapshot, tmp_path):
    repo, tree, src = snapshot
    target = tmp_path / "out"
    load_pack = repo.load_pack_view
    calls = []

    def failing(pack_id, offset=0, length=None):
        calls.append(1)
        if len(calls) == 1:
            raise OSError(5, "Input/output error")
        return load_pack(pack_id, offset, length)

    repo.load_pack_view = failing
    restorer = Restorer(repo, tree, RestoreOptions(str(target), workers=1))
    stats = restorer.restore()
    assert stats.errors
    for location, message in stats.errors:
        assert location.startswith(str(src) + "/") and "input/output error" in message
        assert not os.path.lexists(os.path.join(str(target), location.lstrip("/")))


def test_local_reads_are_bounded_by_the_local_read_size(snapshot, tmp_path, monkeypatch):
    repo, tree, src = snapshot
    monkeypatch.setattr(pack_reader, "LOCAL_MAX_READ", 100_000)
    lengths = []
    load_pack = repo.load_pack_view

    def counting(pack_id, offset=0, length=None):
        lengths.append(length)
        return load_pack(pack_id, offset, length)

    repo.load_pack_view = counting
    target = tmp_path / "out"
    stats = Restorer(repo, tree, RestoreOptions(str(target))).restore()
    assert not stats.errors
    assert len(lengths) > 10 and max(lengths) <= 100_000 + 64 * 1024
    assert _files(target / str(src).lstrip("/")) == _files(src)


def test_remote_backends_keep_large_reads(snapshot):
    repo, _, _ = snapshot

    class Remote:
        connections = 5

    class Repo:
        backend = Remote()

    local = pack_reader.ContentRestorer(repo, None, None, 1)
    remote = pack_reader.ContentRestorer(Repo(), None, None, 1)
    try:
        assert local.max_read == pack_reader.LOCAL_MAX_READ < remote.max_read == pack_reader.MAX_READ
    finally:
        local.close()
        remote.close()


def test_walk_waits_for_the_writers_and_lets_go_of_written_files(snapshot, tmp_path, monkeypatch):
    """With a tiny queue the plan walk waits for the workers after each batch; the files
    handed on are not kept by the plan (only --verify needs them), and all is restored."""
    from restique.operations.restorer import plan

    repo, tree, src = snapshot
    monkeypatch.setattr(plan, "FIRST_BATCH", 2)
    monkeypatch.setattr(pack_reader, "MAX_QUEUED_BLOBS", 1)
    monkeypatch.setattr(pack_reader, "LOCAL_MAX_READ", 50_000)  # several packs' worth of reads
    queued = []
    add = pack_reader.ContentRestorer.add

    def recording_add(self, files):
        add(self, files)
        queued.append((self._queued_blobs, len(self._queued), self._min_queued))

    monkeypatch.setattr(pack_reader.ContentRestorer, "add", recording_add)
    target = tmp_path / "out"
    restorer = Restorer(repo, tree, RestoreOptions(str(target), workers=1))
    stats = restorer.restore()
    assert not stats.errors and stats.files_restored == stats.files_total
    assert len(queued) > 3
    assert all(blobs <= 1 or packs <= limit for blobs, packs, limit in queued)
    assert restorer._files == []
    with pytest.raises(Exception, match="verify"):
        restorer.verify()
    assert _files(target / str(src).lstrip("/")) == _files(src)


def test_local_reads_stay_below_the_size_mapped_on_its_own():
    """A local read's buffer comes from the heap, where the next read reuses its pages; one
    mapped on its own would be faulted in page by page for every read."""
    from restique.operations import allocator

    assert pack_reader.LOCAL_MAX_READ + 64 < allocator.LARGE_BLOCK


def test_remote_reads_stay_below_the_size_mapped_on_its_own():
    """Over a remote backend the 8 MiB reads are reused from the heap too: the threshold the
    restore sets lies above them there, and at the allocator's default for a local one."""
    from types import SimpleNamespace

    from restique.operations import allocator

    local, remote = SimpleNamespace(), SimpleNamespace(connections=5)
    assert pack_reader.mapped_block_threshold(local) == allocator.LARGE_BLOCK
    assert pack_reader.largest_read(remote) + 64 < pack_reader.mapped_block_threshold(remote)


def test_young_collections_are_fewer_during_a_restore_and_as_before_after(snapshot, tmp_path):
    import gc

    from restique.operations.restorer import RestoreProgress
    from restique.operations.collector import YOUNG_COLLECTION_THRESHOLD as YOUNG_COLLECTIONS

    repo, tree, src = snapshot
    seen = []

    class Progress(RestoreProgress):
        def item(self, action, location, size):
            seen.append(gc.get_threshold())

    before = gc.get_threshold()
    target = tmp_path / "out"
    stats = Restorer(repo, tree, RestoreOptions(str(target)), Progress()).restore()
    assert not stats.errors
    assert seen and all(t == (max(before[0], YOUNG_COLLECTIONS), *before[1:]) for t in seen)
    assert gc.get_threshold() == before
    assert _files(target / str(src).lstrip("/")) == _files(src)


def _dir_mtimes(root):
    return {os.path.relpath(d, root): os.stat(d).st_mtime_ns for d, _, _ in os.walk(root)}


def test_failed_files_are_removed_before_their_directory_gets_its_times(snapshot, tmp_path):
    """The finish step removes a file whose content failed when it meets it: its directory's
    mtime, set after that, stays the snapshot's."""
    repo, tree, src = snapshot
    load_pack = repo.load_pack_view
    calls = []

    def failing(pack_id, offset=0, length=None):
        calls.append(1)
        if len(calls) % 3 == 1:
            raise OSError(5, "Input/output error")
        return load_pack(pack_id, offset, length)

    src_dirs = _dir_mtimes(src)
    repo.load_pack_view = failing
    target = tmp_path / "out"
    stats = Restorer(repo, tree, RestoreOptions(str(target), workers=2)).restore()
    assert stats.errors
    restored = target / str(src).lstrip("/")
    assert _dir_mtimes(restored) == src_dirs
    failed = {os.path.relpath(location, str(src)) for location, _ in stats.errors}
    assert failed and not any(os.path.lexists(restored / name) for name in failed)
    expected = {name: v for name, v in _files(src).items() if name not in failed}
    assert _files(restored) == expected


def test_finish_step_sets_metadata_while_the_last_packs_are_written(snapshot, tmp_path, monkeypatch):
    """Batches of two files (each a pack task of its own): the tasks of the last directory
    wait until the finish step has finished another directory, which it can only do while
    they wait; everything is restored as in the snapshot."""
    import threading

    from restique.operations.restorer import DIR_RESTORED, RestoreProgress, plan

    repo, tree, src = snapshot
    monkeypatch.setattr(plan, "FIRST_BATCH", 2)
    monkeypatch.setattr(plan, "MAX_BATCH", 2)
    finished_dir = threading.Event()
    waited = []

    class Progress(RestoreProgress):
        def item(self, action, location, size):
            if action == DIR_RESTORED and location.endswith("/one/two"):
                finished_dir.set()

    restore_pack = pack_reader._restore_pack

    def last_dir_waits(repo, writer, pack_id, blobs, max_read):
        if any(f.location.startswith(str(src / "three")) for b in blobs.values() for f, _ in b.dests):
            waited.append(finished_dir.wait(30))
        restore_pack(repo, writer, pack_id, blobs, max_read)

    monkeypatch.setattr(pack_reader, "_restore_pack", last_dir_waits)
    target = tmp_path / "out"
    stats = Restorer(repo, tree, RestoreOptions(str(target), workers=2), Progress()).restore()
    assert not stats.errors and stats.files_restored == stats.files_total
    assert waited and all(waited)
    restored = target / str(src).lstrip("/")
    assert _files(restored) == _files(src)
    assert _dir_mtimes(restored) == _dir_mtimes(src)


def test_writers_that_end_without_a_file_end_the_restore_with_an_error(snapshot, tmp_path, monkeypatch):
    """A file the writers never finish (here: written, but never counted) must not leave the
    finish step waiting for ever."""
    from restique.errors import RestiqueError
    from restique.operations.restorer import file_writer, recording

    repo, tree, _ = snapshot
    monkeypatch.setattr(recording, "WAIT_SECONDS", 0.05)
    monkeypatch.setattr(file_writer.FilesWriter, "blobs_written", lambda self, written: None)
    with pytest.raises(RestiqueError, match="not written"):
        Restorer(repo, tree, RestoreOptions(str(tmp_path / "out"))).restore()


def test_an_unexpected_error_of_a_writer_ends_the_restore(snapshot, tmp_path, monkeypatch):
    repo, tree, _ = snapshot

    def broken(*args):
        raise ValueError("broken writer")

    monkeypatch.setattr(pack_reader, "_restore_batch", broken)
    with pytest.raises(ValueError, match="broken writer"):
        Restorer(repo, tree, RestoreOptions(str(tmp_path / "out"))).restore()


def test_recording_gives_back_every_name_and_field_it_was_given():
    """Names go to one byte string (any str: raw bytes as surrogate escapes, other scripts),
    numbers to narrow records, and what few entries need (a hard link's inode and device, a
    device's number, a uid no record holds) to the side table."""
    from restique.model.gotime import GoTime
    from restique.model.node import Node
    from restique.operations.restorer.recording import CONTENT_DONE, NO_CONTENT, FinishRecording

    t1, t2 = GoTime(1_600_000_000_123_456_789), GoTime(1_700_000_000_000_000_001)
    nodes = [
        Node("plain", "file", mode=0o640, mtime=t1, atime=t2, uid=1000, gid=100, links=1, inode=7,
             device_id=9, content=[]),
        Node("raw\udcff\udcfe-名前", "file", mode=0o600, mtime=t2, atime=t1, links=3, inode=2**40,
             device_id=2**33, content=[]),
        Node("dev", "chardev", mode=0o620, mtime=t1, atime=t1, device=2**35 + 5),
        Node("link", "symlink", mode=0o777, mtime=t1, atime=t1, linktarget="../x\udc80"),
        Node("odd", "file", mode=0o644, mtime=t1, atime=t1, uid=2**40, content=[]),
    ]
    recording = FinishRecording("/restore", False, False)
    for i, node in enumerate(nodes):
        recording.visit(node, f"/restore/d/{node.name}", f"/d/{node.name}", "/restore/d")
        if i == 0:
            recording.finish_content()
    recording.error("/d/broken\udcff", OSError(5, "gone"))
    seen, errors = [], []

    def visit(meta, target, location, parent):
        seen.append((meta, target, location, parent))

    recording.replay(visit, None, lambda location, exc: errors.append(location),
                     lambda location, fn, *args: fn(*args))
    assert [(target, location, parent) for _, target, location, parent in seen] == [
        (f"/restore/d/{n.name}", f"/d/{n.name}", "/restore/d") for n in nodes]
    assert errors == ["/d/broken\udcff"]
    for node, (meta, *_) in zip(nodes, seen):
        assert (meta.type, meta.unix_mode, meta.uid, meta.gid, meta.links, meta.inode, meta.device_id,
                meta.device, meta.linktarget, meta.atime_ns, meta.mtime_ns) == (
            node.type, node.unix_mode, node.uid, node.gid, node.links,
            node.inode if node.links > 1 else 0, node.device_id if node.links > 1 else 0,
            node.device, node.linktarget, node.atime.unix_ns, node.mtime.unix_ns)
    assert [meta.content for meta, *_ in seen] == [CONTENT_DONE] + [NO_CONTENT] * 4
    assert seen[1][0].inode == 2**40 and seen[1][0].device_id == 2**33
