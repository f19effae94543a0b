"""Keeping the restore's large reads from staying in the process's memory after use.

glibc serves allocations above its mmap threshold with their own mappings and unmaps them
when freed, but raises that threshold to the size of each such block freed (up to 32 MiB):
after the first pack read is freed, every later 8 MiB read comes from a thread's heap
arena, which keeps the pages once they are free. A fixed threshold stops the raising."""
import ctypes
import sys

_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
_LARGE = 1024 * 1024  # the pack reads are up to 8 MiB; the tree and index objects far smaller


def return_large_buffers() -> None:
    """Have large blocks mapped and unmapped on their own for the rest of the process (glibc
    only; elsewhere nothing changes)."""
    if not sys.platform.startswith("linux"):
        return
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):  # not glibc (musl has no mallopt)
        return
    mallopt(_M_MMAP_THRESHOLD, _LARGE)
    mallopt(_M_TRIM_THRESHOLD, 2 * _LARGE)
