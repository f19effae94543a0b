"""A repository in a local directory, laid out exactly as restic lays it out."""
import os
from typing import Iterator, Optional, Tuple

from ..errors import AlreadyExists, RepositoryNotFound, RestiqueError
from .base import FileType

DIR_MODE = 0o700
FILE_MODE = 0o400  # restic makes repository files read-only


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
    def __init__(self, path: str, location: Optional[str] = None):
        self.path = path
        self.location = location or path

    # --- layout ---
    def _dir(self, ftype: FileType, name: str = "") -> str:
        if ftype is FileType.PACK and name:
            return os.path.join(self.path, "data", name[:2])
        return os.path.join(self.path, ftype.value) if ftype is not FileType.CONFIG else self.path

    def _file(self, ftype: FileType, name: str) -> str:
        if ftype is FileType.CONFIG:
            return os.path.join(self.path, "config")
        return os.path.join(self._dir(ftype, name), name)

    def create(self) -> None:
        if os.path.exists(self._file(FileType.CONFIG, "")):
            raise AlreadyExists(f"create repository at {self.location} failed: config file already exists")
        try:
            os.makedirs(self.path, mode=DIR_MODE, exist_ok=True)
            for ftype in (FileType.KEY, FileType.LOCK, FileType.SNAPSHOT, FileType.INDEX, FileType.PACK):
                os.makedirs(self._dir(ftype), mode=DIR_MODE, exist_ok=True)
            for i in range(256):
                os.makedirs(os.path.join(self.path, "data", "%02x" % i), mode=DIR_MODE, exist_ok=True)
        except OSError as exc:
            raise RestiqueError(f"create repository at {self.location} failed: {exc.strerror}: {exc.filename}") from None

    def check_exists(self) -> None:
        """RepositoryNotFound unless this looks like a repository (has a config file)."""
        config = self._file(FileType.CONFIG, "")
        if not os.path.isfile(config):
            raise RepositoryNotFound(
                f"repository does not exist: unable to open config file: stat {config}: "
                f"no such file or directory (is there a repository at {self.location}?)"
            )

    # --- files ---
    def save(self, ftype: FileType, name: str, data) -> None:
        final = self._file(ftype, name)
        directory = os.path.dirname(final)
        tmp = f"{final}-tmp-{os.getpid()}"
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
        with open(self._file(ftype, name), "rb") as f:
            if offset:
                f.seek(offset)
            data = f.read() if length is None else f.read(length)
        if length is not None and len(data) != length:
            raise EOFError(f"{ftype.label}/{name}: short read, wanted {length} bytes at {offset}, got {len(data)}")
        return data

    def stat(self, ftype: FileType, name: str) -> int:
        return os.stat(self._file(ftype, name)).st_size

    def remove(self, ftype: FileType, name: str) -> None:
        os.unlink(self._file(ftype, name))

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
