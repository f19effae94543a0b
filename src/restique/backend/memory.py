"""A repository held in a dictionary: for tests, and as the simplest model of the contract."""
import errno
import threading
from typing import Dict, Iterator, Optional, Tuple

from ..errors import AlreadyExists
from .base import BackendFileExists, BackendShortRead, FileType, check_range, not_found
from .parts import FileBody


class MemoryBackend:
    """Thread-safe; files live until the object is dropped (close() keeps them, so a
    repository can be opened again on the same backend)."""

    # like restic's in-memory backend: refusing to overwrite exposes callers that rely on it
    atomic_replace = False

    def __init__(self, location: str = "memory"):
        self.location = location
        self._files: Dict[Tuple[FileType, str], bytes] = {}
        self._lock = threading.Lock()

    @staticmethod
    def _key(ftype: FileType, name: str) -> Tuple[FileType, str]:
        return (ftype, "") if ftype is FileType.CONFIG else (ftype, name)

    def create(self) -> None:
        with self._lock:
            if (FileType.CONFIG, "") in self._files:
                raise AlreadyExists(f"create repository at {self.location} failed: config file already exists")

    def save(self, ftype: FileType, name: str, data) -> None:
        # joined before taking the lock: a failing part leaves nothing behind
        content = b"".join(data) if isinstance(data, (list, tuple, FileBody)) else bytes(data)
        key = self._key(ftype, name)
        with self._lock:
            if key in self._files:
                raise BackendFileExists(errno.EEXIST, "file already exists", f"{ftype.folder}/{name}")
            self._files[key] = content

    def _get(self, ftype: FileType, name: str) -> bytes:
        with self._lock:
            try:
                return self._files[self._key(ftype, name)]
            except KeyError:
                raise not_found(ftype, name) from None

    def load(self, ftype: FileType, name: str, offset: int = 0, length: Optional[int] = None) -> bytes:
        check_range(offset, length)
        content = self._get(ftype, name)  # stored bytes are never changed, only replaced
        if offset > len(content):
            raise BackendShortRead(f"{ftype.label}/{name}: offset {offset} is past the end ({len(content)} bytes)")
        end = len(content) if length is None else offset + length
        if end > len(content):
            raise BackendShortRead(
                f"{ftype.label}/{name}: short read, wanted {length} bytes at {offset}, got {len(content) - offset}"
            )
        return content if offset == 0 and end == len(content) else content[offset:end]

    def stat(self, ftype: FileType, name: str) -> int:
        return len(self._get(ftype, name))

    def remove(self, ftype: FileType, name: str) -> None:
        with self._lock:
            if self._files.pop(self._key(ftype, name), None) is None:
                raise not_found(ftype, name)

    def list(self, ftype: FileType) -> Iterator[Tuple[str, int]]:
        if ftype is FileType.CONFIG:
            return iter(())
        with self._lock:  # a snapshot: saves and removes during the iteration do not disturb it
            entries = [(name, len(data)) for (kind, name), data in self._files.items() if kind is ftype]
        return iter(entries)

    def close(self) -> None:
        pass
