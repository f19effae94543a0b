"""Read buffers that chunks point into, instead of copies of each chunk.

A big file is read into a few large buffers; its chunks are views of them (`HeldChunk`),
handed to the saver threads as they are. A buffer goes back to its pool only once the
reader has moved on and every chunk cut from it was released, so a chunk's bytes never
change while it is in flight. The pool's size bounds the memory of a backup's chunks in
flight, and its buffers are reused: no allocation, no page faults, no copy per chunk.

The buffers come from a BufferPool (anonymous memory maps, reused as they are).
"""
import threading
from typing import Optional

from .buffer_pool import BufferPool


class ReadBuffers:
    """At most `count` buffers of `size` bytes, made on first use and then reused.

    take() blocks while every buffer is in use: a reader waits for the savers to release
    the chunks of an earlier buffer."""

    def __init__(self, count: int, size: int):
        self._maps = BufferPool(count, size)
        self.count = count
        self.size = size

    def take(self, wait: bool = True) -> Optional["ReadBuffer"]:
        """A buffer; without wait, None when every buffer is in use."""
        mem = self._maps.take(wait)
        return None if mem is None else ReadBuffer(self._maps, mem)

    def in_use(self) -> int:
        return self._maps.in_use()


class ReadBuffer:
    """One buffer taken from a pool: the reader's hold plus one hold per chunk cut from it."""

    __slots__ = ("_pool", "_mem", "view", "_holds", "_lock")

    def __init__(self, pool: BufferPool, mem):
        self._pool = pool
        self._mem = mem
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
            self._pool.give_back(mem)


class HeldChunk:
    """A chunk's bytes (`data`, a memoryview) in a pooled buffer. release() once the chunk
    is saved: its view is closed then (any later use raises ValueError instead of reading
    bytes of another chunk) and the buffer may be refilled."""

    __slots__ = ("data", "_buffer", "blob_id")

    def __init__(self, data, buffer: Optional[ReadBuffer] = None):
        self.data = data
        self.blob_id = ""  # its id, when the reader computed it
        self._buffer = buffer

    def __len__(self) -> int:
        return len(self.data)

    def release(self) -> None:
        buffer, self._buffer = self._buffer, None
        if buffer is not None:
            self.data.release()
            buffer.release()
