"""The storage protocol every backend implements, and the repository's file types."""
from enum import Enum
from typing import Iterator, Optional, Protocol, Tuple


class FileType(Enum):
    """Each kind of repository file and the folder it lives in."""

    CONFIG = "config"
    KEY = "keys"
    LOCK = "locks"
    SNAPSHOT = "snapshots"
    INDEX = "index"
    PACK = "data"

    @property
    def label(self) -> str:
        """The singular name restic uses in messages and `cat`/`list` arguments."""
        return _LABELS[self]


_LABELS = {
    FileType.CONFIG: "config",
    FileType.KEY: "key",
    FileType.LOCK: "lock",
    FileType.SNAPSHOT: "snapshot",
    FileType.INDEX: "index",
    FileType.PACK: "data",
}


class Backend(Protocol):
    location: str

    def create(self) -> None:
        """Lay out a new, empty repository; fail if a config already exists."""

    def save(self, ftype: FileType, name: str, data) -> None:
        """Store a whole file atomically: readers see all of it or nothing. data is bytes
        or a list of byte strings to be stored one after the other."""

    def load(self, ftype: FileType, name: str, offset: int = 0, length: Optional[int] = None) -> bytes:
        """Read a file, or length bytes of it from offset. Raises FileNotFoundError."""

    def stat(self, ftype: FileType, name: str) -> int:
        """Size of a file in bytes. Raises FileNotFoundError."""

    def remove(self, ftype: FileType, name: str) -> None:
        ...

    def list(self, ftype: FileType) -> Iterator[Tuple[str, int]]:
        """(name, size) of every file of that type, in storage order."""

    def close(self) -> None:
        ...
