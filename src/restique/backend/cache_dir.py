"""The local cache on disk, laid out as restic lays out its own: a base folder tagged with
CACHEDIR.TAG, one folder per repository id holding a `version` file and `snapshots/`,
`index/` and `data/` with the files in subfolders named by their first two hex digits.

Cached files are the backend's files byte for byte (still encrypted). A cache folder's
modification time says when a repository was last opened; folders unused for a while are
"old" and may be removed by `cache --cleanup` or `--cleanup-cache`.
"""
from __future__ import annotations

import os
import re
import threading
import time
import weakref
from collections import OrderedDict
from typing import Iterable, List, NamedTuple, Optional, Set, Tuple

from .base import FileType

CACHE_VERSION = 1
MAX_AGE_DAYS = 30
# the folder of each cached file type inside a repository's cache folder
LAYOUT = {FileType.SNAPSHOT: "snapshots", FileType.INDEX: "index", FileType.PACK: "data"}
# the tag defined by https://bford.info/cachedir/, written as restic writes it
CACHEDIR_TAG = "Signature: 8a477f597d28d172789f06886806bc55\n"
_REPO_DIR_NAME = re.compile(r"[a-fA-F0-9]{64}|restic-check-cache-[0-9]+")
# cached files kept open for ranged reads: dump and mount read the tree packs' blobs one by
# one, and opening a buffered file for each was a fifth of dump's main thread
OPEN_FILES = 32


def default_base() -> str:
    """$RESTIC_CACHE_DIR, else restique's folder in the user's cache folder (not restic's:
    a cache belongs to one program)."""
    configured = os.environ.get("RESTIC_CACHE_DIR")
    if configured:
        return configured
    xdg = os.environ.get("XDG_CACHE_HOME")
    root = xdg if xdg and os.path.isabs(xdg) else os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(root, "restique")


class CacheDir:
    """One repository's cache folder."""

    def __init__(self, base: str, repo_id: str):
        self.base = base
        self.path = os.path.join(base, repo_id)
        self._open_files = _OpenFiles(OPEN_FILES)
        weakref.finalize(self, self._open_files.close)  # a cache dropped without close()

    @classmethod
    def open(cls, base: str, repo_id: str) -> Tuple["CacheDir", bool]:
        """(the cache folder of repo_id, newly created?); OSError when it cannot be made."""
        os.makedirs(base, mode=0o700, exist_ok=True)
        _write_tag(base)
        cache = cls(base, repo_id)
        version = _read_version(cache.path)
        if version is not None and version > CACHE_VERSION:
            raise OSError("cache version is newer")
        created = False
        if version is None:
            try:
                os.mkdir(cache.path, 0o700)
                created = True
            except FileExistsError:
                pass
            # 0644 as restic makes it (not 0666 when the umask is 0)
            fd = os.open(os.path.join(cache.path, "version"), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
            with os.fdopen(fd, "w") as f:
                f.write(str(CACHE_VERSION))
        else:
            os.utime(cache.path)  # the folder's time tells when the repository was last used
        for folder in LAYOUT.values():
            os.makedirs(os.path.join(cache.path, folder), mode=0o700, exist_ok=True)
        return cache, created

    def filename(self, ftype: FileType, name: str) -> str:
        return os.path.join(self.path, LAYOUT[ftype], name[:2], name)

    def read(self, ftype: FileType, name: str) -> Optional[bytes]:
        """The whole cached file, None when it is not cached."""
        try:
            with open(self.filename(ftype, name), "rb") as f:
                return f.read()
        except (FileNotFoundError, NotADirectoryError):
            return None

    def read_range(self, ftype: FileType, name: str, offset: int, length: Optional[int]) -> bytes:
        """length bytes from offset (to the end with None; fewer where the file ends)."""
        return self._open_files.pread(self.filename(ftype, name), offset, length)

    def close(self) -> None:
        """Closes the files kept open for read_range (which opens them again if called)."""
        self._open_files.close()

    def write(self, ftype: FileType, name: str, data) -> None:
        """Store a file atomically (a temporary file renamed), so that several processes
        may share the cache and a reader never sees half a file."""
        final = self.filename(ftype, name)
        folder = os.path.dirname(final)
        os.makedirs(folder, mode=0o700, exist_ok=True)
        import tempfile  # here: with shutil, random, bz2 and lzma it is 2 MiB a read-only command need not map

        fd, tmp = tempfile.mkstemp(prefix="tmp-", dir=folder)
        try:
            with os.fdopen(fd, "wb") as f:
                for piece in ([data] if isinstance(data, (bytes, bytearray, memoryview)) else data):
                    f.write(piece)
            os.replace(tmp, final)
        except BaseException:
            _remove_quietly(tmp)
            raise
        self._open_files.forget(final)  # read the new file from now on

    def _remove(self, path: str) -> None:
        _remove_quietly(path)
        self._open_files.forget(path)

    def remove(self, ftype: FileType, name: str) -> None:
        self._remove(self.filename(ftype, name))

    def names(self, ftype: FileType) -> Set[str]:
        found = set()
        for _, _, files in os.walk(os.path.join(self.path, LAYOUT[ftype])):
            found.update(f for f in files if not f.startswith("tmp-"))
        return found

    def clear(self, ftype: FileType, keep: Iterable[str]) -> None:
        """Remove the cached files of ftype the repository no longer has."""
        for name in self.names(ftype) - set(keep):
            self._remove(self.filename(ftype, name))


class _OpenFile:
    __slots__ = ("fd", "users", "dropped")

    def __init__(self, fd: int):
        self.fd = fd
        self.users = 0  # threads reading it now
        self.dropped = False  # no longer listed: closed when the last user is done


class _OpenFiles:
    """Read-only descriptors of the files read last, by path, at most limit of them; read
    with pread (no file position), so threads share them. A descriptor is closed only once
    it is dropped and no thread reads it, so that no read meets a closed or reused number.
    Files are opened under the lock and forget() comes after a file is replaced or removed:
    no descriptor of a file's old version stays listed."""

    def __init__(self, limit: int):
        self.limit = limit
        self._lock = threading.Lock()
        self._files: "OrderedDict[str, _OpenFile]" = OrderedDict()

    def pread(self, path: str, offset: int, length: Optional[int]) -> bytes:
        file = self._acquire(path)
        try:
            return _pread(file.fd, offset, length)
        finally:
            with self._lock:
                file.users -= 1
                self._close_if_unused(file)

    def forget(self, path: str) -> None:
        with self._lock:
            file = self._files.pop(path, None)
            if file is not None:
                self._drop(file)

    def close(self) -> None:
        with self._lock:
            while self._files:
                self._drop(self._files.popitem()[1])

    def _acquire(self, path: str) -> _OpenFile:
        with self._lock:
            file = self._files.get(path)
            if file is None:
                file = self._files[path] = _OpenFile(os.open(path, os.O_RDONLY | os.O_CLOEXEC))
                while len(self._files) > self.limit:
                    self._drop(self._files.popitem(last=False)[1])
            else:
                self._files.move_to_end(path)
            file.users += 1
            return file

    def _drop(self, file: _OpenFile) -> None:
        file.dropped = True
        self._close_if_unused(file)

    @staticmethod
    def _close_if_unused(file: _OpenFile) -> None:
        if file.dropped and file.users == 0 and file.fd >= 0:
            os.close(file.fd)
            file.fd = -1


def _pread(fd: int, offset: int, length: Optional[int]) -> bytes:
    if length is None:
        length = max(os.fstat(fd).st_size - offset, 0)
    data = os.pread(fd, length, offset)
    while len(data) < length:  # a regular file gives less only at its end: make sure
        more = os.pread(fd, length - len(data), offset + len(data))
        if not more:
            break
        data += more
    return data


class CacheEntry(NamedTuple):
    name: str  # the repository id (or a check's temporary cache)
    mtime: float  # when the repository was last opened


def list_cache_dirs(base: str) -> List[CacheEntry]:
    """Every repository cache folder under base, in the order the folder lists them."""
    try:
        entries = list(os.scandir(base))
    except FileNotFoundError:
        return []
    return [CacheEntry(e.name, e.stat().st_mtime) for e in entries
            if e.is_dir(follow_symlinks=False) and _REPO_DIR_NAME.fullmatch(e.name)]


def is_old(mtime: float, max_age_days: int) -> bool:
    return mtime < time.time() - max_age_days * 86400


def old_cache_dirs(base: str, max_age_days: int = MAX_AGE_DAYS) -> List[CacheEntry]:
    return [e for e in list_cache_dirs(base) if is_old(e.mtime, max_age_days)]


def remove_cache_dirs(base: str, entries: Iterable[CacheEntry]) -> List[str]:
    """Remove the folders; the messages of those that could not be removed."""
    import shutil  # rarely needed: see write()

    failures = []
    for entry in entries:
        path = os.path.join(base, entry.name)
        try:
            shutil.rmtree(path)
        except OSError as exc:
            failures.append(f"unable to remove {path}: {exc.strerror or exc}")
    return failures


def folder_size(path: str) -> int:
    total = 0
    for folder, _, files in os.walk(path):
        for name in files:
            try:
                total += os.lstat(os.path.join(folder, name)).st_size
            except OSError:
                pass  # removed meanwhile by another process
    return total


def _write_tag(base: str) -> None:
    try:
        fd = os.open(os.path.join(base, "CACHEDIR.TAG"), os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
    except FileExistsError:
        return
    with os.fdopen(fd, "w") as f:
        f.write(CACHEDIR_TAG)


def _read_version(path: str) -> Optional[int]:
    try:
        with open(os.path.join(path, "version")) as f:
            return int(f.read().strip())
    except (FileNotFoundError, NotADirectoryError):
        return None
    except ValueError:
        raise OSError(f"readVersion: invalid cache version in {path}") from None


def _remove_quietly(path: str) -> None:
    try:
        os.remove(path)
    except FileNotFoundError:
        pass
