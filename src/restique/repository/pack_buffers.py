"""Reused buffers that data packs are sealed into, instead of a fresh byte string per blob.

A blob of a million bytes allocated, freed, and allocated again by several threads leaves
the C heap fragmented: a backup of one big file grew its resident memory by a fifth over
what it held live. A pack buffer is an anonymous memory map of a pack's size plus its
largest blob, taken when a pack is started and given back once the pack is stored; savers
seal their blobs straight into it. The pool's size is the bound on data packs in memory
(open, waiting for an upload slot, and being stored): a saver that needs a new pack waits
for a free buffer.
"""
import mmap
import threading
from typing import List


class PackBuffers:
    """At most `count` buffers of `size` bytes, made on first use and then reused. Pages past
    `keep` bytes (a pack's overshoot by its last blob) are handed back to the system when a
    buffer comes back, so an idle buffer holds about a pack's size, not a pack plus a blob."""

    def __init__(self, count: int, size: int, keep: int):
        if count < 1 or size < 1:
            raise ValueError("need at least one buffer of at least one byte")
        self.count = count
        self.size = size
        self._keep = min(size, -(-keep // mmap.PAGESIZE) * mmap.PAGESIZE)
        self._free: List[mmap.mmap] = []
        self._made = 0
        self._changed = threading.Condition()

    def take(self) -> mmap.mmap:
        """A buffer; waits while every buffer is in use."""
        with self._changed:
            self._changed.wait_for(lambda: self._free or self._made < self.count)
            if self._free:
                return self._free.pop()
            self._made += 1
        return mmap.mmap(-1, self.size)

    def give_back(self, mem: mmap.mmap) -> None:
        if self._keep < self.size:
            mem.madvise(mmap.MADV_DONTNEED, self._keep, self.size - self._keep)
        with self._changed:
            self._free.append(mem)
            self._changed.notify()

    def in_use(self) -> int:
        with self._changed:
            return self._made - len(self._free)
