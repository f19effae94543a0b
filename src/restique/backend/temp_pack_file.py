"""A pack of a remote repository kept in a temporary file while it fills, and sent from it
(restic keeps its packs in temporary files too): memory holds neither the pack being filled
nor the packs waiting for an upload slot or being uploaded, whatever the pack size and the
number of connections. The file has no name (it is gone when closed, or when the process
dies) and lives in TMPDIR, as restic's do."""
import tempfile

from .base import FileType
from .parts import FileBody, byte_size, mark_written, write_parts


class TempPackFile:
    """The pack file interface of the Backend protocol (see base.Backend) for a backend that
    stores files whole: commit() sends the file through the backend's save()."""

    def __init__(self, backend):
        self._backend = backend
        self._file = None
        self.size = 0

    def write(self, parts) -> None:
        if self._file is None:
            self._file = tempfile.TemporaryFile(prefix="restique-pack-")
        write_parts(self._file.fileno(), parts)
        self.size += byte_size(parts)

    def commit(self, name: str, tail) -> None:
        try:
            self.write(tail)
            mark_written(tail)  # the parts' memory may be reused while the file is sent
            self._backend.save(FileType.PACK, name, FileBody(self._file.fileno(), self.size))
        finally:
            self.abort()

    def abort(self) -> None:
        """Close (and so remove) the file; safe to call more than once."""
        if self._file is not None:
            self._file.close()
            self._file = None


def temporary_pack_files(backend):
    """A start_pack for backend: packs in temporary files, stored through its save()."""
    return lambda: TempPackFile(backend)
