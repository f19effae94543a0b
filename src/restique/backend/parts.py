"""A file to save, given as its parts (a pack's blobs, then its header), sent without joining
them into one more copy: a 16 MiB pack per upload connection is memory a remote backup keeps.

`PartsBody` is what an HTTP client sends piece by piece (an iterable with a length, so the
request carries a Content-Length, not chunked encoding); each iteration starts from the first
part, so a retried request sends the whole file again. A `FileBody` is a file kept on disk (a
pack of a remote repository, written to a temporary file while it filled): its parts are read
as they are sent, so it is never in memory whole.
"""
import errno
import os
from typing import Iterator, List

FILE_PIECE = 1024 * 1024  # what a FileBody reads at a time


class FileBody:
    """size bytes of an open file from offset, read FILE_PIECE at a time each time it is
    iterated (again from its start: a retried request sends it again)."""

    def __init__(self, fd: int, size: int, offset: int = 0):
        self.fd, self.size, self.offset = fd, size, offset

    def __len__(self) -> int:
        return self.size

    def __iter__(self) -> Iterator[bytes]:
        at, end = self.offset, self.offset + self.size
        while at < end:
            piece = os.pread(self.fd, min(FILE_PIECE, end - at), at)
            if not piece:
                raise OSError(errno.EIO, "a temporary pack file is shorter than what was written to it")
            at += len(piece)
            yield piece

    def pieces(self, size: int) -> List["FileBody"]:
        """The body cut into consecutive bodies of size bytes (the last may be shorter)."""
        return [FileBody(self.fd, min(size, self.size - start), self.offset + start)
                for start in range(0, self.size, size)]

    def tail(self, length: int) -> bytes:
        """Its last length bytes (fewer when it is shorter)."""
        length = min(length, self.size)
        return os.pread(self.fd, length, self.offset + self.size - length)


def as_parts(data) -> List[memoryview]:
    """data (bytes-like, or a list or tuple of them) as a list of flat byte views."""
    pieces = data if isinstance(data, (list, tuple)) else [data]
    return [memoryview(piece).cast("B") for piece in pieces if len(piece)]


def byte_size(data) -> int:
    """How many bytes data (as a backend's save takes it) holds."""
    if isinstance(data, FileBody):
        return data.size
    pieces = data if isinstance(data, (list, tuple)) else [data]
    return sum(memoryview(piece).nbytes for piece in pieces)


def write_parts(fd: int, data) -> None:
    """Write bytes, a list of byte strings (with gathered writes) or a FileBody."""
    if isinstance(data, FileBody):
        for piece in data:
            write_parts(fd, piece)
        return
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


def mark_written(data) -> None:
    """data is in its file: the parts' owner may reuse their memory (the pack writer's parts
    have a written() method for this; other data has none)."""
    written = getattr(data, "written", None)
    if written is not None:
        written()


class PartsBody:
    """The parts of a file as one request body."""

    def __init__(self, data):
        self.parts = data if isinstance(data, FileBody) else as_parts(data)
        self.size = byte_size(self.parts)

    def __len__(self) -> int:
        return self.size

    def __iter__(self) -> Iterator[memoryview]:
        return iter(self.parts)
