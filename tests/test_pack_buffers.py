"""Data blobs sealed straight into reused pack buffers: the two-step seal (prepare, then
seal_into the blob's place in the pack) gives what seal gives, a pack filled out of order by
several savers still has the SHA-256 of its file as its id, the pool bounds the data packs
in memory and gets every buffer back, a blob that could not be sealed keeps its pack from
being stored, and restic reads what is written this way."""
import hashlib
import random
import threading
import time

import pytest

import restique
from conftest import PASSWORD, run_restic
from restique import _seal
from restique.backend import FileType
from restique.backend.memory import MemoryBackend
from restique.errors import IntegrityError
from restique.model.ids import hash_id
from restique.repository import blob_store, pack_uploads
from restique.repository.blob_store import BlobStore
from restique.repository.crypto import MasterKey
from restique.repository.index import MasterIndex
from restique.repository.pack import PackWriter, header_length_from_tail, parse_header
from restique.repository.pack_buffers import PackBuffers

KEY = MasterKey.random()
KEYS = (KEY.encrypt, KEY.mac_k, KEY.mac_r)
MiB = 1 << 20


def sealed_into(data, level=3, always=False) -> bytes:
    payload, ulen = _seal.prepare(data, level, always)
    out = bytearray(payload + 32)
    _seal.seal_into(*KEYS, data, out)
    assert KEY.open(bytes(out), ulen) == data
    return bytes(out), ulen


@pytest.mark.parametrize("data", [b"", b"x", random.Random(1).randbytes(300_000), b"abc" * 100_000,
                                  random.Random(2).randbytes(MiB) + bytes(200_000)])
@pytest.mark.parametrize("level", [0, 3])
def test_two_step_seal_opens_to_its_input_and_compresses_as_seal(data, level):
    out, ulen = sealed_into(data, level)
    sealed, seal_ulen = _seal.seal(*KEYS, data, level)
    assert ulen == seal_ulen and len(out) == len(sealed)


def test_tree_blobs_are_always_compressed():
    out, ulen = sealed_into(b"\x00" * 10, 3, always=True)
    assert ulen == 10


def test_seal_into_needs_the_prepare_of_the_same_data_in_the_same_thread():
    data = random.Random(3).randbytes(100_000)
    with pytest.raises(_seal.SealError):
        _seal.seal_into(*KEYS, data, bytearray(len(data) + 32))  # no prepare
    payload, _ = _seal.prepare(data, 3)
    with pytest.raises(_seal.SealError):
        _seal.seal_into(*KEYS, data, bytearray(payload + 31))  # wrong length
    with pytest.raises(_seal.SealError):
        _seal.seal_into(*KEYS, data, bytearray(payload + 32))  # the failed call used it up
    text = b"restic " * 20_000
    payload, ulen = _seal.prepare(text, 3)
    _seal.seal(*KEYS, b"something else" * 9000, 3)  # reuses the scratch the payload is in
    with pytest.raises(_seal.SealError):
        _seal.seal_into(*KEYS, text, bytearray(payload + 32))
    payload, ulen = _seal.prepare(text, 3)
    errors = []

    def other_thread():
        try:
            _seal.seal_into(*KEYS, text, bytearray(payload + 32))
        except _seal.SealError as exc:
            errors.append(exc)

    t = threading.Thread(target=other_thread)
    t.start()
    t.join()
    assert len(errors) == 1
    out = bytearray(payload + 32)
    _seal.seal_into(*KEYS, text, out)  # this thread's prepare is still there
    assert KEY.open(bytes(out), ulen) == text


def test_reserved_parts_filled_out_of_order_hash_to_the_files_id():
    buffers = PackBuffers(1, 4 * MiB)
    writer = PackWriter(KEY, buffers.take())
    rng = random.Random(4)
    blobs = [rng.randbytes(rng.randrange(1, 200_000)) for _ in range(12)]
    places = []
    for i, data in enumerate(blobs):
        payload, ulen = _seal.prepare(data, 0)
        places.append((data, *writer.reserve("data", hash_id(data), payload + 32, ulen)))
    big = rng.randbytes(5 * MiB)  # does not fit in the buffer any more: a place of its own
    payload, _ = _seal.prepare(big, 0)
    places.append((big, *writer.reserve("data", hash_id(big), payload + 32)))
    order = list(range(len(places)))
    rng.shuffle(order)
    for n in order:
        data, index, region = places[n]
        _seal.prepare(data, 0)
        _seal.seal_into(*KEYS, data, region)
        writer.filled(index)
        writer.hash_added()
    pack_id, parts, entries = writer.finish()
    content = b"".join(parts)
    assert pack_id == hashlib.sha256(content).hexdigest()
    hlen = header_length_from_tail(content[-4:], len(content))
    assert parse_header(KEY, content[-4 - hlen:-4], len(content)) == entries
    for (data, _, _), e in zip(places, entries):
        assert KEY.open(content[e.offset:e.offset + e.length]) == data
    buffers.give_back(writer.take_buffer())
    assert buffers.in_use() == 0


def test_a_pack_with_an_unsealed_blob_is_not_finished():
    writer = PackWriter(KEY)
    index, _ = writer.reserve("data", "aa" * 32, 100)
    assert not writer.close()
    assert writer.filled(index, ok=False)  # closed, last part: queued, and then refused
    with pytest.raises(IntegrityError):
        writer.finish()


class CountingStorage(MemoryBackend):
    """Memory storage whose pack uploads take a while; records the pool's use meanwhile."""

    def __init__(self):
        super().__init__()
        self.store = None
        self.most_buffers = 0

    def save(self, ftype, name, data):
        if ftype is FileType.PACK:
            time.sleep(0.02)
            self.most_buffers = max(self.most_buffers, self.store._pack_buffers.in_use())
        super().save(ftype, name, data)


def _store(backend, pack_size=256 * 1024):
    def save_file(ftype, data):
        name = hash_id(data)
        backend.save(ftype, name, data)
        return name

    store = BlobStore(backend, KEY, MasterIndex(), 3, save_file, pack_size=pack_size)
    backend.store = store
    return store


def test_savers_fill_packs_in_bounded_buffers_and_give_them_all_back():
    backend = CountingStorage()
    store = _store(backend)
    rng = random.Random(5)
    blobs = [rng.randbytes(rng.randrange(10_000, 90_000)) if i % 3 else b"text " * rng.randrange(2000, 9000)
             for i in range(120)]

    def saver(part):
        for data in part:
            store.store("data", hash_id(data), data)

    threads = [threading.Thread(target=saver, args=(blobs[n::3],)) for n in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    store.flush()
    store.close()
    assert store._pack_buffers.in_use() == 0
    assert 1 <= backend.most_buffers <= store._pack_buffers.count == pack_uploads.LOCAL_UPLOADS + 1
    packs = dict(backend.list(FileType.PACK))
    assert len(packs) >= 10
    for data in blobs:
        assert store.load("data", hash_id(data)) == data
    for name in packs:
        assert hash_id(backend.load(FileType.PACK, name)) == name


def test_a_blob_that_cannot_be_sealed_fails_the_run_and_stores_no_pack(monkeypatch):
    backend = CountingStorage()
    store = _store(backend)
    real = _seal.seal_into
    calls = []

    def failing(*args):
        calls.append(1)
        if len(calls) == 3:
            raise _seal.SealError("encryption failed")
        return real(*args)

    monkeypatch.setattr(blob_store._seal, "seal_into", failing)
    rng = random.Random(6)
    with pytest.raises(IntegrityError, match="sealing failed"):
        for _ in range(5):
            data = rng.randbytes(1000)
            store.store("data", hash_id(data), data)
    with pytest.raises(IntegrityError, match="could not be sealed"):
        store.flush()
    store.close()
    assert list(backend.list(FileType.PACK)) == []
    assert store._pack_buffers.in_use() == 0


def test_restic_reads_blobs_sealed_into_pack_buffers(tmp_path):
    repo_path = tmp_path / "repo"
    repo = restique.init_repository(str(repo_path), PASSWORD, version=2, pack_size=4)
    rng = random.Random(7)
    blobs = [rng.randbytes(700_000) if i % 3 else b"compressible %d " % i * 40_000 for i in range(14)]
    blobs += [b"", rng.randbytes(5), rng.randbytes(9 * MiB)]  # the last does not fit the buffer
    for data in blobs:
        assert repo.blobs.store("data", hash_id(data), data)[0]
    repo.flush()
    repo.close()
    assert b"no errors were found" in run_restic(repo_path, "check", "--read-data").stdout
    assert len(run_restic(repo_path, "list", "packs").stdout.split()) == 2  # 4 MiB, then the rest
    for data in blobs[:4] + blobs[-3:]:
        assert run_restic(repo_path, "cat", "blob", hash_id(data)).stdout == data


class ReleasingStorage(CountingStorage):
    """A backend that says when it has written a pack's bytes (as a local disk does before
    its fsync): the pack's buffer is back in the pool before the save returns."""

    releases_written_parts = True

    def __init__(self):
        super().__init__()
        self.given_back = []
        self.given_back_by_written = []

    def save(self, ftype, name, data):
        if ftype is FileType.PACK and hasattr(data, "written"):
            content = b"".join(data)
            before = len(self.given_back)
            data.written()
            assert list(data) == []  # nothing can read the reused buffer through it
            self.given_back_by_written.append(len(self.given_back) - before)
            time.sleep(0.02)  # the fsync
            return MemoryBackend.save(self, ftype, name, content)
        return super().save(ftype, name, data)


def test_a_backend_that_says_when_parts_are_written_gets_them_back_early():
    backend = ReleasingStorage()
    store = _store(backend)
    pool = store._pack_buffers
    real_give_back = pool.give_back
    pool.give_back = lambda mem: (backend.given_back.append(mem), real_give_back(mem))
    assert store._pack_buffers.count == pack_uploads.LOCAL_UPLOADS  # one upload slot's buffer less
    rng = random.Random(8)
    blobs = [rng.randbytes(40_000) for _ in range(60)]
    for data in blobs:
        store.store("data", hash_id(data), data)
    store.save("tree", b'{"nodes":[]}\n')  # tree packs are saved as plain lists (the cache keeps them)
    store.flush()
    store.close()
    assert len(backend.given_back_by_written) >= 5 and min(backend.given_back_by_written) >= 1  # (two uploaders)
    assert store._pack_buffers.in_use() == 0
    for data in blobs:
        assert store.load("data", hash_id(data)) == data
    for name, _ in backend.list(FileType.PACK):
        assert hash_id(backend.load(FileType.PACK, name)) == name



def test_a_buffer_given_back_gives_its_pages_back():
    buffers = PackBuffers(1, 4 * MiB, keep_pages_for=0)
    mem = buffers.take()
    mem[:5] = b"chunk"
    buffers.give_back(mem)
    again = buffers.take()
    assert again is mem and again[:5] == bytes(5)  # a private map reads zeros once its pages went


def _wait_for(condition, seconds=30.0):
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "gave up waiting"
        time.sleep(0.01)


def test_a_buffer_taken_again_soon_keeps_its_pages():
    buffers = PackBuffers(1, 4 * MiB, keep_pages_for=3600)
    mem = buffers.take()
    mem[:5] = b"chunk"
    buffers.give_back(mem)
    assert buffers.resident_free() == 1
    again = buffers.take()
    assert again is mem and again[:5] == b"chunk"  # not faulted in (and zeroed) again


def test_an_idle_buffer_gives_its_pages_back_and_one_in_use_never_does():
    buffers = PackBuffers(2, 4 * MiB, keep_pages_for=0.05)
    idle, busy = buffers.take(), buffers.take()
    idle[:4] = b"idle"
    buffers.give_back(idle)
    buffers.give_back(busy)
    busy = buffers.take()  # taken again within its grace period: in use from now on
    busy[:4] = b"busy"
    _wait_for(lambda: buffers.resident_free() == 0)
    _wait_for(lambda: not any(t.name == "pack-buffer-pages" for t in threading.enumerate()))
    assert busy[:4] == b"busy"
    assert buffers.take() is idle and idle[:4] == bytes(4)
    buffers.give_back(busy)  # the pages of a buffer given back later go too
    _wait_for(lambda: buffers.resident_free() == 0)
    assert buffers.take() is busy and busy[:4] == bytes(4)