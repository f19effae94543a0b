"""The storage contract every backend meets: the repository's file types, the Backend
protocol, and the errors it raises.

The errors say what a caller may do next: a missing file (`BackendNotFound`) is an answer,
not a failure; a permanent error will fail again the same way; anything else is transient and
worth retrying. The retry wrapper relies on `is_permanent`, callers on `is_not_found`. All are
OSErrors, so the CLI reports them as it reports any other I/O failure.
"""
from __future__ import annotations

import errno
import os
from enum import Enum
from typing import Iterator, Optional, Protocol, Tuple, Union, runtime_checkable

from ..errors import UsageError


class FileType(Enum):
    """Each kind of repository file: the folder it lives in, the singular name restic uses in
    messages and `cat`/`list` arguments, and every name accepted for it."""

    #          folder        label        accepted names
    CONFIG = ("config", "config", ("config",))
    KEY = ("keys", "key", ("key", "keys"))
    LOCK = ("locks", "lock", ("lock", "locks"))
    SNAPSHOT = ("snapshots", "snapshot", ("snapshot", "snapshots"))
    INDEX = ("index", "index", ("index",))
    PACK = ("data", "data", ("pack", "packs", "data"))

    def __init__(self, folder: str, label: str, names: Tuple[str, ...]):
        self.folder = folder
        self.label = label
        self.names = names

    @classmethod
    def parse(cls, kind: Union[str, "FileType"]) -> "FileType":
        """The file type a name stands for; UsageError for an unknown name."""
        if isinstance(kind, cls):
            return kind
        try:
            return _BY_NAME[kind]
        except (KeyError, TypeError):
            raise UsageError(f"invalid file type {kind!r}") from None


_BY_NAME = {name: ftype for ftype in FileType for name in ftype.names}

# The types that have a folder of their own, in the order restic creates them.
FOLDER_TYPES = (FileType.KEY, FileType.LOCK, FileType.SNAPSHOT, FileType.INDEX, FileType.PACK)


# --- errors ---

class BackendError(OSError):
    """A storage operation failed. Transient (a retry may succeed) unless `permanent`."""

    permanent = False


class PermanentBackendError(BackendError):
    """Retrying cannot help: the request itself is wrong for what is stored."""

    permanent = True


class BackendNotFound(PermanentBackendError, FileNotFoundError):
    """The named file does not exist. A FileNotFoundError, so OSError handlers keep working."""


class BackendShortRead(PermanentBackendError, EOFError):
    """The file ends before the requested range does (a truncated file)."""


class BackendFileExists(PermanentBackendError, FileExistsError):
    """save() onto an existing name, in a backend that cannot replace files atomically."""


# OS errors a retry will not fix; everything else (EIO, ENOSPC, timeouts, resets) might pass.
_PERMANENT_ERRNOS = frozenset({
    errno.ENOENT, errno.ENOTDIR, errno.EISDIR, errno.EACCES, errno.EPERM, errno.EROFS,
    errno.EEXIST, errno.ENAMETOOLONG, errno.EINVAL,
})


def not_found(ftype: FileType, name: str, where: Optional[str] = None) -> BackendNotFound:
    """The error for a missing file; where is the path or URL a user would look for."""
    where = where or (ftype.folder if ftype is FileType.CONFIG else f"{ftype.folder}/{name}")
    return BackendNotFound(errno.ENOENT, os.strerror(errno.ENOENT), where)


def is_not_found(exc: BaseException) -> bool:
    """Whether exc, or an error it was raised from, says the file does not exist."""
    while exc is not None:
        if isinstance(exc, BackendNotFound):
            return True
        exc = exc.__cause__
    return False


def is_permanent(exc: BaseException) -> bool:
    """Whether retrying the operation that raised exc is pointless."""
    if isinstance(exc, BackendError):
        return exc.permanent
    if isinstance(exc, (ConnectionError, TimeoutError)):
        return False
    if isinstance(exc, OSError):
        return exc.errno in _PERMANENT_ERRNOS
    return True  # a bug or a decided failure fails the same way again


def check_range(offset: int, length: Optional[int]) -> None:
    """ValueError for a negative offset or length: a caller's bug, not a storage failure."""
    if offset < 0 or (length is not None and length < 0):
        raise ValueError(f"invalid range: offset {offset}, length {length}")


# --- the protocol ---

@runtime_checkable
class Backend(Protocol):
    """Where repository files live. Names are hex IDs; the config's name is ignored.

    load(offset, length): length None reads to the end; otherwise exactly length bytes come
    back (0 gives b""), or BackendShortRead. An offset past the end is a short read too.

    Optional: start_pack() -> a file that a data pack is appended to while it fills
    (write(parts)), then commit(name, tail) stores it as save() would, or abort() drops it
    (the local backend; see pack_files_of). map_range(ftype, name, offset, length) -> a
    read-only view of what load() would return, without copying it (the local backend; see
    load_view).
    """

    location: str
    # save() onto an existing name replaces it atomically; False: it raises BackendFileExists
    atomic_replace: bool

    def create(self) -> None:
        """Lay out a new, empty repository; AlreadyExists if a config is there."""

    def save(self, ftype: FileType, name: str, data) -> None:
        """Store a whole file atomically: readers see all of it or nothing. data is bytes,
        a list of byte strings to be stored one after the other, or a parts.FileBody (a file
        on disk, read as it is sent)."""

    def load(self, ftype: FileType, name: str, offset: int = 0, length: Optional[int] = None) -> bytes:
        """A file's bytes, or length bytes of it from offset. BackendNotFound, BackendShortRead."""

    def stat(self, ftype: FileType, name: str) -> int:
        """Size of a file in bytes. BackendNotFound."""

    def remove(self, ftype: FileType, name: str) -> None:
        """Delete a file. BackendNotFound."""

    def list(self, ftype: FileType) -> Iterator[Tuple[str, int]]:
        """(name, size) of every file of that type, in storage order; the config is not listed."""

    def close(self) -> None:
        """Release connections; the stored files stay."""


def pack_files_of(backend):
    """The backend's start_pack, or None when packs go whole through save()."""
    return getattr(backend, "start_pack", None)


def load_view(backend, ftype: FileType, name: str, offset: int, length: int):
    """load(), as a read-only buffer: a view of the file itself where the backend maps files
    (map_range), so that a large read costs no copy; else the bytes load() returns."""
    mapper = getattr(backend, "map_range", None)
    if mapper is None:
        return backend.load(ftype, name, offset, length)
    return mapper(ftype, name, offset, length)


def remote_connections(backend) -> int:
    """How many requests a remote backend serves at once (its `-o <scheme>.connections`), or 0
    for a local one, which answers in microseconds: callers run that many readers in parallel
    against a remote backend, where each read waits a round trip."""
    return getattr(backend, "connections", 0) or 0
