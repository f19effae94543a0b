"""A bounded pool of large reused buffers: anonymous memory maps made on first use.

Both the read buffers that chunks point into (chunk_buffers) and the buffers that data packs
are sealed into (pack_buffers) are such pools: a fixed number of buffers bounds the memory
of what is in flight, and reusing them spares an allocation and the page faults of fresh
memory for every chunk or pack (chunk-sized heap allocations by several threads also left
the C heap fragmented). The maps ask for huge pages: filling 27 MiB of 4 KiB pages took
~7000 page faults the first time. A map is a whole number of huge pages long, which the kernel
places on a huge-page boundary (Linux 6.7 and later): pages given back from the middle of a huge
page split it, and every later fault there is a 4 KiB one (a backup of a 512 MiB file took
62,000 faults instead of 12,000 while pack buffers of 24 MiB + 4 KiB began off a boundary).
"""
import mmap
import threading
from typing import List, Optional


_HUGE_PAGES = getattr(mmap, "MADV_HUGEPAGE", None)
HUGE_PAGE = 2 * 1024 * 1024  # x86-64's and arm64's (with 4 KiB pages) transparent huge page


class BufferPool:
    """At most `count` buffers of `size` bytes, made on first use and then reused."""

    def __init__(self, count: int, size: int):
        if count < 1 or size < 1:
            raise ValueError("need at least one buffer of at least one byte")
        self.count = count
        self.size = size
        self._free: List[mmap.mmap] = []
        self._made = 0
        self._lock = threading.Lock()  # a subclass may wait on other conditions of it
        self._changed = threading.Condition(self._lock)

    def take(self, wait: bool = True) -> Optional[mmap.mmap]:
        """A buffer; waits while every buffer is in use (without wait: None then)."""
        with self._changed:
            if not wait and not self._free and self._made >= self.count:
                return None
            self._changed.wait_for(lambda: self._free or self._made < self.count)
            if self._free:
                return self._free.pop()
            self._made += 1
        mem = mmap.mmap(-1, -(-self.size // HUGE_PAGE) * HUGE_PAGE, flags=mmap.MAP_PRIVATE)
        if _HUGE_PAGES is not None:
            mem.madvise(_HUGE_PAGES)
        return mem

    def give_back(self, mem: mmap.mmap) -> None:
        with self._changed:
            self._free.append(mem)
            self._freed(mem)
            self._changed.notify()

    def _freed(self, mem: mmap.mmap) -> None:
        """Called with the lock held when mem has just been put in the free list."""

    def in_use(self) -> int:
        with self._changed:
            return self._made - len(self._free)
