"""Read buffers that chunks point into, instead of copies of each chunk.

A big file is read into a few large buffers; its chunks are views of them (`HeldChunk`),
handed to the saver threads as they are. A buffer goes back to its pool only once the
reader has moved on and every chunk cut from it was released, so a chunk's bytes never
change while it is in flight. The pool's size bounds the memory of a backup's chunks in
flight, and its buffers are reused: no allocation, no page faults, no copy per chunk.

Buffers are anonymous memory maps: their pages are only touched as they are filled, and
mapping memory does not fragment the heap the way chunk-sized allocations did. They ask for
huge pages: 27 MiB of 4 KiB pages took ~7000 page faults to fill the first time.
"""
import mmap
import threading
from typing import List, Optional


_HUGE_PAGES = getattr(mmap, "MADV_HUGEPAGE", None)


class ReadBuffers:
    """At most `count` buffers of `size` bytes, made on first use and then reused.

    take() blocks while every buffer is in use: a reader waits for the savers to release
    the chunks of an earlier buffer."""

    def __init__(self, count: int, size: int):
        if count < 1 or size < 1:
            raise ValueError("need at least one buffer of at least one byte")
        self.count = count
        self.size = size
        self._free: List[mmap.mmap] = []
        self._made = 0
        self._changed = threading.Condition()

    def take(self, wait: bool = True) -> Optional["ReadBuffer"]:
        """A buffer; without wait, None when every buffer is in use."""
        with self._changed:
            if not wait and not self._free and self._made >= self.count:
                return None
            self._changed.wait_for(lambda: self._free or self._made < self.count)
            if self._free:
                mem = self._free.pop()
            else:
                mem = mmap.mmap(-1, self.size, flags=mmap.MAP_PRIVATE)
                if _HUGE_PAGES is not None:
                    mem.madvise(_HUGE_PAGES)
                self._made += 1
        return ReadBuffer(self, mem)

    def in_use(self) -> int:
        with self._changed:
            return self._made - len(self._free)

    def _give_back(self, mem: mmap.mmap) -> None:
        with self._changed:
            self._free.append(mem)
            self._changed.notify()


class ReadBuffer:
    """One buffer taken from a pool: the reader's hold plus one hold per chunk cut from it."""

    __slots__ = ("_pool", "_mem", "view", "_holds", "_lock")

    def __init__(self, pool: ReadBuffers, mem: mmap.mmap):
        self._pool = pool
        self._mem: Optional[mmap.mmap] = mem
        self.view = memoryview(mem)
        self._holds = 1  # the reader's
        self._lock = threading.Lock()

    def chunk(self, start: int, end: int) -> "HeldChunk":
        """The bytes [start:end) as a chunk that keeps this buffer until released."""
        with self._lock:
            self._holds += 1
        return HeldChunk(self.view[start:end], self)

    def release(self) -> None:
        """Drop one hold; the last one gives the buffer back to the pool."""
        with self._lock:
            self._holds -= 1
            last = self._holds == 0
        if last:
            self.view.release()
            mem, self._mem = self._mem, None
            self._pool._give_back(mem)


class HeldChunk:
    """A chunk's bytes (`data`, a memoryview) in a pooled buffer. release() once the chunk
    is saved: its view is closed then (any later use raises ValueError instead of reading
    bytes of another chunk) and the buffer may be refilled."""

    __slots__ = ("data", "_buffer")

    def __init__(self, data, buffer: Optional[ReadBuffer] = None):
        self.data = data
        self._buffer = buffer

    def __len__(self) -> int:
        return len(self.data)

    def release(self) -> None:
        buffer, self._buffer = self._buffer, None
        if buffer is not None:
            self.data.release()
            buffer.release()
