"""Reading a file's content into data blobs.

Small files (under the chunker's minimum size) are one chunk: they are read whole and
saved by the reading thread. Larger files are cut by the chunker; their chunks go to a
pool of saver threads (hash, compress, encrypt), so one big file keeps every core busy.
The chunks are views into a few shared read buffers (no copy per chunk); the buffers bound
the chunks in flight: a reader waits for a free one. A regular file (or stdin redirected from
one) is read past its holes: see SparseReader.
"""
import errno
import hashlib
import io
import os
import stat
import threading
from collections import deque
from typing import Callable, Deque, List, Optional, Tuple

from ...repository.chunker import MAX_SIZE, MIN_SIZE, Chunker, HeldChunk, ReadBuffers, all_zero
from ...repository.crypto import OVERHEAD
from .chunk_naming import ChunkNaming
from .tasks import Completion, WorkerPool

# Each read buffer holds the largest chunk plus room to read on: the unfinished chunk at
# a buffer's end moves to the next one. Two let the reader fill one while the savers work
# on the chunks of the other (chunks are handed on as each read arrives, so the savers do
# not wait for a full buffer); more readers wait for each other's buffers. A third buffer
# (9 MiB) took a disk image's backup from stdin over restic's peak memory.
READ_BUFFERS = 2
READ_BUFFER_SIZE = MAX_SIZE + 1024 * 1024


class FileSaver:
    def __init__(self, repo, chunker: Chunker, on_blob: Callable[[str, int, int], None],
                 on_bytes: Callable[[int], None], workers: int):
        self.blobs = repo.blobs
        self.chunker = chunker
        self.on_blob = on_blob
        self.on_bytes = on_bytes
        # Savers past the first stand by while the blobs are new and do not compress: one seals
        # such data as fast as the reader cuts it, when the reader computes the ids of the
        # chunks it cuts while the saver is behind (held_chunks' hash_when), and each keeps its
        # core and its cache (a pack is hashed right after its blobs are sealed into it): a
        # 512 MiB random file took 1.10 s with two savers, 0.98 with one. Compressing (zstd)
        # or only hashing known data, they all work.
        self.all_hands = threading.Event()
        # Whether the savers have more to do than hash: new blobs to seal, or to compress too.
        # The reader then computes the ids of the chunks it cuts while they are behind (two at
        # a time, see held_chunks): with the savers compressing, a disk image took 0.83 s
        # instead of 0.95. Blobs already stored only need their ids: the savers compute those
        # side by side faster than the reader, which is the one that cuts the chunks, would
        # (a re-backup of a known 512 MiB file: 0.86 s against 0.95).
        self.savers_busy = True
        self.pool = WorkerPool(workers, "blob-saver", self.all_hands)
        self.buffers = ReadBuffers(READ_BUFFERS, max(READ_BUFFER_SIZE, chunker.max_size + 1024 * 1024))
        self.cancelled = threading.Event()
        self.naming = ChunkNaming()  # the savers' ids of the chunks the reader leaves them

    def save_blob(self, data, blob_id: str = "") -> Tuple[str, int, int]:
        """(id, plaintext size if new else 0, stored size if new else 0)."""
        blob_id = blob_id or _zero_chunk_id(data) or hashlib.sha256(data).hexdigest()
        if self.blobs.known("data", blob_id):
            self.all_hands.set()
            self.savers_busy = False
            return blob_id, 0, 0
        new, stored = self.blobs.store("data", blob_id, data)
        if new:
            (self.all_hands.set if stored < len(data) + OVERHEAD else self.all_hands.clear)()
            self.savers_busy = True
            self.on_blob("data", len(data), stored)
            return blob_id, len(data), stored
        return blob_id, 0, 0

    def save_blobs(self, blobs: List[Tuple[str, bytes]]) -> List:
        """Save small blobs (id, data) together, a directory's small files (see
        BlobStore.store_batch): for each, (plaintext size if new else 0, stored size if new
        else 0), or the exception that kept it out."""
        saved = []
        for (_, data), result in zip(blobs, self.blobs.store_batch(blobs)):
            if isinstance(result, BaseException):
                saved.append(result)
            elif result[0]:
                self.on_blob("data", len(data), result[1])
                saved.append((len(data), result[1]))
            else:
                saved.append((0, 0))
        return saved

    def _reader_hashes(self) -> bool:
        """Whether the reader computes the next chunk's id: while the savers seal or
        compress new blobs and are behind."""
        return self.savers_busy and self.pool.backlog()

    def _save_held(self, chunk: HeldChunk, zeros: bool = False) -> Tuple[str, int, int]:
        try:
            if not zeros and not chunk.blob_id:
                self.naming.name(chunk)
            return self.save_blob(chunk.data, _zeros_id(len(chunk)) if zeros else chunk.blob_id)
        finally:
            chunk.release()  # before the task completes: whoever waits for it finds the buffer free

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
        f = SparseReader(fd, len(head))
        return self.save_stream(_Prepend(head, f) if head else f, f)

    def save_stream(self, stream, sparse: "Optional[SparseReader]" = None) -> Tuple[List[str], int, int, int]:
        """Chunk a stream, saving chunks in the pool: (blob ids, bytes, added, stored).
        sparse: the SparseReader the stream reads the file through from its start, if any."""
        start = 0  # where the stream's first byte is in the file
        if sparse is None:
            sparse = SparseReader.of_stream(stream)
            if sparse is not None:
                stream, start = sparse, sparse.start
        futures: List[Completion] = []
        total = 0
        try:
            for chunk in self.chunker.held_chunks(stream, self.buffers, self._reader_hashes):
                if self.cancelled.is_set():
                    chunk.release()
                    raise Cancelled()
                size = len(chunk)
                # a chunk made of a hole's zeros: its id is known without looking at it
                zeros = sparse is not None and sparse.in_hole(start + total, start + total + size)
                if not zeros and not chunk.blob_id:
                    self.naming.queued(chunk)
                task = self.pool.submit(self._save_held, chunk, zeros)
                # a cancelled task does not run but completes (failed): its buffer is not lost
                task.add_done_callback(lambda _, chunk=chunk: self.naming.release(chunk))
                futures.append(task)
                total += size
                self.on_bytes(size)
        finally:
            _wait_all(futures)  # never leave queued chunks (and their buffers) behind
        results = [task.result() for task in futures]
        ids = [r[0] for r in results]
        return ids, total, sum(r[1] for r in results), sum(r[2] for r in results)

    def shutdown(self) -> None:
        self.pool.shutdown(cancel=self.cancelled.is_set())


def _wait_all(tasks: List[Completion]) -> None:
    """Wait until every task has completed, whatever it raised (result() raises that once all
    are done). An interruption of this thread meanwhile (Ctrl-C, SIGTERM, SIGHUP) is raised
    after the waiting, not swallowed as if a task had raised it."""
    interruption = None
    for task in tasks:
        while True:
            try:
                task.wait()
            except BaseException as exc:  # noqa: BLE001 - sorted out just below
                if not task.raised(exc):
                    interruption = interruption or exc
                    continue
            break
    if interruption is not None:
        raise interruption


class Cancelled(Exception):
    """The backup was interrupted; raised in worker threads to stop reading early."""


# Disk images are mostly zeros: checking for zeros is several times cheaper than hashing,
# and all-zero chunks of one length share one id.
_zero_ids = {}


def _zero_chunk_id(data) -> str:
    n = len(data)
    if n < 4096 or data[0] != 0 or data[n - 1] != 0 or not all_zero(data):
        return ""
    return _zeros_id(n)


def _zeros_id(n: int) -> str:
    """The id of n zero bytes."""
    blob_id = _zero_ids.get(n)
    if blob_id is None:
        digest = hashlib.sha256()
        block = SparseReader.zeros()
        for done in range(0, n, len(block)):
            digest.update(block[:min(len(block), n - done)])
        blob_id = _zero_ids[n] = digest.hexdigest()
    return blob_id


class SparseReader:
    """A regular file read from `pos` on, with readinto(): the ranges the file system reports
    as holes (SEEK_DATA, SEEK_HOLE) come out as zeros without being read, and chunks cut
    from one hole are known to be zeros (in_hole). A sparse disk image of 1 GiB with 96 MiB
    of data otherwise copied its gigabyte of zeros out of the page cache (a tenth of its
    backup's CPU) and compared it with zeros again; now the zeros are copied from one cached
    block. Where the file system knows no holes, the whole file is data, and read. A hole
    filled while it is read is read as zeros, as a read racing with the write could have."""

    _zeros = memoryview(b"")  # a block of zeros that holes are copied from (made on first use)

    def __init__(self, fd: int, pos: int):
        """fd's offset is pos."""
        self._fd = fd
        # data is read with read(2) at the file's offset, as restic reads (and as a failure
        # injected into read() expects)
        self._file = io.FileIO(fd, "rb", closefd=False)
        self.start = pos
        self._pos = pos
        self._seek = False  # the offset is behind pos (holes were skipped)
        self._holes: Deque[Tuple[int, int]] = deque()  # [start, end) of holes read, the latest last
        self._data_end = pos  # [pos, data_end) is data
        self._hole_end = pos  # [pos, hole_end) is a hole
        self.read_bytes = 0  # what was actually read

    @classmethod
    def of_stream(cls, stream):
        """A SparseReader going on where the stream is, when it is a regular file with
        nothing read ahead into its buffer; else None."""
        try:
            fd = stream.fileno()
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                return None
            pos = stream.tell()  # a buffered stream: its raw position less what it holds
            if pos != os.lseek(fd, 0, os.SEEK_CUR):
                return None
        except (AttributeError, OSError, ValueError):
            return None  # io.UnsupportedOperation is an OSError and a ValueError
        return cls(fd, pos)

    @staticmethod
    def zeros() -> memoryview:
        """A block of zeros, made on first use."""
        if not SparseReader._zeros:
            SparseReader._zeros = memoryview(bytes(1 << 20))
        return SparseReader._zeros

    def in_hole(self, start: int, end: int) -> bool:
        """Whether the bytes [start, end) of the file were all read from one hole; holes
        before start are forgotten (ask in the file's order)."""
        holes = self._holes
        while holes and holes[0][1] <= start:
            holes.popleft()
        return bool(holes) and holes[0][0] <= start and end <= holes[0][1]

    def readinto(self, buf) -> int:
        view = memoryview(buf).cast("B")
        if self._pos >= self._data_end and self._pos >= self._hole_end:
            self._locate()
        if self._pos < self._hole_end:
            n = min(len(view), self._hole_end - self._pos)
            _fill_zeros(view, n)
            self._seek = True
            if self._holes and self._holes[-1][1] == self._pos:
                self._holes[-1] = (self._holes[-1][0], self._pos + n)
            else:
                self._holes.append((self._pos, self._pos + n))
        else:
            if self._seek:
                os.lseek(self._fd, self._pos, os.SEEK_SET)
                self._seek = False
            n = self._file.readinto(view[:self._data_end - self._pos]) or 0
            self.read_bytes += n
        self._pos += n
        return n

    def _locate(self) -> None:
        """Find what starts at pos: data (up to the next hole) or a hole (up to the next data).
        Looking moves the file's offset: the next read seeks back to pos."""
        pos = self._pos
        self._seek = True
        try:
            data = os.lseek(self._fd, pos, os.SEEK_DATA)
        except OSError as exc:
            if exc.errno != errno.ENXIO:  # no hole search here: everything is data
                self._data_end = 1 << 63
                return
            # no data from pos on: a hole up to the end, or the end itself; past the size it
            # reports, a file may still have data (procfs, a file that grew): read on
            size = os.fstat(self._fd).st_size
            if size > pos:
                self._hole_end = size
            else:
                self._data_end = 1 << 63
            return
        if data > pos:
            self._hole_end = data
        else:
            self._data_end = os.lseek(self._fd, pos, os.SEEK_HOLE)


def _fill_zeros(view: memoryview, n: int) -> None:
    """view[:n] = zeros, copied from one block of zeros."""
    zeros = SparseReader.zeros()
    done = 0
    while done < n:
        step = min(n - done, len(zeros))
        view[done:done + step] = zeros[:step]
        done += step


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
