"""Chunks as views into pooled read buffers (Chunker.held_chunks): the same cuts and bytes as
copied chunks, and a buffer is never refilled while a chunk cut from it is still held."""
import hashlib
import io
import random
import threading

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from restique.repository.chunk_buffers import HeldChunk, ReadBuffers
from restique.repository import chunker
from restique.repository.chunker import Chunker, all_zero

from test_chunker import MIB, TEST_POL, ReadOnly, ShortReads, make_data, split


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    seed=st.integers(0, 2**32),
    size=st.integers(0, 200_000),
    kind=st.sampled_from(["random", "mixed", "periodic", "zeros"]),
    min_size=st.integers(64, 4000),
    extra=st.integers(0, 30_000),
    bits=st.integers(0, 12),
    room=st.integers(1, 40_000),
    reader=st.sampled_from(["bytesio", "short", "read"]),
    share=st.floats(0, 1),
)
def test_held_chunks_equal_copied_chunks(seed, size, kind, min_size, extra, bits, room, reader, share):
    """... and the ids the reading thread computes for the chunks hash_when() picks as they
    begin (not those that begin with a zero byte), across short reads and across buffers (a
    chunk's unfinished part moves to the next one), are their chunks' SHA-256."""
    data = make_data(seed, size, kind)
    c = Chunker(TEST_POL, min_size, min_size + extra, average_bits=bits)
    expected = split(data, c.cut_lengths(data))
    rnd = random.Random(seed)
    stream = {"bytesio": io.BytesIO, "short": lambda d: ShortReads(d, rnd), "read": lambda d: ReadOnly(d, rnd)}[reader](data)
    buffers = ReadBuffers(2, c.max_size + room)
    got, named = [], 0
    for chunk in c.held_chunks(stream, buffers, lambda: rnd.random() < share):
        content = bytes(chunk.data)
        got.append(content)
        if chunk.blob_id:
            named += 1
            assert chunk.blob_id == hashlib.sha256(content).hexdigest()
            assert content[:1] != b"\0"
        chunk.release()
    assert got == expected
    assert buffers.in_use() == 0
    if share == 1 and reader != "read":  # (a stream without readinto gets copies, unnamed)
        assert named == sum(1 for content in got if content[:1] != b"\0")


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 2**32), size=st.integers(0, 100_000), step=st.integers(1, 5000),
       room=st.integers(1, 20_000))
def test_reads_in_steps_cut_the_same_chunks(seed, size, step, room):
    """A read brings at most READ_STEP bytes, however much room the buffer has left."""
    real = chunker.READ_STEP
    chunker.READ_STEP = step
    try:
        _read_in_steps(seed, size, step, room)
    finally:
        chunker.READ_STEP = real


def _read_in_steps(seed, size, step, room):
    data = make_data(seed, size, "mixed")
    c = Chunker(TEST_POL, 1000, 9000, average_bits=10)
    asked = []

    class Recording(io.BytesIO):
        def readinto1(self, view):  # what held_chunks reads with, where a stream has it
            asked.append(len(view))
            return super().readinto1(view)

    buffers = ReadBuffers(2, c.max_size + room)
    got = []
    for chunk in c.held_chunks(Recording(data), buffers):
        got.append(bytes(chunk.data))
        chunk.release()
    assert got == split(data, c.cut_lengths(data))
    assert max(asked) <= step


def test_a_buffers_first_chunk_comes_before_the_buffer_is_read_whole():
    """With restic's sizes: the first chunk of 9 MiB of data is handed on after the first
    MiB-sized reads, while the savers could otherwise only start once all 9 MiB were copied."""
    data = make_data(3, 9 * MIB, "random")
    c = Chunker(TEST_POL)
    read = []

    class Counting(io.BytesIO):
        def readinto1(self, view):
            got = super().readinto1(view)
            read.append(got)
            return got

    buffers = ReadBuffers(2, c.max_size + MIB)
    chunks = c.held_chunks(Counting(data), buffers)
    first = next(chunks)
    assert 0 < sum(read) < 4 * MIB and len(first) == c.cut_lengths(data)[0]
    first.release()
    for chunk in chunks:
        chunk.release()


def test_held_chunks_with_default_sizes():
    data = make_data(5, 30 * MIB, "mixed")
    c = Chunker(TEST_POL)
    buffers = ReadBuffers(3, c.max_size + MIB)
    chunks = []
    for chunk in c.held_chunks(io.BytesIO(data), buffers):
        chunks.append(bytes(chunk.data))
        chunk.release()
    assert [len(x) for x in chunks] == c.cut_lengths(data)
    assert b"".join(chunks) == data
    assert buffers.in_use() == 0


def test_a_held_chunk_keeps_its_buffer_from_being_refilled():
    """Chunks are released late, out of order, from other threads: each is compared with the
    input when it is released. Giving a buffer back before its last chunk is released lets
    the reader fill it again, and that comparison fails."""
    data = make_data(11, 3 * MIB, "random")
    c = Chunker(TEST_POL, 2048, 16 * 1024, average_bits=11)
    expected = split(data, c.cut_lengths(data))
    assert len(expected) > 200
    # enough buffers that the held chunks (7 at most) never pin all of them; the pool hands
    # out the buffer given back last, so one given back early is refilled at once
    buffers = ReadBuffers(8, c.max_size + 8 * 1024)
    rnd = random.Random(3)
    held = []
    failures = []

    def check_and_release(index, chunk):
        if bytes(chunk.data) != expected[index]:
            failures.append(index)
        chunk.release()

    threads = []
    for index, chunk in enumerate(c.held_chunks(io.BytesIO(data), buffers)):
        held.append((index, chunk))
        if len(held) > 6:  # release one of the oldest, in another thread
            victim = held.pop(rnd.randrange(3))
            t = threading.Thread(target=check_and_release, args=victim)
            t.start()
            threads.append(t)
        assert buffers.in_use() <= 8
    for t in threads:
        t.join()
    for index, chunk in held:
        check_and_release(index, chunk)
    assert failures == []
    assert buffers.in_use() == 0


def test_a_released_chunk_cannot_be_read_any_more():
    c = Chunker(TEST_POL, 64, 1024)
    buffers = ReadBuffers(2, 4096)
    chunk = next(iter(c.held_chunks(io.BytesIO(b"x" * 5000), buffers)))
    chunk.release()
    chunk.release()  # twice is harmless
    with pytest.raises(ValueError):
        bytes(chunk.data)


def test_the_reader_waits_for_a_free_buffer():
    """The pool bounds the bytes in flight: with every buffer held by chunks the reader blocks
    until one is released."""
    c = Chunker(TEST_POL, 64, 1024)
    buffers = ReadBuffers(1, 2048)
    chunks = c.held_chunks(io.BytesIO(make_data(1, 20_000, "random")), buffers)
    first = list(next(chunks) for _ in range(1))
    got = []
    reader = threading.Thread(target=lambda: got.extend(chunks))
    # the reader still holds the buffer's remaining chunks: let it take them, then block
    reader.start()
    reader.join(0.3)
    assert reader.is_alive()  # waiting for the one buffer
    first[0].release()
    while reader.is_alive():
        for x in list(got):
            x.release()
        reader.join(0.05)
    for x in got:
        x.release()
    assert buffers.in_use() == 0


def test_buffers_must_hold_the_largest_chunk():
    c = Chunker(TEST_POL, 64, 1024)
    with pytest.raises(ValueError):
        c.held_chunks(io.BytesIO(b""), ReadBuffers(2, 1024))


def test_all_zero():
    assert all_zero(b"") and all_zero(bytes(1 << 20)) and all_zero(memoryview(bytearray(70_000))[5:])
    assert not all_zero(bytes(1 << 20) + b"\1") and not all_zero(b"\1" + bytes(100))
    assert HeldChunk(b"abc").data == b"abc"


class _FailingBlobs:
    """Blob storage whose sealing fails for the third chunk."""

    def __init__(self):
        self.count = 0

    def known(self, blob_type, blob_id):
        return False

    def store(self, blob_type, blob_id, data):
        self.count += 1
        if self.count == 3:
            raise OSError("disk full")
        return True, 10


def test_file_saver_gives_every_buffer_back_when_a_chunk_fails():
    from restique.operations.archiver.file_saver import FileSaver

    repo = type("Repo", (), {"blobs": _FailingBlobs()})()
    saver = FileSaver(repo, Chunker(TEST_POL), lambda *a: None, lambda n: None, workers=2)
    try:
        with pytest.raises(OSError, match="disk full"):
            saver.save_stream(io.BytesIO(make_data(4, 12 * MIB, "random")))
        assert saver.buffers.in_use() == 0
        ids, total, _, _ = saver.save_stream(io.BytesIO(make_data(5, 3 * MIB, "random")))
        assert total == 3 * MIB and saver.buffers.in_use() == 0
    finally:
        saver.shutdown()



class _RecordingBlobs:
    """Stores nothing: records which thread stored each blob; sealed sizes as if incompressible."""

    def __init__(self):
        self.threads = set()
        self.ids = set()

    def known(self, blob_type, blob_id):
        return blob_id in self.ids

    def store(self, blob_type, blob_id, data):
        self.threads.add(threading.current_thread().name)
        self.ids.add(blob_id)
        return True, len(data) + 32


def test_one_saver_stores_new_incompressible_blobs_with_ids_the_reader_may_compute():
    """While a file's blobs are new and do not compress, the savers past the first stand by
    (one keeps up, with the reader hashing for it when it is behind); every id is its chunk's."""
    from restique.operations.archiver.file_saver import FileSaver

    blobs = _RecordingBlobs()
    c = Chunker(TEST_POL)
    saver = FileSaver(type("Repo", (), {"blobs": blobs})(), c, lambda *a: None, lambda n: None, workers=3)
    data = make_data(6, 24 * MIB, "random")
    try:
        ids, total, _, _ = saver.save_stream(io.BytesIO(data))
        assert ids == [hashlib.sha256(chunk).hexdigest() for chunk in split(data, c.cut_lengths(data))]
        assert total == len(data) and blobs.threads == {"blob-saver-0"}
        assert saver.savers_busy  # sealing new blobs: the reader may hash for them
        again, _, added, _ = saver.save_stream(io.BytesIO(data))  # known now: every saver may hash
        assert again == ids and added == 0
        assert not saver.savers_busy and not saver._reader_hashes()  # ids of known blobs: the savers
    finally:
        saver.shutdown()


def test_chunks_the_reader_hashes_go_in_pairs_and_one_left_waiting_is_given_back():
    """The reader hashes the chunks it names two at a time: one waits for the next (and is
    sent on alone before another buffer is taken, so one buffer is enough); chunks stopped
    early give their buffers back, the waiting one's too."""
    c = Chunker(TEST_POL, 64, 1024)
    data = make_data(3, 40_000, "random")
    buffers = ReadBuffers(1, 2048)
    got = []
    for chunk in c.held_chunks(io.BytesIO(data), buffers, lambda: True):
        assert chunk.blob_id == hashlib.sha256(chunk.data).hexdigest()
        got.append(bytes(chunk.data))
        chunk.release()
    assert got == split(data, c.cut_lengths(data)) and buffers.in_use() == 0

    buffers = ReadBuffers(2, 64 * 1024)
    chunks = c.held_chunks(io.BytesIO(data), buffers, lambda: True)
    first = next(chunks)  # its pair partner was cut: the one after them waits
    first.release()
    chunks.close()
    assert buffers.in_use() == 0


class _CountingHashlib:
    """Stands in for the chunker's hashlib: counts the chunks hashed alone."""

    def __init__(self):
        self.alone = 0

    def sha256(self, data=b""):
        self.alone += 1
        return hashlib.sha256(data)


def test_the_chunk_after_a_waiting_one_is_hashed_with_it_and_the_pair_survives_a_buffer_change(monkeypatch):
    """A chunk the reader names waits for the next one, which is hashed with it even when
    hash_when() would have left it to the saver (two at once cost little more than one); with
    a free buffer to go on in, a buffer change does not send the waiting chunk on alone."""
    counting = _CountingHashlib()
    monkeypatch.setattr(chunker, "hashlib", counting)
    c = Chunker(TEST_POL, 64, 1024)
    data = make_data(7, 200_000, "random")
    calls = []
    buffers = ReadBuffers(2, 2048)  # ~100 buffer changes
    got = []
    for chunk in c.held_chunks(io.BytesIO(data), buffers, lambda: calls.append(1) or len(calls) % 2 == 1):
        got.append((bytes(chunk.data), chunk.blob_id))
        chunk.release()
    assert [content for content, _ in got] == split(data, c.cut_lengths(data))
    for content, blob_id in got:
        assert blob_id in ("", hashlib.sha256(content).hexdigest())
    named = sum(1 for _, blob_id in got if blob_id)
    assert named > 0.6 * len(got)  # the odd calls name half the chunks, their partners the rest
    assert counting.alone <= 2 + sum(1 for content, _ in got if content[:1] == b"\0")


def test_readers_sharing_the_buffers_hold_no_waiting_chunk_while_they_wait():
    """Two streams read at once from a pool of two buffers, every chunk named: a reader that
    has to wait for a buffer sends its waiting chunk on first, so neither waits for the other."""
    c = Chunker(TEST_POL, 64, 1024)
    buffers = ReadBuffers(2, 2048)
    sources = [make_data(seed, 60_000, "random") for seed in (8, 9)]
    results = [[], []]
    saved = []  # chunks released a little later, by a saver

    def saver():
        while True:
            chunk = saved.pop(0) if saved else None
            if chunk is None:
                if all(not t.is_alive() for t in readers):
                    return
                threading.Event().wait(0.001)
                continue
            chunk.release()

    def read(i):
        for chunk in c.held_chunks(io.BytesIO(sources[i]), buffers, lambda: True):
            assert chunk.blob_id == hashlib.sha256(chunk.data).hexdigest()
            results[i].append(bytes(chunk.data))
            saved.append(chunk)

    readers = [threading.Thread(target=read, args=(i,)) for i in (0, 1)]
    for t in readers:
        t.start()
    releasing = threading.Thread(target=saver)
    releasing.start()
    for t in readers:
        t.join(20)
        assert not t.is_alive()
    releasing.join(5)
    assert [results[i] for i in (0, 1)] == [split(s, c.cut_lengths(s)) for s in sources]
    assert buffers.in_use() == 0
