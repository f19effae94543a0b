"""Reused buffers that data packs are sealed into, instead of a fresh byte string per blob.

A blob of a million bytes allocated, freed, and allocated again by several threads leaves
the C heap fragmented: a backup of one big file grew its resident memory by a fifth over
what it held live. A pack buffer is a map of a BufferPool, of a pack's size plus its largest
blob, taken when a pack is started and given back once the pack is written; savers seal
their blobs straight into it. The pool's size is the bound on data packs in memory (open,
waiting for an upload slot, and being stored): a saver that needs a new pack waits for a
free buffer.

A buffer given back also gives its pages back to the system: memory holds the packs being
filled and written, not idle buffers. The maps are private and ask for huge pages, so
touching a buffer again costs a few faults per pack rather than one per 4 KiB (a 16 MiB pack
in 4 KiB pages took 9 ms more to fill, 2 MiB pages a few tenths of a millisecond).
"""
import mmap

from .buffer_pool import BufferPool


class PackBuffers(BufferPool):
    """At most `count` buffers of `size` bytes, made on first use and then reused; a buffer
    given back holds no memory until it is written again."""

    def give_back(self, mem: mmap.mmap) -> None:
        mem.madvise(mmap.MADV_DONTNEED)  # private: the pages are freed (touched again, they are zeros)
        super().give_back(mem)
