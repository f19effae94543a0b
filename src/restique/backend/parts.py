"""A file to save, given as its parts (a pack's blobs, then its header), sent without joining
them into one more copy: a 16 MiB pack per upload connection is memory a remote backup keeps.

`PartsBody` is what an HTTP client sends piece by piece (an iterable with a length, so the
request carries a Content-Length, not chunked encoding); each iteration starts from the first
part, so a retried request sends the whole file again. `PartsReader` is the same file as a
seekable binary file object, for clients that read and rewind (botocore, s3transfer).
"""
import io
from typing import Iterator, List


def as_parts(data) -> List[memoryview]:
    """data (bytes-like, or a list or tuple of them) as a list of flat byte views."""
    pieces = data if isinstance(data, (list, tuple)) else [data]
    return [memoryview(piece).cast("B") for piece in pieces if len(piece)]


class PartsBody:
    """The parts of a file as one request body."""

    def __init__(self, data):
        self.parts = as_parts(data)
        self.size = sum(len(part) for part in self.parts)

    def __len__(self) -> int:
        return self.size

    def __iter__(self) -> Iterator[memoryview]:
        return iter(self.parts)


class PartsReader(io.RawIOBase):
    """The parts of a file as a read-only, seekable file object."""

    def __init__(self, data):
        super().__init__()
        self._body = PartsBody(data)
        self._pos = 0
        self._part = 0  # the part holding _pos (or the first after it)
        self._part_start = 0  # where that part starts in the file

    def __len__(self) -> int:
        return self._body.size

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._pos, io.SEEK_END: self._body.size}[whence]
        if base + offset < 0:
            raise ValueError("negative seek position")
        self._pos = base + offset
        self._part, self._part_start = 0, 0
        parts = self._body.parts
        while self._part < len(parts) and self._part_start + len(parts[self._part]) <= self._pos:
            self._part_start += len(parts[self._part])
            self._part += 1
        return self._pos

    def readinto(self, buffer) -> int:
        out = memoryview(buffer).cast("B")
        parts, done = self._body.parts, 0
        while done < len(out) and self._part < len(parts):
            part = parts[self._part]
            start = self._pos - self._part_start
            count = min(len(part) - start, len(out) - done)
            out[done:done + count] = part[start:start + count]
            done += count
            self._pos += count
            if start + count == len(part):
                self._part_start += len(part)
                self._part += 1
        return done
