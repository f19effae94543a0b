"""The stream `dump` writes to a file descriptor: pieces gathered and written with one writev
each megabyte, not copied into a buffer first.

An archive is mostly file contents that are already in memory (the decrypted blobs), between
small headers and padding. A buffered file copies every byte into its buffer before the
write call copies it again; here the pieces are only referenced until they are written
(a 644 MiB archive spent a tenth of its writing thread's time copying into the buffer).
"""
import errno
import os

GATHER_BYTES = 1024 * 1024  # written once this much is gathered
_MAX_PIECES = min(getattr(os, "sysconf", lambda name: 1024)("SC_IOV_MAX") or 1024, 1024)


class GatheredOutput:
    """A binary stream on fd for dump: write() keeps a reference to each piece (bytes or a
    read-only buffer that does not change afterwards), flush() writes them all. close()
    flushes, and closes fd only when it was given with close_fd."""

    def __init__(self, fd: int, close_fd: bool = False):
        self.fd = fd
        self.close_fd = close_fd
        self._pieces: list = []
        self._gathered = 0

    def write(self, data) -> int:
        size = len(data)
        if size:
            self._pieces.append(data)
            self._gathered += size
            if self._gathered >= GATHER_BYTES or len(self._pieces) >= _MAX_PIECES:
                self.flush()
        return size

    def flush(self) -> None:
        pieces, self._pieces, self._gathered = self._pieces, [], 0
        while pieces:
            batch = pieces[:_MAX_PIECES]
            written = os.writev(self.fd, batch)
            if not written:
                raise OSError(errno.EIO, os.strerror(errno.EIO))
            # drop what was written; a short write leaves the rest of a piece for the next call
            done = 0
            while done < len(batch) and written >= len(batch[done]):
                written -= len(batch[done])
                done += 1
            del pieces[:done]
            if written:
                pieces[0] = memoryview(pieces[0])[written:]

    def close(self) -> None:
        try:
            self.flush()
        finally:
            if self.close_fd:
                os.close(self.fd)
