"""One background thread that appends the hashed steps of filling packs to their files.

A saver that has hashed the next few MiB of a pack hands their write here and goes back to
sealing blobs: a pack written past the page cache (backend.direct_writes) waits on the disk
for every step, and a saver waiting there left a core idle for a tenth of a big file's
backup. One thread keeps each pack's steps in order; a pack waits for its own steps before
it is stored or discarded (PackWriter)."""
import queue
import threading
from typing import Callable, Optional

from ..interrupts import Latch


class FileSteps:
    def __init__(self):
        self._queue: "queue.SimpleQueue" = queue.SimpleQueue()
        self._thread: Optional[threading.Thread] = None
        self._lock = threading.Lock()

    def run(self, step: Callable[[], None]) -> None:
        """Run step in the thread, after the steps given before (step keeps its own errors)."""
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(target=self._loop, name="pack-file-steps", daemon=True)
                self._thread.start()
        self._queue.put(step)

    def wait(self) -> None:
        """Until the steps given before are done."""
        done = Latch()
        self.run(done.open)
        done.wait()

    def stop(self) -> None:
        """End the thread once the steps given before are done."""
        with self._lock:
            thread, self._thread = self._thread, None
        if thread is not None:
            self._queue.put(None)
            thread.join()

    def _loop(self) -> None:
        while True:
            step = self._queue.get()
            if step is None:
                return
            step()
            del step  # nor the buffer views it held
