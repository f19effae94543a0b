"""The read-ahead of `dump` (PackBatchedReader) hands out every entry's blobs in order, reads
a blob used by several entries once while it is kept, and raises a missing or damaged
blob's error when that blob is reached (not before)."""
import hashlib
from dataclasses import dataclass

import pytest

from restique.errors import IntegrityError, NotFound
from restique.operations import dump_blobs
from restique.operations.dump_blobs import PackBatchedReader


@dataclass
class Loc:
    pack_id: str
    offset: int
    length: int
    uncompressed_length: int = 0

    @property
    def size(self):
        return self.length


class FakeRepo:
    """Blobs stored as their plaintext (no encryption) in packs of a few blobs each."""

    def __init__(self, blobs, per_pack=3, damaged=()):
        self.packs, self.locs, self.reads, self.damaged = {}, {}, [], set(damaged)
        for n, data in enumerate(blobs):
            pack = f"pack{n // per_pack}"
            stored = self.packs.setdefault(pack, bytearray())
            self.locs[hashlib.sha256(data).hexdigest()] = Loc(pack, len(stored), len(data))
            stored += data
        self.blobs = self

    def load_index(self):
        return self

    def lookup(self, blob_type, blob_id):
        return self.locs.get(blob_id)

    def load_pack(self, pack_id, offset, length):
        self.reads.append((pack_id, offset, length))
        return bytes(self.packs[pack_id][offset:offset + length])

    def decode(self, blob_id, sealed, loc):
        if blob_id in self.damaged:
            raise IntegrityError(f"blob {blob_id} is damaged")
        return bytes(sealed)


def ids(*blobs):
    return [hashlib.sha256(b).hexdigest() for b in blobs]


@pytest.mark.parametrize("ahead", [1, 64, 1 << 20])
def test_entries_get_their_blobs_in_order(ahead):
    data = [bytes([n]) * (100 + n) for n in range(20)]
    repo = FakeRepo(data)
    entries = [ids(data[0], data[1]), [], ids(data[5]), ids(data[2], data[2], data[0]), None,
               ids(*data[6:20]), ids(data[5], data[19])]
    reader = PackBatchedReader(repo, ahead_bytes=ahead)
    got = [(entry, [bytes(c) for c in chunks]) for entry, chunks in reader.contents(entries, lambda e: e)]
    assert [e for e, _ in got] == entries
    by_id = dict(zip(ids(*data), data))
    assert [chunks for _, chunks in got] == [[by_id[i] for i in e or ()] for e in entries]
    assert not reader._planned and reader._kept == 0


def test_missing_and_damaged_blobs_fail_where_they_are_used():
    data = [b"a" * 10, b"b" * 10, b"c" * 10]
    repo = FakeRepo(data, damaged=ids(data[1]))
    entries = [ids(data[0]), ids(data[1]), ["f" * 64]]
    contents = PackBatchedReader(repo).contents(entries, lambda e: e)
    entry, chunks = next(contents)
    assert list(chunks) == [data[0]]
    entry, chunks = next(contents)
    with pytest.raises(IntegrityError, match="damaged"):
        list(chunks)

    contents = PackBatchedReader(repo).contents(entries[2:], lambda e: e)
    entry, chunks = next(contents)
    with pytest.raises(NotFound):
        list(chunks)


def test_neighbouring_blobs_share_one_read():
    data = [bytes([n]) * 50 for n in range(6)]
    repo = FakeRepo(data, per_pack=6)
    entries = [[i] for i in ids(*data)]
    for _ in PackBatchedReader(repo).contents(entries, lambda e: e):
        list(_[1])
    assert repo.reads == [("pack0", 0, 300)]
    assert dump_blobs.MAX_GAP > 0


class SealedLoc(Loc):
    @property
    def size(self):  # the plaintext's, as BlobLocation's
        return self.uncompressed_length or self.length - 32


class SealedRepo(FakeRepo):
    """FakeRepo with real sealing: a key, so that the reader decodes ranges natively, and
    the BlobStore's decode, so that both ways can be compared. damage: blob index -> how its
    stored bytes are spoiled."""

    def __init__(self, blobs, damage, per_pack=4):
        from restique.repository.blob_store import BlobStore
        from restique.repository.crypto import MasterKey

        super().__init__([], per_pack)
        self.key = MasterKey.random()
        self.store = BlobStore(None, self.key, None, None, None)
        for n, data in enumerate(blobs):
            pack = f"pack{n // per_pack}"
            stored = self.packs.setdefault(pack, bytearray())
            sealed, ulen = self.key.seal_blob(data, 3 if n % 2 else None, always=bool(n % 2))
            sealed = bytearray(sealed)
            if damage.get(n) == "mac":
                sealed[20] ^= 1
            blob_id = hashlib.sha256(data).hexdigest()
            if damage.get(n) == "id":
                blob_id = hashlib.sha256(data + b"x").hexdigest()
            if damage.get(n) == "length":
                ulen = len(sealed) * 40000
            self.locs[blob_id] = SealedLoc(pack, len(stored), len(sealed), ulen)
            stored += sealed

    def decode(self, blob_id, sealed, loc):
        return self.store.decode(blob_id, sealed, loc)


def outcomes(repo) -> list:
    """Every blob of repo, in the order stored, read as dump reads it: its plaintext, or the
    text of its error."""
    got = []
    for blob_id, chunks in PackBatchedReader(repo).contents(list(repo.locs), lambda blob_id: [blob_id]):
        try:
            got.append(bytes(b"".join(chunks)))
        except IntegrityError as exc:
            got.append(str(exc))
    return got


def without_key(repo: SealedRepo) -> SealedRepo:
    """The same packs without the key: the reader decodes blob by blob through BlobStore.decode."""
    copy = type(repo).__new__(type(repo))
    copy.__dict__.update(repo.__dict__)
    del copy.key
    return copy


def test_native_range_decoding_gives_the_blob_stores_plaintexts_and_errors():
    data = [bytes([n]) * (5000 + 300 * n) for n in range(12)]
    repo = SealedRepo(data, {2: "mac", 5: "id", 7: "length"})
    native = outcomes(repo)
    assert native == outcomes(without_key(repo))
    assert [x for x in native if isinstance(x, bytes)] == [d for n, d in enumerate(data) if n not in (2, 5, 7)]
    assert "ciphertext verification failed" in native[2] and "does not match its id" in native[5]
    assert "uncompressed length" in native[7]


def test_a_short_range_read_gives_the_errors_of_blob_by_blob_decoding():
    """A pack part read shorter than asked (a backend that does not say so) is decoded blob by
    blob, so that each blob gets the error it would get on its own."""
    class ShortRepo(SealedRepo):
        def load_pack(self, pack_id, offset, length):
            return super().load_pack(pack_id, offset, length)[:-100]

    data = [bytes([n]) * (2000 + 100 * n) for n in range(6)]
    repo = ShortRepo(data, {})
    native = outcomes(repo)
    assert native == outcomes(without_key(repo))
    assert any(isinstance(x, str) for x in native) and any(isinstance(x, bytes) for x in native)
