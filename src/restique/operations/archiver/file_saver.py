"""Reading a file's content into data blobs.

Small files (under the chunker's minimum size) are one chunk: they are read whole and
saved by the reading thread. Larger files are cut by the chunker; their chunks go to a
pool of saver threads (hash, compress, encrypt), so one big file keeps every core busy.
A byte budget bounds the chunks in flight.
"""
import hashlib
import os
import threading
from typing import Callable, List, Tuple

from ...repository.chunker import MIN_SIZE, Chunker
from .tasks import Completion, WorkerPool

IN_FLIGHT_BYTES = 8 * 1024 * 1024  # chunks read but not yet sealed: a few per saver thread
CHUNK_BUFFER = 4 * 1024 * 1024  # read size for chunking; bounds memory per reader


class ByteBudget:
    """A counting limit on bytes held by queued chunks."""

    def __init__(self, limit: int):
        self._limit = limit
        self._used = 0
        self._cond = threading.Condition()

    def acquire(self, n: int) -> None:
        with self._cond:
            while self._used and self._used + n > self._limit:
                self._cond.wait()
            self._used += n

    def release(self, n: int) -> None:
        with self._cond:
            self._used -= n
            self._cond.notify_all()


class FileSaver:
    def __init__(self, repo, chunker: Chunker, on_blob: Callable[[str, int, int], None],
                 on_bytes: Callable[[int], None], workers: int):
        self.blobs = repo.blobs
        self.chunker = chunker
        self.on_blob = on_blob
        self.on_bytes = on_bytes
        self.pool = WorkerPool(workers, "blob-saver")
        self.budget = ByteBudget(IN_FLIGHT_BYTES)
        self.cancelled = threading.Event()

    def save_blob(self, data, blob_id: str = "") -> Tuple[str, int, int]:
        """(id, plaintext size if new else 0, stored size if new else 0)."""
        blob_id = blob_id or _zero_chunk_id(data) or hashlib.sha256(data).hexdigest()
        if self.blobs.known("data", blob_id):
            return blob_id, 0, 0
        sealed, ulen = self.blobs.seal_blob("data", data, blob_id)
        new, stored = self.blobs.add_sealed("data", blob_id, sealed, ulen)
        if new:
            self.on_blob("data", len(data), stored)
            return blob_id, len(data), stored
        return blob_id, 0, 0

    def _save_queued(self, data) -> Tuple[str, int, int]:
        try:
            return self.save_blob(data)
        finally:
            self.budget.release(len(data))

    def read_content(self, fd: int, size_hint: int) -> Tuple[List[str], int, int, int]:
        """Chunk and save everything readable from fd: (blob ids, bytes read, plaintext
        added, stored added)."""
        if size_hint < MIN_SIZE:
            # One read of the expected size plus a byte: a short read of a regular file
            # means its end, so a small file costs one allocation of its own size.
            data = os.read(fd, size_hint + 1)
            if len(data) <= size_hint:
                self.on_bytes(len(data))
                if not data:
                    return [], 0, 0, 0
                blob_id, added, stored = self.save_blob(data)
                return [blob_id], len(data), added, stored
            head = data  # the file grew while we looked: chunk all of it
        else:
            head = b""
        with os.fdopen(fd, "rb", buffering=0, closefd=False) as f:
            return self.save_stream(_Prepend(head, f) if head else f)

    def save_stream(self, stream) -> Tuple[List[str], int, int, int]:
        """Chunk a stream, saving chunks in the pool: (blob ids, bytes, added, stored)."""
        futures: List[Completion] = []
        total = 0
        try:
            for chunk in self.chunker.chunks(stream, CHUNK_BUFFER):
                if self.cancelled.is_set():
                    raise Cancelled()
                self.budget.acquire(len(chunk))
                futures.append(self.pool.submit(self._save_queued, chunk))
                total += len(chunk)
                self.on_bytes(len(chunk))
        finally:
            results = [task.wait() for task in futures]  # never leave queued chunks behind
        ids = [r[0] for r in results]
        return ids, total, sum(r[1] for r in results), sum(r[2] for r in results)

    def shutdown(self) -> None:
        self.pool.shutdown(cancel=self.cancelled.is_set())


class Cancelled(Exception):
    """The backup was interrupted; raised in worker threads to stop reading early."""


# Disk images are mostly zeros: comparing with zeros (memcmp) is several times cheaper
# than hashing, and all-zero chunks of one length share one id.
_ZEROS = bytes(8 * 1024 * 1024)
_zero_ids = {}


def _zero_chunk_id(data) -> str:
    n = len(data)
    if n < 4096 or n > len(_ZEROS) or data[:1] != b"\0" or data[-1:] != b"\0":
        return ""
    if data != _ZEROS[:n] if isinstance(data, bytes) else bytes(data) != _ZEROS[:n]:
        return ""
    blob_id = _zero_ids.get(n)
    if blob_id is None:
        blob_id = _zero_ids[n] = hashlib.sha256(data).hexdigest()
    return blob_id


class _Prepend:
    """A stream that yields `head` first, then the rest of `f`."""

    def __init__(self, head: bytes, f):
        self._head = memoryview(head)
        self._f = f

    def readinto(self, buf) -> int:
        if self._head:
            n = min(len(buf), len(self._head))
            buf[:n] = self._head[:n]
            self._head = self._head[n:]
            return n
        return self._f.readinto(buf)

    def read(self, n: int = -1) -> bytes:
        if self._head:
            out = bytes(self._head[:n] if n >= 0 else self._head)
            self._head = self._head[len(out):]
            return out
        return self._f.read(n)
