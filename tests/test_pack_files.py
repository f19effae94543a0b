"""Data packs of a local repository go to a temporary file in data/ while they fill (memory
holds only what is not written yet), and are named once complete: what a failed, aborted or
killed run leaves is never taken for a pack, by restique or by restic."""
import ctypes
import errno
import mmap
import os
import random
import subprocess
import threading

import pytest

from conftest import run_restic, run_restique
from restique.backend import FileType, direct_writes
from restique.backend.base import BackendError, pack_files_of
from restique.backend.limiter import RateLimitedBackend
from restique.backend.local import LocalBackend
from restique.backend.memory import MemoryBackend
from restique.backend.parts import FileBody
from restique.backend.temp_pack_file import TempPackFile
from restique import _seal
from restique.model.ids import hash_id
from restique.repository import buffer_places, pack
from restique.repository.blob_store import BlobStore
from restique.repository.buffer_pool import HUGE_PAGE, BufferPool
from restique.repository.crypto import MasterKey
from restique.repository.index import MasterIndex
from restique.repository.pack_buffers import PackBuffers

STEP = 64 * 1024
BLOB = 40 * 1024


@pytest.fixture(autouse=True)
def small_steps(monkeypatch):
    monkeypatch.setattr(pack, "WRITE_STEP", STEP)


def _store(backend, pack_size=1024 * 1024):
    def save_file(ftype, data):
        name = hash_id(data)
        backend.save(ftype, name, data)
        return name

    return BlobStore(backend, MasterKey.random(), MasterIndex(), None, save_file, pack_size=pack_size)


def _blobs(count, seed=3):
    rng = random.Random(seed)
    return [rng.randbytes(BLOB) for _ in range(count)]


def _store_all(store, blobs):
    for data in blobs:
        store.store("data", hash_id(data), data)


def _pack_files(repo):
    return [e for e in os.scandir(os.path.join(repo, "data")) if e.is_file()]


def _packs(backend):
    return [name for name, _ in backend.list(FileType.PACK)]


def test_a_pack_is_written_while_it_fills_and_named_when_complete(tmp_path):
    backend = LocalBackend(str(tmp_path / "repo"))
    backend.create()
    store = _store(backend)
    blobs = _blobs(9)  # 360 KiB: the 1 MiB pack stays open
    _store_all(store, blobs)
    store.uploads.file_steps.wait()
    (partial,) = _pack_files(backend.path)
    assert "-tmp-" in partial.name
    written = 8 * (BLOB + 32)  # 2 blobs (>= STEP) at a time; a blob sealed is 32 bytes longer
    if store._packs["data"].file._direct is not None:  # past the page cache: whole blocks
        written -= written % direct_writes.BLOCK
    assert partial.stat().st_size == written
    assert _packs(backend) == []  # nothing looks like a pack yet
    store.flush()
    assert _pack_files(backend.path) == []
    (pack_id,) = _packs(backend)
    raw = backend.load(FileType.PACK, pack_id)
    assert hash_id(raw) == pack_id
    assert [store.load("data", hash_id(b)) for b in blobs] == blobs


def _resident_pages(mem, length):
    """How many of the first length bytes' pages of the map mem are in memory (mincore)."""
    libc = ctypes.CDLL(None, use_errno=True)
    page = mmap.PAGESIZE
    pages = (length + page - 1) // page
    vec = (ctypes.c_ubyte * pages)()
    address = ctypes.addressof(ctypes.c_char.from_buffer(mem))
    assert libc.mincore(ctypes.c_void_p(address), ctypes.c_size_t(length), vec) == 0, ctypes.get_errno()
    return sum(v & 1 for v in vec)


def _open_pack_with_8_blobs_written(tmp_path):
    """(store, its open pack's writer, bytes written to the pack's file): 9 blobs stored."""
    backend = LocalBackend(str(tmp_path / "repo"))
    backend.create()
    store = _store(backend)
    _store_all(store, _blobs(9))
    store.uploads.file_steps.wait()
    return store, store._packs["data"], 8 * (BLOB + 32)


def test_written_parts_give_their_place_in_the_buffer_to_the_next(tmp_path, monkeypatch):
    """A part written to the pack's file frees its place: the next blobs are sealed there
    again, the first free place first (here within RING bytes), instead of into fresh pages
    that would be faulted in and zeroed (~5% of a big file's backup CPU), and laid out as in the
    file, so that the file is still written straight from the buffer."""
    monkeypatch.setattr(pack, "RING", 4 * BLOB)
    backend = LocalBackend(str(tmp_path / "repo"))
    backend.create()
    store = _store(backend, pack_size=4 * 1024 * 1024)
    blobs = _blobs(80)  # 3.2 MiB: twenty times the ring, more than a huge page, in one pack
    for data in blobs:
        store.store("data", hash_id(data), data)
        store.uploads.file_steps.wait()
    writer = store._packs["data"]
    assert min(writer._ends) >= 0  # no blob needed memory of its own
    assert max(writer._ends) <= 4 * BLOB
    # (the kernel may back the ring with a whole huge page)
    assert _resident_pages(writer.buffer, len(writer.buffer)) == _resident_pages(writer.buffer, HUGE_PAGE)
    direct = writer.file._direct
    assert direct is None or direct.direct
    store.flush()
    (pack_id,) = _packs(backend)
    assert hash_id(backend.load(FileType.PACK, pack_id)) == pack_id
    assert [store.load("data", hash_id(b)) for b in blobs] == blobs


def test_a_blob_without_room_in_the_ring_gets_memory_laid_out_as_the_file(tmp_path, monkeypatch):
    """The ring full (nothing written yet), a blob is sealed into memory of its own, at the
    same offset from a block boundary as in the file: direct writes go on."""
    monkeypatch.setattr(pack, "RING", BLOB + 4096)
    monkeypatch.setattr(pack, "WRITE_STEP", 4 * BLOB)
    backend = LocalBackend(str(tmp_path / "repo"))
    backend.create()
    store = _store(backend)
    blobs = _blobs(6)
    _store_all(store, blobs)
    writer = store._packs["data"]
    own = [i for i, end in enumerate(writer._ends) if end < 0]
    assert own  # the ring held one blob at a time
    for i in own:
        region = writer._parts[i]
        if isinstance(region, memoryview) and len(region):
            assert _seal.buffer_address(region) % pack.ALIGN == writer.entries[i].offset % pack.ALIGN
    store.uploads.file_steps.wait()
    direct = writer.file._direct
    assert direct is None or direct.direct
    store.flush()
    assert [store.load("data", hash_id(b)) for b in blobs] == blobs


def test_the_next_pack_goes_on_in_the_buffer_of_the_one_before(tmp_path):
    """A pack's last parts are still being written when the next pack starts: that one takes
    the places left free in the same buffer, not a second buffer's fresh pages."""
    backend = LocalBackend(str(tmp_path / "repo"))
    backend.create()
    store = _store(backend, pack_size=256 * 1024)
    blobs = _blobs(40)  # 1.6 MiB: five full packs (7 blobs each) and one more
    _store_all(store, blobs)
    store.flush()
    assert store._pack_buffers._made == 1
    packs = _packs(backend)
    assert len(packs) == 6
    assert all(hash_id(backend.load(FileType.PACK, pack_id)) == pack_id for pack_id in packs)
    assert [store.load("data", hash_id(b)) for b in blobs] == blobs


def test_places_taken_stay_in_order_and_merged():
    """The buffer's places taken by parts not yet written: disjoint, in order, neighbours
    merged, whatever the order they are taken and freed in."""
    rng = random.Random(5)
    for _ in range(200):
        taken, held = [], []
        free_from = 0
        for _ in range(rng.randrange(1, 30)):
            if held and rng.random() < 0.4:
                place = held.pop(rng.randrange(len(held)))
                buffer_places.free(taken, *place)
            else:
                start = free_from + rng.randrange(0, 3)
                end = start + rng.randrange(1, 5)
                free_from = end
                buffer_places.take(taken, start, end)
                held.append((start, end))
            cells = set()
            for start, end in held:
                cells.update(range(start, end))
            assert all(a[1] < b[0] for a, b in zip(taken, taken[1:]))  # disjoint, not touching
            assert set().union(*(range(a, b) for a, b in taken)) == cells


def test_pool_maps_are_whole_huge_pages():
    """The pool's buffers are maps of whole huge pages (which the kernel places on a huge-page
    boundary, Linux 6.7+), laid out from a page boundary as the pack files are from their start."""
    pool = BufferPool(1, 24 * 1024 * 1024 + 4096)
    mem = pool.take()
    assert len(mem) % HUGE_PAGE == 0 and len(mem) >= pool.size
    assert _seal.buffer_address(mem) % pack.ALIGN == 0


def test_full_packs_are_stored_from_their_files(tmp_path):
    backend = LocalBackend(str(tmp_path / "repo"))
    backend.create()
    store = _store(backend, pack_size=256 * 1024)
    blobs = _blobs(40)
    _store_all(store, blobs)
    store.flush()
    assert len(_packs(backend)) >= 5 and _pack_files(backend.path) == []
    for name in _packs(backend):
        assert hash_id(backend.load(FileType.PACK, name)) == name
    assert [store.load("data", hash_id(b)) for b in blobs] == blobs


class FullDisk(LocalBackend):
    """A local disk that fills up while a pack's file is written."""

    def start_pack(self):
        pack_file = super().start_pack()
        write = pack_file.write
        writes = []

        def failing_write(parts):
            writes.append(1)
            if len(writes) == 2:
                raise OSError(errno.ENOSPC, "No space left on device")
            write(parts)

        pack_file.write = failing_write
        return pack_file


def test_a_failed_pack_file_fails_the_run_and_leaves_nothing(tmp_path):
    backend = FullDisk(str(tmp_path / "repo"))
    backend.create()
    store = _store(backend)
    _store_all(store, _blobs(10))
    with pytest.raises(BackendError) as failed:
        store.flush()
    assert failed.value.errno == errno.ENOSPC
    assert _pack_files(backend.path) == [] and _packs(backend) == []
    assert list(backend.list(FileType.INDEX)) == []  # no index names a pack that is not there
    # whoever stores next learns of it as the repository's failure, not as an OSError a file
    # reader would take for its file's own (and report as a read error, going on)
    data = b"one more blob"
    with pytest.raises(BackendError) as again:
        store.store("data", hash_id(data), data)
    assert again.value.errno == errno.ENOSPC


def test_an_aborted_run_removes_its_open_pack_file(tmp_path):
    backend = LocalBackend(str(tmp_path / "repo"))
    backend.create()
    store = _store(backend)
    _store_all(store, _blobs(10))
    store.uploads.file_steps.wait()
    assert _pack_files(backend.path)
    store.close()
    assert _pack_files(backend.path) == [] and _packs(backend) == []


def test_an_aborted_run_removes_a_full_pack_not_yet_queued(tmp_path):
    """A saver stopped (Ctrl-C) while it waits to queue the pack it closed: the pack is neither
    open nor queued, and its file once stayed behind after a stopped prune."""
    backend = LocalBackend(str(tmp_path / "repo"))
    backend.create()
    store = _store(backend, pack_size=256 * 1024)

    def interrupted(size):
        raise KeyboardInterrupt

    store.uploads.budget.take = interrupted
    with pytest.raises(KeyboardInterrupt):
        _store_all(store, _blobs(10))
    store.uploads.file_steps.wait()
    assert _pack_files(backend.path)
    store.close()
    assert _pack_files(backend.path) == [] and _packs(backend) == []


def test_a_dead_process_pack_file_is_removed_and_never_listed(tmp_path):
    backend = LocalBackend(str(tmp_path / "repo"))
    backend.create()
    proc = subprocess.Popen(["true"])  # a pid that has just ended
    proc.wait()
    stale = os.path.join(backend.path, "data", f"pack-tmp-{os.uname().nodename}-{proc.pid}-0")
    with open(stale, "wb") as f:
        f.write(b"half a pack")
    assert _packs(backend) == []
    backend.save(FileType.SNAPSHOT, "ab" * 32, b"{}")
    assert not os.path.exists(stale)


def test_restic_ignores_a_pack_file_being_written(tmp_path):
    repo, source = tmp_path / "repo", tmp_path / "src"
    source.mkdir()
    (source / "file").write_bytes(os.urandom(3 * 1024 * 1024))
    run_restique(repo, "init")
    run_restique(repo, "backup", source)
    live = repo / "data" / f"pack-tmp-{os.uname().nodename}-{os.getpid()}-0"
    live.write_bytes(os.urandom(1000))
    listed = run_restic(repo, "list", "packs").stdout.split()
    assert listed and all(len(name) == 64 for name in listed)
    assert b"no errors were found" in run_restic(repo, "check").stdout
    assert b"no errors were found" in run_restique(repo, "check").stdout


def test_rate_limited_packs_go_through_save():
    """--limit-upload meters what save() sends: packs must not bypass it through a file."""
    local = LocalBackend("/nonexistent")
    assert pack_files_of(local) is not None
    assert pack_files_of(RateLimitedBackend(local, upload_kib=100)) is None


class RemoteStorage(MemoryBackend):
    """Storage reached over connections: what its save() was given is recorded."""

    connections = 2

    def __init__(self):
        super().__init__()
        self.pack_bodies = []

    def save(self, ftype, name, data):
        if ftype is FileType.PACK:
            self.pack_bodies.append(type(data))
        super().save(ftype, name, data)


def test_a_remote_pack_is_kept_in_a_temporary_file_and_sent_from_it():
    backend = RemoteStorage()
    store = _store(backend, pack_size=256 * 1024)
    blobs = _blobs(20)
    _store_all(store, blobs)
    store.flush()
    assert backend.pack_bodies and set(backend.pack_bodies) == {FileBody}
    assert [store.load("data", hash_id(b)) for b in blobs] == blobs


def test_a_temporary_pack_file_is_gone_once_sent_or_dropped():
    backend = RemoteStorage()
    for finish in ("commit", "abort"):
        pack_file = TempPackFile(backend)
        pack_file.write([b"blob one", b"blob two"])
        fd = pack_file._file.fileno()
        if finish == "commit":
            pack_file.commit("cd" * 32, [b"header"])
            assert backend.load(FileType.PACK, "cd" * 32) == b"blob oneblob twoheader"
        else:
            pack_file.abort()
        with pytest.raises(OSError):
            os.fstat(fd)  # closed: an unnamed temporary file is gone with its descriptor


def _flush_in_a_thread(store, expected):
    """(the thread flushing store, the list that gets the expected exception it raises): a
    flush that hangs fails the test instead of hanging it."""
    failed = []

    def flush():
        try:
            store.flush()
        except expected as exc:
            failed.append(exc)

    flushing = threading.Thread(target=flush, daemon=True)
    flushing.start()
    return flushing, failed


def test_a_pack_given_up_after_a_failed_upload_waits_for_its_file_steps(monkeypatch):
    """An upload failed (a lost connection): the packs queued after it are given up, and such
    a pack's buffer goes back only once its file's steps are done. Given back before, a step
    still queued freed its places in the buffer a second time, its error ended the steps'
    thread, and the uploader waiting for the pack's last step (and a flush waiting for the
    uploader) hung: a backup over sftp whose server was killed did not exit."""
    backend = RemoteStorage()
    store = _store(backend)
    hold = threading.Event()
    store.uploads.file_steps.run(hold.wait)  # the pack's steps queue up behind this one
    _store_all(store, _blobs(9))  # 4 steps of 2 blobs queued, the 1 MiB pack left open
    store.uploads.error = BackendError(errno.ECONNABORTED, "connection lost")  # an earlier upload's
    discarding = threading.Event()
    discard = pack.PackWriter.discard

    def discarded(writer):
        discarding.set()
        discard(writer)

    monkeypatch.setattr(pack.PackWriter, "discard", discarded)
    flushing, failed = _flush_in_a_thread(store, BackendError)
    assert discarding.wait(10)  # the uploader gives the pack up
    hold.set()
    flushing.join(10)
    assert not flushing.is_alive(), "the flush hung"
    assert [exc.errno for exc in failed] == [errno.ECONNABORTED]
    store.uploads.file_steps.wait()  # the steps' thread is still there for the next packs
    assert store._pack_buffers.in_use() == 0
    store.close()
    assert _packs(backend) == []


def test_nothing_is_written_once_the_pack_is_finished():
    """A saver may still be in hash_added when the uploader finishes the pack: it must not
    write (or start) the file, which is the uploader's to commit from then on."""
    started = []
    buffers = PackBuffers(1, 1024 * 1024)
    writer = pack.PackWriter(MasterKey.random(), buffers.take(), lambda: started.append(1))
    placed = writer.reserve_many("data", [("ab" * 32, 3 * STEP, 0)], 3 * STEP)
    writer.filled_all([index for index, _ in placed])
    writer.close()
    _, parts, _ = writer.finish()  # hashes everything, writes nothing: no file yet
    writer.hash_added()
    assert started == [] and writer.file is None
    assert sum(len(p) for p in parts) > 3 * STEP  # the whole pack goes to save()


def test_a_small_blob_costs_little_memory_in_an_open_pack():
    """A 16 MiB pack of small files holds tens of thousands of blobs: each once kept ~550
    bytes of objects in the open pack (a backup of 200,000 small files peaked at 1.5x restic's
    memory); now ~240."""
    import tracemalloc

    buffer = mmap.mmap(-1, 8 << 20)
    blobs = [(os.urandom(32).hex(), 150 + k % 7, 0) for k in range(20000)]
    writer = pack.PackWriter(MasterKey.random(), buffer)
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        writer.reserve_many("data", blobs, 1 << 30)
        writer.filled_all(range(len(blobs)))
        per_blob = (tracemalloc.get_traced_memory()[0] - before) / len(blobs)
    finally:
        tracemalloc.stop()
    assert per_blob < 300
    assert len(writer) == len(blobs)


def test_a_step_that_fails_unexpectedly_fails_its_pack_not_the_steps_thread(monkeypatch):
    """Whatever a pack's file step raises is that pack's failure, raised when it is stored:
    the steps' thread goes on with the steps after it (a thread ended by a step had left
    whoever waited for a later one waiting for ever)."""
    backend = RemoteStorage()
    store = _store(backend)
    free = pack.PackWriter._free
    broken = [True]

    def freeing(writer, places):
        if broken and places:
            broken.clear()
            raise IndexError("a bug in a step")
        free(writer, places)

    monkeypatch.setattr(pack.PackWriter, "_free", freeing)
    _store_all(store, _blobs(9))
    flushing, failed = _flush_in_a_thread(store, IndexError)
    flushing.join(20)
    assert not flushing.is_alive(), "the flush hung"
    assert [str(exc) for exc in failed] == ["a bug in a step"]
    store.uploads.file_steps.wait()  # still there for the next packs
    assert _packs(backend) == []
