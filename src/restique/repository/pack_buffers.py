"""Reused buffers that data packs are sealed into, instead of a fresh byte string per blob.

A blob of a million bytes allocated, freed, and allocated again by several threads leaves
the C heap fragmented: a backup of one big file grew its resident memory by a fifth over
what it held live. A pack buffer is an anonymous memory map of a pack's size plus its
largest blob, taken when a pack is started and given back once the pack is written; savers
seal their blobs straight into it. The pool's size is the bound on data packs in memory
(open, waiting for an upload slot, and being stored): a saver that needs a new pack waits
for a free buffer.

A buffer given back also gives its pages back to the system: memory holds the packs being
filled and written, not idle buffers. The maps are private and ask for huge pages, so
touching a buffer again costs a few faults per pack rather than one per 4 KiB (a 16 MiB pack
in 4 KiB pages took 9 ms more to fill, 2 MiB pages a few tenths of a millisecond).
"""
import mmap
import threading
from typing import List


class PackBuffers:
    """At most `count` buffers of `size` bytes, made on first use and then reused."""

    def __init__(self, count: int, size: int):
        if count < 1 or size < 1:
            raise ValueError("need at least one buffer of at least one byte")
        self.count = count
        self.size = size
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
        mem = mmap.mmap(-1, self.size, flags=mmap.MAP_PRIVATE)
        if _HUGE_PAGES is not None:
            mem.madvise(_HUGE_PAGES)
        return mem

    def give_back(self, mem: mmap.mmap) -> None:
        mem.madvise(mmap.MADV_DONTNEED)  # private: the pages are freed (touched again, they are zeros)
        with self._changed:
            self._free.append(mem)
            self._changed.notify()

    def in_use(self) -> int:
        with self._changed:
            return self._made - len(self._free)


_HUGE_PAGES = getattr(mmap, "MADV_HUGEPAGE", None)
