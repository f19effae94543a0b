"""Many blobs of one pack range decrypted and checked in one native call that holds no GIL.

restore's _seal.restore_range writes each plaintext to a file at an offset; here the file is
a memory file of the calling thread's own, read back with one call. Blob by blob, each
decryption and hash would take the GIL back from the thread walking or writing several
times, and a thread that waits for the GIL waits up to the interpreter's switch interval.
The errors are the ones BlobStore.decode raises for the same damage.
"""
import os
from queue import SimpleQueue
from typing import List, Sequence, Tuple

from ..errors import IntegrityError

AVAILABLE = hasattr(os, "memfd_create")  # Linux; elsewhere callers decode blob by blob
_ID_MISMATCH = "content does not match its id"  # restore_range's words for it
_KEPT = 16 * 1024 * 1024  # a memory file that held more is emptied after use


class MemoryFiles:
    """Scratch memory files, one per thread using it at a time; close() when done."""

    def __init__(self):
        self._free: "SimpleQueue[int]" = SimpleQueue()

    def decode(self, key, sealed: bytes, start: int, blobs: Sequence[Tuple[str, object]]) -> List[object]:
        """Each blob's plaintext (bytes, or a memoryview of the range's plaintext) or the
        IntegrityError it gives; blobs are (id, location) read from sealed, which starts at
        offset start of their pack. OSError when the memory file cannot be made or written,
        ValueError when a blob lies outside sealed (callers then decode blob by blob)."""
        fd = self._free.get() if not self._free.empty() else os.memfd_create("restique-blobs", os.MFD_CLOEXEC)
        try:
            return _decode(key, sealed, start, blobs, fd)
        finally:
            self._free.put(fd)

    def close(self) -> None:
        while not self._free.empty():
            os.close(self._free.get())


def _decode(key, sealed: bytes, start: int, blobs: Sequence[Tuple[str, object]], fd: int) -> List[object]:
    from .. import _seal

    calls = []
    at = 0
    for blob_id, loc in blobs:
        calls.append((loc.offset - start, loc.length, loc.uncompressed_length, bytes.fromhex(blob_id), [(fd, at)]))
        at += loc.size
    failures = _seal.restore_range(key.encrypt, key.mac_k, key.mac_r, sealed, calls)
    del sealed
    for _, dest, err, _ in failures:
        if dest >= 0:  # the memory file could not take it (no memory left for it)
            raise OSError(err, os.strerror(err))
    plain = os.pread(fd, at, 0) if at else b""
    if len(blobs) == 1:
        decoded: List[object] = [plain]
    else:  # views: the range's plaintext is let go once the last of them is
        decoded = []
        view = memoryview(plain)
        at = 0
        for _, loc in blobs:
            decoded.append(view[at:at + loc.size])
            at += loc.size
    for i, _, _, what in failures:
        blob_id, loc = blobs[i]
        decoded[i] = blob_error(blob_id, loc, what)
    if at > _KEPT:
        os.ftruncate(fd, 0)
    return decoded


def blob_error(blob_id: str, loc, what: str) -> IntegrityError:
    """The error BlobStore.decode raises for the damage restore_range reports as what."""
    if what == _ID_MISMATCH:
        return IntegrityError(f"blob {blob_id} is damaged: its content does not match its id")
    if what.startswith("uncompressed length"):
        what = (f"uncompressed length {loc.uncompressed_length} is impossible for {loc.length - 32} "
                "compressed bytes")
    return IntegrityError(f"decrypting blob {blob_id} failed: {what}")
