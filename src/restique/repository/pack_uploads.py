"""Full packs stored by background threads (one per connection of a remote backend, two for a
local disk), so that the savers keep sealing while packs are written.

A saver takes room in a byte budget before it queues a pack: memory (or temporary files)
holds at most that many bytes of full packs. A pack's budget and buffer are given back once it
is stored, or as soon as the backend says its bytes are written (PackParts.written). Once a
pack is stored, `stored(pack_id, entries)` indexes it; a failed upload is kept and raised to
whoever saves next.
"""
import queue
import threading
from typing import Callable, List, Optional

from ..backend.base import BackendError, FileType, remote_connections
from .file_steps import FileSteps
from .pack import PackParts, PackWriter
from .pack_buffers import PackBuffers

# full packs a remote backup holds at once (queued or being sent), in bytes: 3 packs of 16 MiB
# keep 3 connections busy, enough on loopback. Data packs wait in temporary files (as restic's
# do: see temp_pack_file), tree packs and packs of the in-memory backend in memory.
UPLOAD_MEMORY = 48 * 1024 * 1024
# packs a local repository stores at once: each upload ends in an fsync that waits on the
# disk, so a second one writes (a kernel copy of 16 MiB) while the first waits (restic's
# local backend also has two connections)
LOCAL_UPLOADS = 2
# room past pack_size in a pack's buffer: the chunker's largest chunk (8 MiB) sealed, so that
# the blob that fills a pack still goes into its buffer (a larger one gets a buffer of its own)
BUFFER_SLACK = 8 * 1024 * 1024 + 4096


class PackUploads:
    def __init__(self, backend, pack_size: int, stored: Callable[[str, list], None]):
        self.backend = backend
        self._stored = stored
        # a remote backend stores as many packs at once as it has connections (each upload
        # mostly waits on the network); a local one, LOCAL_UPLOADS
        self.count = remote_connections(backend) or LOCAL_UPLOADS
        # full packs not yet written, in bytes: one pack per uploader, but not past UPLOAD_MEMORY.
        # A pack is closed once past pack_size, by up to a blob: with room for exactly
        # pack_size each, the second of two uploads had to wait for the first.
        per_pack = pack_size + pack_size // 2
        self.budget = ByteBudget(min(self.count * per_pack, max(UPLOAD_MEMORY, per_pack)))
        # Data packs are sealed into reused buffers (see pack_buffers): one per full pack the
        # budget admits (a pack is a little over pack_size) plus the open one; a saver that
        # closes a pack while the budget is full waits with it, and no other pack starts.
        # A backend that gives the parts back once written (before a local fsync) holds a buffer
        # only while it writes: one buffer less then keeps as many uploads going.
        uploads = max(1, min(self.count, (self.budget.limit - 1) // pack_size))
        if getattr(backend, "releases_written_parts", False) is True:
            uploads = max(1, uploads - 1)
        self.buffers = PackBuffers(uploads + 1, pack_size + BUFFER_SLACK)
        self._queue: "queue.Queue" = queue.Queue()
        self._threads: List[threading.Thread] = []
        self._threads_lock = threading.Lock()
        self.error: Optional[BaseException] = None
        self.file_steps = FileSteps()  # packs' files are written as they fill, in its thread

    def take_room(self, size: int) -> None:
        """Wait until the budget has room for a pack of size bytes, and take it (then put
        the pack)."""
        with self._threads_lock:
            if not self._threads:
                self._threads = [threading.Thread(target=self._loop, name=f"pack-uploader-{i}", daemon=True)
                                 for i in range(self.count)]
                for thread in self._threads:
                    thread.start()
        self.budget.take(size)

    def put(self, writer: PackWriter, size: int) -> None:
        """Queue a closed pack whose room (size) was taken."""
        self._queue.put((writer, size))

    def wait(self) -> None:
        """Until every queued pack is stored (and indexed); then a failure, if one came."""
        self._queue.join()
        self.raise_error()

    def raise_error(self) -> None:
        """A failed pack upload, raised to whoever stores next. A local disk's OSError (full,
        read-only) becomes a BackendError: the file whose blob was being stored is not to blame
        for it (a reader reports its own OSErrors as the file's and goes on), the backup is."""
        exc = self.error
        if exc is None:
            return
        if isinstance(exc, OSError) and not isinstance(exc, BackendError):
            raise BackendError(exc.errno, exc.strerror, exc.filename) from exc
        raise exc

    def stop(self) -> None:
        """Stop the threads once the packs queued before are done (or failed)."""
        with self._threads_lock:
            threads, self._threads = self._threads, []
        for _ in threads:
            self._queue.put(None)
        for thread in threads:
            thread.join(timeout=60)
        self.file_steps.stop()

    def _loop(self) -> None:
        while True:
            item = self._queue.get()
            try:
                if item is not None:
                    self.write(*item)
            except BaseException as exc:  # reported to the saving threads
                self.error = exc
            finally:
                self._queue.task_done()
            if item is None:
                return

    def write(self, writer: PackWriter, budgeted: int) -> None:
        """Store a full pack, then index it."""
        released = []

        def release():
            if not released:
                released.append(True)
                self.budget.give_back(budgeted)
                buffer = writer.take_buffer()
                if buffer is not None:
                    self.buffers.give_back(buffer)

        stored = False
        try:
            if self.error is not None:
                return
            pack_id, parts, entries = writer.finish()
            if writer.buffer is not None:  # not tree packs: the cache keeps a copy of those
                parts = PackParts(parts, release)
            if writer.file is not None:  # most of it is in its file already
                writer.file.commit(pack_id, parts)
            else:
                self.backend.save(FileType.PACK, pack_id, parts)
            del parts
            stored = True
        finally:
            try:
                if not stored:
                    # before the buffer goes back: the pack's file steps still queued (a pack given
                    # up without finish(), after an earlier failure) read it and free their places
                    # in it, which take_buffer() frees too (freed twice, a step's error ended the
                    # steps' thread, and whoever waited for a later step waited for ever)
                    writer.discard()
            finally:
                release()
        self._stored(pack_id, entries)


class ByteBudget:
    """Bytes held at most `limit` by its takers together; one taker always fits, however large."""

    def __init__(self, limit: int):
        self.limit = limit
        self._used = 0
        self._changed = threading.Condition()

    def take(self, size: int) -> None:
        with self._changed:
            self._changed.wait_for(lambda: not self._used or self._used + size <= self.limit)
            self._used += size

    def give_back(self, size: int) -> None:
        with self._changed:
            self._used -= size
            self._changed.notify_all()
