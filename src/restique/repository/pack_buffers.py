"""Reused buffers that data packs are sealed into, instead of a fresh byte string per blob.

A blob of a million bytes allocated, freed, and allocated again by several threads leaves
the C heap fragmented: a backup of one big file grew its resident memory by a fifth over
what it held live. A pack buffer is a map of a BufferPool, of a pack's size plus its largest
blob, taken when a pack is started and given back once the pack is written; savers seal
their blobs straight into it. The pool's size is the bound on data packs in memory (open,
waiting for an upload slot, and being stored): a saver that needs a new pack waits for a
free buffer.

A buffer that stays idle gives its pages back to the system: memory holds the packs being
filled and written, not idle buffers (a disk image's new data is sparse, and its backup
peaked 11 MB higher when idle buffers kept theirs). It keeps them for a moment first: when
packs fill quickly (one big file of new data) the next pack takes the buffer again within
milliseconds, and pages given back at once were faulted in and zeroed again for every pack,
a third of a saver thread's time on a 2-core machine. The maps are private and ask for huge
pages, so touching a buffer again costs a few faults per pack rather than one per 4 KiB.
"""
import mmap
import threading
import time
from typing import Dict, Tuple

from .buffer_places import BufferPlaces
from .buffer_pool import BufferPool

# how long a buffer given back keeps its pages (seconds): a pack of new data from a fast
# stream fills in tens of milliseconds
PAGES_KEPT_FOR = 0.06


class PackBuffers(BufferPool):
    """At most `count` buffers of `size` bytes, made on first use and then reused; a buffer
    left unused for keep_pages_for seconds (0: at once) holds no memory until written again.
    A buffer in use may be shared by the next pack (share): it goes back to the pool once
    every pack holding it gave it back; places(buffer) are the places its packs take."""

    def __init__(self, count: int, size: int, keep_pages_for: float = PAGES_KEPT_FOR):
        super().__init__(count, size)
        self._holders: Dict[int, int] = {}  # buffers in use: how many packs hold each
        self._places: Dict[int, BufferPlaces] = {}
        self.keep_pages_for = keep_pages_for
        self._resident: Dict[int, Tuple[mmap.mmap, float]] = {}  # buffers given back with their pages: when
        self._idle = threading.Condition(self._lock)  # the dropping thread waits on it
        self._dropping = False  # a thread gives idle buffers' pages back

    def share(self, mem: mmap.mmap) -> bool:
        """Hold mem for one more pack, if some pack holds it still (else False: it may be
        free or taken by another)."""
        with self._lock:
            if not self._holders.get(id(mem)):
                return False
            self._holders[id(mem)] += 1
            return True

    def places(self, mem: mmap.mmap) -> BufferPlaces:
        """The places taken in mem by the packs that hold it."""
        with self._lock:
            return self._places[id(mem)]

    def give_back(self, mem: mmap.mmap) -> None:
        with self._lock:
            self._holders[id(mem)] -= 1
            if self._holders[id(mem)]:
                return  # another pack holds it still
            del self._holders[id(mem)], self._places[id(mem)]
        if self.keep_pages_for <= 0:
            _drop_pages(mem)
        super().give_back(mem)
        with self._lock:
            start = bool(self._resident) and not self._dropping
            self._dropping = self._dropping or start
        if start:
            threading.Thread(target=self._drop_idle_pages, name="pack-buffer-pages", daemon=True).start()

    def take(self, wait: bool = True):
        mem = super().take(wait)
        if mem is not None:
            with self._lock:
                self._holders[id(mem)] = 1
                self._places[id(mem)] = BufferPlaces()
                if self._resident.pop(id(mem), None) is not None:
                    self._idle.notify()  # the dropping thread may have nothing left to wait for
        return mem

    def _freed(self, mem: mmap.mmap) -> None:
        if self.keep_pages_for > 0:
            self._resident[id(mem)] = (mem, time.monotonic())

    def resident_free(self) -> int:
        """Free buffers that still hold their pages."""
        with self._lock:
            return sum(1 for mem, _ in self._resident.values() if _is_in(mem, self._free))

    def _drop_idle_pages(self) -> None:
        """Give back the pages of buffers free for keep_pages_for; ends when none holds any.
        Only a buffer in the free list, under the pool's lock, is touched: never one in use."""
        with self._lock:
            while self._resident:
                now = time.monotonic()
                next_due = None
                for key, (mem, since) in list(self._resident.items()):
                    if not _is_in(mem, self._free):
                        del self._resident[key]  # taken again, pages and all
                    elif now - since >= self.keep_pages_for:
                        _drop_pages(mem)
                        del self._resident[key]
                    else:
                        due = since + self.keep_pages_for - now
                        next_due = due if next_due is None else min(next_due, due)
                if next_due is not None:
                    self._idle.wait(next_due)
            self._dropping = False


def _drop_pages(mem: mmap.mmap) -> None:
    mem.madvise(mmap.MADV_DONTNEED)  # private: the pages are freed (touched again, they are zeros)


def _is_in(mem: mmap.mmap, buffers) -> bool:
    return any(m is mem for m in buffers)
