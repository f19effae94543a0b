"""The savers' ids of the chunks the reader leaves them (operations.archiver.chunk_naming):
two at a time, each id its chunk's SHA-256, a chunk hashed as another's partner waited for
rather than hashed again or released under the hashing."""
import hashlib
import io
import os
import threading
import time

from restique.operations.archiver import chunk_naming
from restique.operations.archiver.chunk_naming import ChunkNaming
from restique.repository.chunk_buffers import HeldChunk, ReadBuffers
from restique.repository.chunker import Chunker

from test_chunker import TEST_POL, make_data, split


class Owned(HeldChunk):
    """A chunk whose release is recorded."""

    __slots__ = ("released", "id_when_released")

    def __init__(self, data: bytes):
        super().__init__(memoryview(data))
        self.released = False
        self.id_when_released = None

    def release(self) -> None:
        self.released = True
        self.id_when_released = self.blob_id  # set once no saver hashes it any more


def sha(chunk) -> str:
    return hashlib.sha256(chunk.data).hexdigest()


def test_a_started_chunk_is_named_with_the_next_queued_one():
    naming = ChunkNaming()
    chunks = [Owned(os.urandom(1000 + i)) for i in range(3)]
    for chunk in chunks:
        naming.queued(chunk)
    naming.name(chunks[0])
    assert [c.blob_id for c in chunks] == [sha(chunks[0]), sha(chunks[1]), ""]
    naming.name(chunks[1])  # named already: nothing to do
    naming.name(chunks[2])  # the last one: left to its saver, alone
    assert chunks[2].blob_id == ""


def test_a_chunk_beginning_with_zeros_is_not_queued():
    naming = ChunkNaming()
    zeros, other = Owned(bytes(5000)), Owned(b"\1" + bytes(10))
    naming.queued(zeros)
    naming.queued(other)
    naming.name(other)
    assert zeros.blob_id == "" and other.blob_id == ""


def test_the_partners_saver_waits_for_its_id_and_a_cancelled_partner_for_its_release(monkeypatch):
    pair = chunk_naming._seal.sha256_pair
    hashing = threading.Event()

    def slow_pair(one, two):
        hashing.set()
        time.sleep(0.3)
        return pair(one, two)

    monkeypatch.setattr(chunk_naming._seal, "sha256_pair", slow_pair)
    for cancelled in (False, True):
        hashing.clear()
        naming = ChunkNaming()
        first, second = Owned(os.urandom(4000)), Owned(os.urandom(5000))
        naming.queued(first)
        naming.queued(second)
        saver = threading.Thread(target=naming.name, args=(first,))
        saver.start()
        assert hashing.wait(5)
        if cancelled:
            naming.release(second)
            assert second.released and second.id_when_released == sha(second)  # after the pair
        else:
            naming.name(second)
            assert second.blob_id == sha(second)  # waited for the pair
        saver.join()
        assert first.blob_id == sha(first)


def test_the_savers_name_what_the_reader_leaves_them(monkeypatch):
    """End to end: with the reader hashing nothing, every id a FileSaver reports is its
    chunk's, with one saver or several."""
    from restique.operations.archiver.file_saver import FileSaver

    from test_chunker_held import _RecordingBlobs

    monkeypatch.setattr(FileSaver, "_reader_hashes", lambda self: False)
    pairs = []
    pair = chunk_naming._seal.sha256_pair
    monkeypatch.setattr(chunk_naming._seal, "sha256_pair", lambda one, two: pairs.append(1) or pair(one, two))
    c = Chunker(TEST_POL)
    data = make_data(11, 20 * 1024 * 1024, "random")
    expected = [hashlib.sha256(chunk).hexdigest() for chunk in split(data, c.cut_lengths(data))]
    class SlowBlobs(_RecordingBlobs):  # the chunks queue up behind the savers
        def store(self, blob_type, blob_id, data):
            time.sleep(0.02)
            return super().store(blob_type, blob_id, data)

    for workers in (1, 3):
        saver = FileSaver(type("Repo", (), {"blobs": SlowBlobs()})(), c, lambda *a: None, lambda n: None,
                          workers=workers)
        try:
            saver.all_hands.set()  # every saver works (as for compressible data)
            ids, total, _, _ = saver.save_stream(io.BytesIO(data))
            assert ids == expected and total == len(data)
            assert saver.buffers.in_use() == 0 and not saver.naming._queued and not saver.naming._hashing
            assert len(pairs) >= len(expected) // 4  # (a chunk started with nothing queued behind: alone)
            pairs.clear()
        finally:
            saver.shutdown()
