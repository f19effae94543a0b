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
peaked 11 MB higher when idle buffers kept theirs). It keeps them for a while first: when
packs fill quickly (one big file of new data) the next pack takes the buffer again soon,
and pages given back at once were faulted in and zeroed again for every pack, a third of a
saver thread's time on a 2-core machine. "A while" is counted in this process's CPU time,
not on the clock: the work done between two packs is what tells a dense stream of new data
(~85 ms of CPU per 16 MiB pack) from a sparse one, whatever else the machine runs. A clock
limit of 60 ms kept the pages of a big file's buffers on an idle machine, but on a busy one
the same backup refaulted and zeroed every pack (+7% CPU). A buffer idle for
PAGES_KEPT_AT_MOST seconds of the clock gives its pages back however little CPU passed (a
slow pipe, a slow upload). The maps are private and ask for huge pages, so touching a buffer
again costs a few faults per pack rather than one per 4 KiB.
"""
import mmap
import os
import threading
import time
from typing import Dict, Tuple

from .buffer_pool import BufferPool

# how long a buffer given back keeps its pages, in CPU seconds of this process: a pack of
# new data from a fast stream takes ~85 ms of CPU, a disk image's sparse data ~400 ms a pack
PAGES_KEPT_FOR = 0.15
# and at most, in seconds of the clock
PAGES_KEPT_AT_MOST = 0.5
_CORES = os.cpu_count() or 1
_SHORTEST_WAIT = 0.005


class PackBuffers(BufferPool):
    """At most `count` buffers of `size` bytes, made on first use and then reused; a buffer
    left unused while the process spent keep_pages_for CPU seconds (0: at once), or for
    keep_pages_at_most seconds, holds no memory until written again."""

    def __init__(self, count: int, size: int, keep_pages_for: float = PAGES_KEPT_FOR,
                 keep_pages_at_most: float = PAGES_KEPT_AT_MOST):
        super().__init__(count, size)
        self.keep_pages_for = keep_pages_for
        self.keep_pages_at_most = keep_pages_at_most
        # buffers given back with their pages: (buffer, process CPU time, clock) when
        self._resident: Dict[int, Tuple[mmap.mmap, float, float]] = {}
        self._idle = threading.Condition(self._lock)  # the dropping thread waits on it
        self._dropping = False  # a thread gives idle buffers' pages back

    def give_back(self, mem: mmap.mmap) -> None:
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
                if self._resident.pop(id(mem), None) is not None:
                    self._idle.notify()  # the dropping thread may have nothing left to wait for
        return mem

    def _freed(self, mem: mmap.mmap) -> None:
        if self.keep_pages_for > 0:
            self._resident[id(mem)] = (mem, time.process_time(), time.monotonic())

    def resident_free(self) -> int:
        """Free buffers that still hold their pages."""
        with self._lock:
            return sum(1 for mem, _, _ in self._resident.values() if _is_in(mem, self._free))

    def _drop_idle_pages(self) -> None:
        """Give back the pages of buffers idle for their time; ends when none holds any.
        Only a buffer in the free list, under the pool's lock, is touched: never one in use."""
        with self._lock:
            while self._resident:
                cpu, now = time.process_time(), time.monotonic()
                next_due = None
                for key, (mem, cpu_since, since) in list(self._resident.items()):
                    if not _is_in(mem, self._free):
                        del self._resident[key]  # taken again, pages and all
                    elif cpu - cpu_since >= self.keep_pages_for or now - since >= self.keep_pages_at_most:
                        _drop_pages(mem)
                        del self._resident[key]
                    else:
                        # the process's threads spend at most a core's second each per second
                        due = min((cpu_since + self.keep_pages_for - cpu) / _CORES,
                                  since + self.keep_pages_at_most - now)
                        next_due = due if next_due is None else min(next_due, due)
                if next_due is not None:
                    self._idle.wait(max(next_due, _SHORTEST_WAIT))
            self._dropping = False


def _drop_pages(mem: mmap.mmap) -> None:
    mem.madvise(mmap.MADV_DONTNEED)  # private: the pages are freed (touched again, they are zeros)


def _is_in(mem: mmap.mmap, buffers) -> bool:
    return any(m is mem for m in buffers)
