"""A file to save, given as its parts (a pack's blobs, then its header), sent without joining
them into one more copy: a 16 MiB pack per upload connection is memory a remote backup keeps.

`PartsBody` is what an HTTP client sends piece by piece (an iterable with a length, so the
request carries a Content-Length, not chunked encoding); each iteration starts from the first
part, so a retried request sends the whole file again.
"""
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
