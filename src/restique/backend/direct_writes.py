"""Appending a pack file past the page cache (O_DIRECT), on local disk file systems.

A pack written through the page cache is copied into pages the kernel allocates for it, and
that copy cost more system time than anything else in a big file's backup: 0.15 to 1.5 s per
512 MiB here, swinging with how fresh the kernel's free pages were. A direct write sends the
pack's buffer to the disk as it is (the fsync before the rename still makes it durable), and
a backup no longer pushes the user's own files out of the page cache with data it will not
read again soon.

Direct writes need a file offset, length and memory address that are multiples of the
block size. A pack's bytes lie in its buffer at the offsets they have in the file (the buffer
is a map, page aligned), so whole blocks are written straight from it; the bytes short of a
block wait in a small aligned block of their own until the next append fills it, and finish()
writes what is left through the page cache. Anything unusual (a part in memory of its own,
a refusal by the file system) turns direct writes off for the rest of that file: the bytes
are the same either way.

Only on file systems of local disks (below): on a network file system a direct write
waits for the server each time, and others may not take direct writes at all.
"""
import errno
import fcntl
import mmap
import os
from typing import Optional

from .. import _seal
from .parts import as_parts, write_parts

BLOCK = 4096  # the logical block size of common disks, or a multiple of it
# statfs magic numbers of the file systems written directly
LOCAL_DISK_FILE_SYSTEMS = frozenset({
    0xEF53,  # ext2, ext3, ext4
    0x58465342,  # xfs
    0x9123683E,  # btrfs
    0xF2F52010,  # f2fs
})


class DirectAppender:
    """Appends to an open file with O_DIRECT while the parts allow it (see the module)."""

    def __init__(self, fd: int):
        self.fd = fd
        self.direct = True
        self._block = mmap.mmap(-1, BLOCK)  # page aligned: the bytes short of a block
        self._held = 0

    @classmethod
    def start(cls, fd: int) -> Optional["DirectAppender"]:
        """An appender for fd (empty, just created), or None where direct writes do not apply."""
        try:
            if _seal.file_system_type(fd) not in LOCAL_DISK_FILE_SYSTEMS:
                return None
            _set_direct(fd, True)
        except OSError:  # EINVAL: this file system takes no direct writes after all
            return None
        return cls(fd)

    def append(self, parts) -> None:
        """Write parts (bytes-like, or a list of them) after what was appended so far."""
        views = as_parts(parts)
        for i, view in enumerate(views):
            while view and self.direct:
                if self._held or len(view) < BLOCK:
                    taken = min(BLOCK - self._held, len(view))
                    self._block[self._held:self._held + taken] = view[:taken]
                    self._held += taken
                    view = view[taken:]
                    if self._held == BLOCK:
                        self._held = 0
                        written = self._write_direct(memoryview(self._block))
                        if not self.direct:
                            write_parts(self.fd, self._block[written:])
                elif _seal.buffer_address(view) % BLOCK:
                    self._stop_direct()  # memory not laid out as the file is
                else:
                    whole = len(view) - len(view) % BLOCK
                    view = view[self._write_direct(view[:whole]):]
            if not self.direct:
                write_parts(self.fd, [view] + views[i + 1:])
                return

    def finish(self) -> None:
        """Back to writes through the page cache, the bytes still held written: the file's
        remaining parts are appended to fd as usual."""
        if self.direct:
            self._stop_direct()
        self._block.close()

    def _write_direct(self, view: memoryview) -> int:
        """Write whole blocks straight from view: how many bytes went out, all of them unless
        direct writes had to stop (the caller writes the rest then)."""
        done = 0
        while done < len(view):
            try:
                written = os.write(self.fd, view[done:])
            except OSError as exc:
                if exc.errno != errno.EINVAL:
                    raise
                written = 0  # refused: an alignment this device does not take
            done += written
            if not written or written % BLOCK:  # the file's end is off a block now
                self._stop_direct()
                break
        return done

    def _stop_direct(self) -> None:
        self.direct = False
        _set_direct(self.fd, False)
        if self._held:
            held, self._held = self._block[:self._held], 0
            write_parts(self.fd, held)


def _set_direct(fd: int, on: bool) -> None:
    flags = fcntl.fcntl(fd, fcntl.F_GETFL)
    fcntl.fcntl(fd, fcntl.F_SETFL, flags | os.O_DIRECT if on else flags & ~os.O_DIRECT)
