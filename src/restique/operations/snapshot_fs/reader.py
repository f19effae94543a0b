"""File contents at any offset, served from the file's data blobs.

Decrypted blobs are kept in a cache bounded in bytes (least recently used go first). Two
readers wanting the same blob wait for one load; a read also starts loading the next blobs
of the file in the background, so a sequential reader finds them ready.
"""
import bisect
import threading
from collections import OrderedDict
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Callable, Dict, List, Optional

from ...errors import IntegrityError, NotFound
from ...repository.crypto import OVERHEAD

DEFAULT_CACHE_BYTES = 64 * 1024 * 1024
READ_AHEAD_BLOBS = 6


class BlobCache:
    """Plaintext data blobs by id, at most max_bytes of them, loaded by a few threads."""

    def __init__(self, repo, max_bytes: int = DEFAULT_CACHE_BYTES, workers: int = 4):
        self.repo = repo
        self.max_bytes = max_bytes
        self._lock = threading.Lock()
        self._blobs: "OrderedDict[str, bytes]" = OrderedDict()
        self._held = 0
        self._loading: Dict[str, Future] = {}
        self._pool = ThreadPoolExecutor(workers, thread_name_prefix="snapshot-fs-read")

    @property
    def held_bytes(self) -> int:
        return self._held

    def get(self, blob_id: str) -> bytes:
        """The blob's plaintext, from the cache or loaded now (by this thread)."""
        with self._lock:
            data = self._blobs.get(blob_id)
            if data is not None:
                self._blobs.move_to_end(blob_id)
                return data
            future = self._loading.get(blob_id)
            mine = future is None
            if mine:
                future = self._loading[blob_id] = Future()
        if not mine:
            return future.result()
        self._load_into(blob_id, future)
        return future.result()

    def cached(self, blob_id: str) -> Optional[bytes]:
        """The blob's plaintext if it is in the cache now, else None; never waits."""
        with self._lock:
            data = self._blobs.get(blob_id)
            if data is not None:
                self._blobs.move_to_end(blob_id)
            return data

    def prefetch(self, blob_id: str) -> None:
        """Start loading the blob in the background unless it is cached or on its way."""
        with self._lock:
            if blob_id in self._blobs or blob_id in self._loading:
                return
            future = self._loading[blob_id] = Future()
        try:
            self._pool.submit(self._load_into, blob_id, future)
        except RuntimeError:  # closed: the reader loads it itself when it needs it
            with self._lock:
                self._loading.pop(blob_id, None)
            future.cancel()

    def _load_into(self, blob_id: str, future: Future) -> None:
        try:
            loc = self.repo.index.lookup("data", blob_id)
            if loc is None:
                raise NotFound(f"data blob {blob_id[:8]} not found in the index")
            try:
                data = self.repo.blobs.load("data", blob_id, loc)
            except FileNotFoundError:
                raise IntegrityError(f"pack {loc.pack_id[:10]} is missing") from None
        except BaseException as exc:
            with self._lock:
                self._loading.pop(blob_id, None)
            future.set_exception(exc)
            return
        with self._lock:
            self._loading.pop(blob_id, None)
            if len(data) <= self.max_bytes // 2 and blob_id not in self._blobs:
                self._blobs[blob_id] = data
                self._held += len(data)
                while self._held > self.max_bytes:
                    _, old = self._blobs.popitem(last=False)
                    self._held -= len(old)
        future.set_result(data)

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)


class FileReader:
    """Reads one file (its content list of blob ids) at any offset; thread-safe."""

    def __init__(self, cache: BlobCache, content: Optional[List[str]], size: int):
        self.cache = cache
        self.blob_ids = list(content or ())
        self.size = size
        self.starts: List[int] = []  # plaintext offset of each blob in the file
        at = 0
        for blob_id in self.blob_ids:
            self.starts.append(at)
            sizes = cache.repo.index.stored_sizes("data", blob_id)
            if sizes is None:
                raise NotFound(f"data blob {blob_id[:8]} not found in the index")
            stored, uncompressed = sizes
            at += uncompressed or stored - OVERHEAD
        self.length = at

    def read(self, offset: int, size: int) -> bytes:
        """Up to size bytes from offset; fewer at the end of the file."""
        return self._read(offset, size, self.cache.get)

    def read_cached(self, offset: int, size: int) -> Optional[bytes]:
        """read() when every blob it needs is cached already, else None: it never waits for
        a load, so an event loop can answer from the cache without handing the read to a
        thread (a sequential reader finds most blobs read ahead)."""
        return self._read(offset, size, self.cache.cached)

    def _read(self, offset: int, size: int, blob: Callable[[str], Optional[bytes]]) -> Optional[bytes]:
        if offset < 0 or size < 0:
            raise ValueError("offset and size must not be negative")
        end = min(offset + size, self.length)
        if offset >= end:
            return b""
        first = bisect.bisect_right(self.starts, offset) - 1
        last = bisect.bisect_right(self.starts, end - 1) - 1
        for ahead in range(last + 1, min(last + 1 + READ_AHEAD_BLOBS, len(self.blob_ids))):
            self.cache.prefetch(self.blob_ids[ahead])
        pieces = []
        for i in range(first, last + 1):
            data = blob(self.blob_ids[i])
            if data is None:
                return None
            lo = max(offset - self.starts[i], 0)
            hi = min(end - self.starts[i], len(data))
            pieces.append(data if lo == 0 and hi == len(data) else data[lo:hi])
        return pieces[0] if len(pieces) == 1 else b"".join(pieces)
