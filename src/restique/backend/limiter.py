"""`--limit-upload` / `--limit-download`: bandwidth limits in KiB/s, shared by all threads.

Each direction is a token bucket holding at most one second of traffic: a transfer takes its
size in tokens and waits while the bucket is in debt, so the average rate stays at the limit
while short bursts pass at full speed.
"""
import threading
import time
from typing import Iterator, Optional, Tuple

from .base import FileType
from .parts import byte_size


class TokenBucket:
    def __init__(self, bytes_per_second: float):
        self.rate = float(bytes_per_second)
        self.tokens = self.rate
        self.stamp = time.monotonic()
        self._lock = threading.Lock()

    def take(self, amount: int) -> None:
        """Account for amount bytes; sleep until the rate allows them."""
        with self._lock:
            now = time.monotonic()
            self.tokens = min(self.rate, self.tokens + (now - self.stamp) * self.rate) - amount
            self.stamp = now
            wait = -self.tokens / self.rate if self.tokens < 0 else 0.0
        if wait:
            time.sleep(wait)


class RateLimitedBackend:
    """Wraps a backend; limits are in KiB/s, 0 for none. Other attributes are the backend's."""

    def __init__(self, backend, upload_kib: int = 0, download_kib: int = 0):
        self.backend = backend
        self.upload: Optional[TokenBucket] = TokenBucket(upload_kib * 1024) if upload_kib > 0 else None
        self.download: Optional[TokenBucket] = TokenBucket(download_kib * 1024) if download_kib > 0 else None

    # packs go through save(), where their bytes are metered, not written as they fill
    start_pack = None
    map_range = None  # ... and reads through load(), where they are metered

    def __getattr__(self, name):
        return getattr(self.backend, name)

    def save(self, ftype: FileType, name: str, data) -> None:
        if self.upload is not None:
            self.upload.take(byte_size(data))  # before sending: the upload itself then runs at full speed
        self.backend.save(ftype, name, data)

    def load(self, ftype: FileType, name: str, offset: int = 0, length: Optional[int] = None) -> bytes:
        data = self.backend.load(ftype, name, offset, length)
        if self.download is not None:
            self.download.take(len(data))
        return data

    def create(self) -> None:
        self.backend.create()

    def stat(self, ftype: FileType, name: str) -> int:
        return self.backend.stat(ftype, name)

    def remove(self, ftype: FileType, name: str) -> None:
        self.backend.remove(ftype, name)

    def list(self, ftype: FileType) -> Iterator[Tuple[str, int]]:
        return self.backend.list(ftype)

    def close(self) -> None:
        self.backend.close()
