"""Content-defined chunking, cut-for-cut compatible with restic's chunker.

restic (github.com/restic/chunker v0.4.0, used by restic 0.14) splits a file
where a Rabin fingerprint of the last 64 bytes, taken modulo the
repository's random polynomial (the "chunker_polynomial" of the repository
config), has its lowest 20 bits all zero; a chunk is never shorter than 512 KiB
(except the last one of a file) nor longer than 8 MiB.  The scanning is done
by the C extension :mod:`restique._chunker` without holding the GIL; this
module feeds it large buffers and assembles the chunks.

Only this module and the extension are imported here, so that importing the
chunker never drags in the rest of the package.
"""
from __future__ import annotations

import functools
import hashlib
import os
import threading
from typing import Iterator, Optional

from restique import _chunker, _seal
from restique.repository.chunk_buffers import HeldChunk, ReadBuffers

__all__ = [
    "MIN_SIZE",
    "MAX_SIZE",
    "AVERAGE_BITS",
    "WINDOW_SIZE",
    "Chunker",
    "HeldChunk",
    "ReadBuffers",
    "random_polynomial",
    "is_irreducible",
    "polynomial_degree",
    "all_zero",
    "begins_with_zero",
]

MIN_SIZE = 512 * 1024
MAX_SIZE = 8 * 1024 * 1024
AVERAGE_BITS = 20  # split mask (1 << 20) - 1: chunks of about 1 MiB past MinSize
WINDOW_SIZE = 64
DEFAULT_BUFFER_SIZE = 16 * 1024 * 1024
# held_chunks reads at most this much at a time into its read buffer: the savers get a
# buffer's first chunks while the rest of it is being read, not after 9 MiB were copied
# (a big file's backup took ~8% less time; with two read buffers the savers had waited)
READ_STEP = 1024 * 1024

all_zero = _chunker.all_zero  # all_zero(buffer) -> bool, without the GIL for large buffers


def begins_with_zero(data) -> bool:
    """Whether a chunk (or its first bytes) begins with a zero byte: it may be all zeros, a
    disk image's, whose id the saver knows at once (no chunk's id is computed ahead for it)."""
    return len(data) > 0 and data[0] == 0

_POL_MAX_TRIES = 1_000_000  # restic gives up after a million random candidates
_POOLED_BUFFERS = 4  # per Chunker, each buffer_size bytes


# --------------------------------------------------------------------------
# Polynomials over GF(2), represented as ints (bit i = coefficient of x^i).


def _check_u64(pol: int) -> int:
    if isinstance(pol, bool) or not isinstance(pol, int):
        raise TypeError(f"polynomial must be an int, not {type(pol).__name__}")
    if not 0 <= pol < 1 << 64:
        raise ValueError(f"polynomial {pol:#x} does not fit in 64 bits")
    return pol


def polynomial_degree(pol: int) -> int:
    """Degree of ``pol``; -1 for the zero polynomial (as restic's Pol.Deg)."""
    return _check_u64(pol).bit_length() - 1


def _mod(x: int, m: int) -> int:
    dm = m.bit_length()
    while (dx := x.bit_length()) >= dm:
        x ^= m << (dx - dm)
    return x


def _mulmod(a: int, b: int, m: int) -> int:
    """a * b mod m (carry-less)."""
    res = 0
    while b:
        if b & 1:
            res ^= a
        b >>= 1
        a <<= 1
        if a.bit_length() >= m.bit_length():
            a ^= m << (a.bit_length() - m.bit_length())
    return _mod(res, m)


def _gcd(a: int, b: int) -> int:
    while b:
        a, b = b, _mod(a, b)
    return a


def is_irreducible(pol: int) -> bool:
    """Whether ``pol`` is irreducible over GF(2) (Ben-Or's test, as restic).

    For every polynomial of degree >= 1 this gives restic's answer.  restic's
    Pol.Irreducible also answers True for the constants 0 and 1 (its loop
    simply does not run); those are not irreducible and this returns False.
    """
    _check_u64(pol)
    deg = pol.bit_length() - 1
    if deg < 1:
        return False
    x_pow = 2  # x^(2^i) mod pol, starting with i = 0
    for _ in range(deg // 2):
        x_pow = _mulmod(x_pow, x_pow, pol)
        if _gcd(pol, _mod(x_pow ^ 2, pol)) != 1:
            return False
    return True


def random_polynomial() -> int:
    """A random irreducible polynomial of degree 53, picked as restic does.

    restic reads 8 random bytes as a little-endian uint64, keeps bits 0..53,
    sets bits 53 and 0, and tries again until the result is irreducible.
    """
    for _ in range(_POL_MAX_TRIES):
        f = int.from_bytes(os.urandom(8), "little")
        f &= (1 << 54) - 1
        f |= (1 << 53) | 1
        if is_irreducible(f):
            return f
    raise RuntimeError("unable to find new random irreducible polynomial")


def _check_chunker_pol(pol: int) -> int:
    _check_u64(pol)
    deg = pol.bit_length() - 1
    if pol == 0:
        raise ValueError("the chunker polynomial must not be zero")
    if deg > 53:
        # restic's chunker panics: "the polynomial must have a degree less than or equal 53"
        raise ValueError(f"chunker polynomial {pol:#x} has degree {deg} > 53")
    if deg < 8:
        raise ValueError(f"chunker polynomial {pol:#x} has degree {deg} < 8")
    return pol


@functools.lru_cache(maxsize=32)
def _tables(pol: int) -> _chunker.Tables:
    """The immutable C tables for a polynomial, built once per polynomial."""
    return _chunker.Tables(pol)


# --------------------------------------------------------------------------
# The chunker


class Chunker:
    """Splits byte streams into restic-compatible chunks.

    A Chunker holds only configuration; every call of :meth:`chunks` or
    :meth:`cut_lengths` has its own scanning state, so one Chunker may chunk
    several streams at once, from several threads.
    """

    def __init__(
        self,
        pol: int,
        min_size: int = MIN_SIZE,
        max_size: int = MAX_SIZE,
        *,
        average_bits: int = AVERAGE_BITS,
    ):
        _check_chunker_pol(pol)
        if not WINDOW_SIZE <= min_size <= max_size:
            raise ValueError(f"need {WINDOW_SIZE} <= min_size <= max_size, got {min_size}, {max_size}")
        if not 0 <= average_bits <= 63:
            raise ValueError(f"average_bits must be in [0, 63], got {average_bits}")
        self.pol = pol
        self.min_size = min_size
        self.max_size = max_size
        self.average_bits = average_bits
        self._tab = _tables(pol)
        # read buffers, reused across calls of chunks() (by any thread)
        self._pool: list[bytearray] = []
        self._pool_lock = threading.Lock()

    def __repr__(self) -> str:
        return (
            f"Chunker(pol={self.pol:#x}, min_size={self.min_size}, max_size={self.max_size}, "
            f"average_bits={self.average_bits})"
        )

    def _scanner(self) -> _chunker.Scanner:
        return _chunker.Scanner(self._tab, self.min_size, self.max_size, self.average_bits)

    def cut_lengths(self, data) -> list[int]:
        """Lengths of the chunks of an in-memory bytes-like object."""
        cuts = self._scanner().scan(data)
        total = memoryview(data).nbytes
        lengths = []
        prev = 0
        for cut in cuts:
            lengths.append(cut - prev)
            prev = cut
        if total > prev:
            lengths.append(total - prev)
        return lengths

    def chunks(self, stream, buffer_size: int = DEFAULT_BUFFER_SIZE) -> Iterator[bytes]:
        """Yield the chunks of a binary stream (anything with readinto() or read()), in order.

        Every chunk is a new ``bytes`` object, independent of the chunker's
        buffers, so it may be handed to another thread.  Read errors of the
        stream propagate unchanged.
        """
        if buffer_size <= 0:
            raise ValueError("buffer_size must be positive")
        if getattr(stream, "readinto", None) is not None:
            return self._chunks_readinto(stream, buffer_size)
        if getattr(stream, "read", None) is not None:
            return self._chunks_read(stream, buffer_size)
        raise TypeError(f"{type(stream).__name__} has neither readinto() nor read()")

    def held_chunks(self, stream, buffers: ReadBuffers, hash_when=None) -> Iterator[HeldChunk]:
        """Yield the chunks of a binary stream as views into buffers of the pool, in order;
        the caller releases each once it is done with it (from any thread).

        The unfinished chunk at a buffer's end is moved to the start of the next buffer,
        which is then filled up from the stream, so every chunk lies in one buffer: the
        buffers must be larger than max_size. A reader holds one buffer at most while it
        waits for another, so any number of streams may share a pool of at least one.
        A stream without readinto() gets chunks of their own (copies).

        hash_when(): called as a chunk begins, whether the reading thread computes its id
        (blob_id) while its bytes are in this core's cache (SHA-256 runs at ~1.65 GB/s there,
        ~1.2 from another core's data), together with the next chunk's, named or not (two at
        once: 3.0-3.3 GB/s); a chunk that begins with zeros is left alone."""
        if buffers.size <= self.max_size:
            raise ValueError(f"read buffers of {buffers.size} bytes cannot hold a chunk of {self.max_size}")
        if getattr(stream, "readinto", None) is None:
            return (HeldChunk(chunk) for chunk in self.chunks(stream))
        # a buffered stream's readinto() waits until the whole buffer is full; readinto1()
        # returns what one read brings (sys.stdin.buffer on a pipe)
        return self._held_chunks(getattr(stream, "readinto1", None) or stream.readinto, buffers, hash_when)

    def _held_chunks(self, readinto, buffers: ReadBuffers, hash_when) -> Iterator[HeldChunk]:
        scanner = self._scanner()
        size = buffers.size
        buf = buffers.take()
        carried = 0  # bytes of the unfinished chunk at the start of buf, already scanned
        hashing = False  # this thread computes the id of the unfinished chunk
        # a chunk cut whose id this thread computes together with the next one's (two
        # SHA-256 at once run at ~1.8x the speed of one): yielded once that one is cut
        pairs = _HashPairs()
        starting = hash_when is not None  # the next bytes read begin a chunk
        try:
            while True:
                # chunks are cut from each read as it arrives, not once the buffer is full:
                # a slow stream (a pipe from a database dump) must not hold back 9 MiB of
                # data that could already be packed and stored
                n, start = carried, 0
                while n < size:
                    got = readinto(buf.view[n:n + READ_STEP])
                    if got is None:
                        raise BlockingIOError("the stream has no data available (non-blocking?)")
                    if got == 0:
                        break
                    view = buf.view
                    if starting:
                        hashing, starting = _hashed_here(hash_when, view[n:n + got]), False
                    for cut in scanner.scan(view, n, n + got):
                        yield from pairs.cut(buf.chunk(start, cut), hashing)
                        if hash_when is not None:  # (a chunk that begins with the next read: then)
                            hashing, starting = False, cut == n + got
                            if not starting:
                                hashing = _hashed_here(hash_when, view[cut:n + got])
                        start = cut
                    n += got
                if n < size:  # the end of the stream
                    if start < n:
                        yield from pairs.cut(buf.chunk(start, n), hashing)
                    yield from pairs.flush()
                    return
                carried = n - start
                following = buffers.take(wait=False)
                if following is None:
                    # Every buffer is in use: give ours up before waiting (keeping the
                    # unfinished chunk aside), so that no reader waits while holding one,
                    # not even through the chunk waiting to be hashed with the next.
                    yield from pairs.flush()
                    tail = bytes(buf.view[start:n])
                    buf.release()
                    buf = None
                    following = buffers.take()
                    following.view[:carried] = tail
                else:
                    following.view[:carried] = buf.view[start:n]
                    buf.release()
                buf = following
        finally:
            pairs.drop()
            if buf is not None:
                buf.release()

    def _get_buffer(self, size: int) -> bytearray:
        with self._pool_lock:
            for i, buf in enumerate(self._pool):
                if len(buf) == size:
                    return self._pool.pop(i)
        return bytearray(size)

    def _put_buffers(self, bufs: list[bytearray]) -> None:
        with self._pool_lock:
            for buf in bufs:
                if len(self._pool) < _POOLED_BUFFERS:
                    self._pool.append(buf)

    def _chunks_readinto(self, stream, buffer_size: int) -> Iterator[bytes]:
        scanner = self._scanner()
        readinto = stream.readinto
        pending: list[memoryview] = []  # the unfinished chunk so far, in buffers held below
        held: list[bytearray] = []  # earlier buffers that pending still points into
        spare: list[bytearray] = []  # buffers free for reuse by this stream
        buf = self._get_buffer(buffer_size)
        try:
            while True:
                view = memoryview(buf)
                n = _fill(readinto, view)
                at_eof = n < buffer_size  # _fill only stops short at the end of the stream
                start = 0
                for cut in scanner.scan(buf, 0, n):
                    if pending:
                        pending.append(view[start:cut])
                        yield b"".join(pending)
                        pending.clear()
                        spare.extend(held)
                        held.clear()
                    else:
                        yield bytes(view[start:cut])
                    start = cut
                if start < n:
                    pending.append(view[start:n])
                    if at_eof:
                        break
                    # The unfinished chunk keeps this buffer alive; read on into another one.
                    held.append(buf)
                    buf = spare.pop() if spare else self._get_buffer(buffer_size)
                elif at_eof:
                    break
            if pending:
                yield b"".join(pending)
        finally:
            pending.clear()
            self._put_buffers([buf] + held + spare)

    def _chunks_read(self, stream, buffer_size: int) -> Iterator[bytes]:
        scanner = self._scanner()
        read = stream.read
        pending: list[memoryview] = []
        while True:
            data = read(buffer_size)
            if data is None:
                raise BlockingIOError("the stream has no data available (non-blocking?)")
            if not data:
                break
            view = memoryview(data).cast("B")
            n = view.nbytes
            start = 0
            for cut in scanner.scan(view, 0, n):
                if pending:
                    pending.append(view[start:cut])
                    yield b"".join(pending)
                    pending.clear()
                else:
                    yield bytes(view[start:cut])
                start = cut
            if start < n:
                pending.append(view[start:n])
        if pending:
            yield b"".join(pending)


def _hashed_here(hash_when, head) -> bool:
    """Whether the reading thread computes the id of the chunk that begins with head: if
    hash_when() says so and head does not begin with zeros."""
    return not begins_with_zero(head) and hash_when()


class _HashPairs:
    """Chunks in the order cut, the ids of those the reading thread hashes computed two at a
    time (restique._seal.sha256_pair): such a chunk waits for the next one to be hashed with.
    The next one is hashed with it even when it would have been left to the saver (two
    together take ~1.1x the time of one alone), unless it begins with zeros (a chunk hashed
    here never does). Such a chunk, a reader that must wait for a buffer, and the end send on
    the one waiting, hashed alone."""

    __slots__ = ("waiting",)

    def __init__(self):
        self.waiting: Optional[HeldChunk] = None

    def cut(self, chunk: HeldChunk, hashed: bool):
        first, self.waiting = self.waiting, chunk  # chunk is ours until yielded (drop)
        if first is not None:
            if not begins_with_zero(chunk.data):
                one, two = _seal.sha256_pair(first.data, chunk.data)
                first.blob_id, chunk.blob_id = one.hex(), two.hex()
            else:
                first.blob_id = hashlib.sha256(first.data).hexdigest()
            yield first
        elif hashed:
            return  # it waits for the next one
        self.waiting = None
        yield chunk

    def flush(self):
        first, self.waiting = self.waiting, None
        if first is not None:
            first.blob_id = hashlib.sha256(first.data).hexdigest()
            yield first

    def drop(self) -> None:
        """The chunks stop early: the waiting one's buffer is given back."""
        first, self.waiting = self.waiting, None
        if first is not None:
            first.release()


def _fill(readinto, view: memoryview) -> int:
    """Read into view until it is full or the stream ends; return the byte count."""
    got = 0
    size = len(view)
    while got < size:
        n = readinto(view[got:] if got else view)
        if n is None:
            raise BlockingIOError("the stream has no data available (non-blocking?)")
        if n == 0:
            break
        got += n
    return got
