"""Keeping large freed blocks from staying in the process's memory (backups and restores).

glibc serves allocations above its mmap threshold with their own mappings and unmaps them
when freed, but raises that threshold to the size of each such block freed (up to 32 MiB),
and the trim threshold (free memory at a heap's top kept rather than given back) to twice
that. After the first large block is freed, later ones come from the threads' heap arenas,
which keep the pages once they are free: a restore's 8 MiB pack reads, a backup's file
contents, tree and index objects. Fixed thresholds stop the raising.
"""
import ctypes
import sys

_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
# blocks mapped on their own from this size: the pack reads are up to 8 MiB, a backup's
# small-file contents under 512 KiB come from the heap, where the next file reuses them
LARGE_BLOCK = 1024 * 1024


def return_large_buffers(threshold: int = LARGE_BLOCK) -> None:
    """Have blocks of `threshold` bytes or more mapped and unmapped on their own, and heap
    tops past twice that given back, for the rest of the process (glibc only; elsewhere
    nothing changes)."""
    if not sys.platform.startswith("linux"):
        return
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):  # not glibc (musl has no mallopt)
        return
    mallopt(_M_MMAP_THRESHOLD, threshold)
    mallopt(_M_TRIM_THRESHOLD, 2 * threshold)
