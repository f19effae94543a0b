"""A repository in a local directory, laid out exactly as restic lays it out."""
import itertools
import os
import stat
from typing import Iterator, Optional, Tuple

from ..errors import AlreadyExists, RestiqueError
from .base import FOLDER_TYPES, BackendNotFound, BackendShortRead, FileType, check_range, not_found

DIR_MODE = 0o700
FILE_MODE = 0o400  # restic makes repository files read-only
_tmp_serial = itertools.count()  # unique temporary names for saves from several threads


def _translated(exc: OSError) -> OSError:
    """The contract's not-found error for a missing file (or a missing folder on its path)."""
    if isinstance(exc, (FileNotFoundError, NotADirectoryError)):
        return BackendNotFound(exc.errno, exc.strerror, exc.filename)
    return exc


def _write_all(fd: int, data) -> None:
    """Write bytes, or a list of byte strings with gathered writes."""
    if isinstance(data, (list, tuple)):
        pending = list(data)
        while pending:
            batch = pending[:1024]  # IOV_MAX
            written = os.writev(fd, batch)
            done = 0
            while done < len(batch) and written >= len(batch[done]):
                written -= len(batch[done])
                done += 1
            del pending[:done]
            if written:  # a short write ended inside a part
                pending[0] = memoryview(pending[0])[written:]
        return
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


class LocalBackend:
    atomic_replace = True  # rename() replaces an existing file

    def __init__(self, path: str, location: Optional[str] = None):
        self.path = path
        self.location = location or path

    # --- layout ---
    def _dir(self, ftype: FileType, name: str = "") -> str:
        if ftype is FileType.PACK and name:
            return os.path.join(self.path, "data", name[:2])
        return os.path.join(self.path, ftype.folder) if ftype is not FileType.CONFIG else self.path

    def _file(self, ftype: FileType, name: str) -> str:
        if ftype is FileType.CONFIG:
            return os.path.join(self.path, "config")
        return os.path.join(self._dir(ftype, name), name)

    def create(self) -> None:
        if os.path.exists(self._file(FileType.CONFIG, "")):
            raise AlreadyExists(f"create repository at {self.location} failed: config file already exists")
        try:
            os.makedirs(self.path, mode=DIR_MODE, exist_ok=True)
            for ftype in FOLDER_TYPES:
                os.makedirs(self._dir(ftype), mode=DIR_MODE, exist_ok=True)
            for i in range(256):
                os.makedirs(os.path.join(self.path, "data", "%02x" % i), mode=DIR_MODE, exist_ok=True)
        except OSError as exc:
            raise RestiqueError(f"create repository at {self.location} failed: {exc.strerror}: {exc.filename}") from None

    # --- files ---
    def save(self, ftype: FileType, name: str, data) -> None:
        final = self._file(ftype, name)
        directory = os.path.dirname(final)
        tmp = f"{final}-tmp-{os.getpid()}-{next(_tmp_serial)}"
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileNotFoundError:
            os.makedirs(directory, mode=DIR_MODE, exist_ok=True)
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            _write_all(fd, data)
            os.fsync(fd)
        except BaseException:
            os.close(fd)
            os.unlink(tmp)
            raise
        os.close(fd)
        os.chmod(tmp, FILE_MODE)
        os.rename(tmp, final)

    def load(self, ftype: FileType, name: str, offset: int = 0, length: Optional[int] = None) -> bytes:
        check_range(offset, length)
        try:
            f = open(self._file(ftype, name), "rb")
        except OSError as exc:
            raise _translated(exc) from None
        with f:
            if offset:
                f.seek(offset)
            data = f.read() if length is None else f.read(length)
            if not data and offset:  # nothing there: was the offset past the end?
                size = os.fstat(f.fileno()).st_size
                if offset > size:
                    raise BackendShortRead(f"{ftype.label}/{name}: offset {offset} is past the end ({size} bytes)")
        if length is not None and len(data) != length:
            raise BackendShortRead(
                f"{ftype.label}/{name}: short read, wanted {length} bytes at {offset}, got {len(data)}"
            )
        return data

    def stat(self, ftype: FileType, name: str) -> int:
        path = self._file(ftype, name)
        try:
            st = os.stat(path)
        except OSError as exc:
            raise _translated(exc) from None
        if not stat.S_ISREG(st.st_mode):  # a folder where a file belongs is no repository file
            raise not_found(ftype, name, path)
        return st.st_size

    def remove(self, ftype: FileType, name: str) -> None:
        try:
            os.unlink(self._file(ftype, name))
        except OSError as exc:
            raise _translated(exc) from None

    def list(self, ftype: FileType) -> Iterator[Tuple[str, int]]:
        if ftype is FileType.CONFIG:
            return
        dirs = [self._dir(ftype)]
        if ftype is FileType.PACK:
            try:
                dirs = sorted(e.path for e in os.scandir(dirs[0]) if e.is_dir())
            except FileNotFoundError:
                return
        for directory in dirs:
            try:
                entries = list(os.scandir(directory))
            except FileNotFoundError:
                continue
            for entry in entries:
                if "-tmp-" in entry.name or not entry.is_file():
                    continue
                try:
                    yield entry.name, entry.stat().st_size
                except FileNotFoundError:
                    continue

    def close(self) -> None:
        pass
