"""restique._seal.open_range and blob_ranges.decode: a pack range's blobs checked, decrypted,
decompressed and hashed into one bytes object (dump's read path). A damaged blob is reported
with its index, its room never holds unchecked bytes, and the blobs around it are unharmed."""
import hashlib
import os
from dataclasses import dataclass

import pytest

from restique import _seal
from restique.errors import IntegrityError
from restique.operations import blob_ranges
from restique.repository.blob_store import BlobStore
from restique.repository.crypto import MasterKey

KEY = MasterKey.random()


def _range(*plains, level=0):
    """A pack range holding plains sealed one after the other: (range, [(start, length, ulen, id)])."""
    data, blobs = bytearray(), []
    for n, plain in enumerate(plains):
        sealed, ulen = KEY.seal_blob(plain, level if n % 2 else 0, always=bool(level and n % 2))
        blobs.append((len(data), len(sealed), ulen, hashlib.sha256(plain).digest()))
        data += sealed
    return data, blobs


def _open(data, blobs):
    return _seal.open_range(KEY.encrypt, KEY.mac_k, KEY.mac_r, bytes(data), blobs)


@pytest.mark.parametrize("level", [0, 3], ids=["uncompressed", "every-other-compressed"])
def test_plaintexts_follow_one_another(level):
    plains = [b"alpha " * 5000, os.urandom(70000), b"", b"z" * 100000, os.urandom(10)]
    data, blobs = _range(*plains, level=level)
    assert any(b[2] for b in blobs) == bool(level)
    assert _open(data, blobs) == (b"".join(plains), [])


def test_damaged_blobs_are_listed_and_their_room_is_zeros():
    plains = [b"a" * 3000, b"b" * 4000, b"c" * 5000, b"d" * 6000]
    data, blobs = _range(*plains, level=3)
    data[blobs[1][0] + 20] ^= 1  # MAC fails
    blobs[2] = blobs[2][:3] + (hashlib.sha256(b"other").digest(),)  # decodes, but to another id
    plain, failures = _open(data, blobs)
    assert failures == [(1, "ciphertext verification failed"), (2, "content does not match its id")]
    assert plain == plains[0] + bytes(4000) + bytes(5000) + plains[3]


def test_a_blob_shorter_than_its_overhead_takes_no_room():
    data, blobs = _range(b"x" * 100, b"y" * 200)
    blobs.insert(1, (0, 20, 0, bytes(32)))
    assert _open(data, blobs) == (b"x" * 100 + b"y" * 200, [(1, "ciphertext verification failed")])


@pytest.mark.parametrize("bad", ["outside", "ulen"])
def test_refuses_blobs_outside_the_range_and_impossible_lengths(bad):
    data, blobs = _range(b"x" * 100, b"y" * 200)
    start, length, ulen, blob_id = blobs[1]
    blobs[1] = (start, length + 1, ulen, blob_id) if bad == "outside" else (start, length, length << 16, blob_id)
    with pytest.raises(ValueError):
        _open(data, blobs)


@dataclass
class Loc:
    offset: int
    length: int
    uncompressed_length: int


def test_decode_gives_the_blob_stores_plaintexts_and_errors():
    plains = [bytes([n]) * (2000 + 500 * n) for n in range(6)]
    data, blobs = _range(*plains, level=3)
    data[blobs[1][0] + 40] ^= 1
    base = 1000  # the range starts this far into its pack
    ids = [hashlib.sha256(p).hexdigest() for p in plains]
    ids[4] = hashlib.sha256(b"other").hexdigest()
    locs = [Loc(base + s, n, u) for s, n, u, _ in blobs]
    locs[3].uncompressed_length = locs[3].length * 40000  # a damaged index entry
    pairs = list(zip(ids, locs))
    got = blob_ranges.decode(KEY, bytes(data), base, pairs)
    store = BlobStore(None, KEY, None, None, None)
    for (blob_id, loc), outcome in zip(pairs, got):
        at = loc.offset - base
        try:
            want = store.decode(blob_id, bytes(data[at:at + loc.length]), loc)
        except IntegrityError as exc:
            assert isinstance(outcome, IntegrityError) and str(outcome) == str(exc)
        else:
            assert bytes(outcome) == want
    assert [isinstance(x, IntegrityError) for x in got] == [False, True, False, True, True, False]


def test_decode_of_one_blob_gives_bytes_or_its_error():
    data, blobs = _range(b"q" * 3000)
    start, length, ulen, _ = blobs[0]
    blob_id = hashlib.sha256(b"q" * 3000).hexdigest()
    assert blob_ranges.decode(KEY, bytes(data), 0, [(blob_id, Loc(start, length, ulen))]) == [b"q" * 3000]
    data[30] ^= 1
    [err] = blob_ranges.decode(KEY, bytes(data), 0, [(blob_id, Loc(start, length, ulen))])
    assert isinstance(err, IntegrityError) and "ciphertext verification failed" in str(err)


def test_ids_checked_two_at_a_time_across_windows():
    """open_range hashes a window's blobs two at a time: every length around SHA-256's block
    and padding sizes, one blob larger than a window, and a wrong id among many."""
    lengths = list(range(0, 200)) + [1 << 20, 3 << 20, 65, 64, 63]
    plains = [os.urandom(n) for n in lengths]
    data, blobs = _range(*plains)
    blobs[150] = blobs[150][:3] + (hashlib.sha256(b"other").digest(),)
    plain, failures = _open(data, blobs)
    assert failures == [(150, "content does not match its id")]
    assert plain == b"".join(bytes(150) if i == 150 else p for i, p in enumerate(plains))
