"""The one completion type of the backup walk, a minimal thread pool and flow control.

concurrent.futures costs a Condition per Future; a backup makes one completion per entry,
so the lighter Completion below (a plain lock, callbacks run by the thread that completes
it, an Event only for whoever blocks) matters for trees of many small files. Most entries
need no thread at all: `finished(value)` makes their completion without even a lock.
"""
import queue
import threading
from typing import Callable, List, Optional

from ...interrupts import Latch


class Completion:
    """A result (a value or an exception) that becomes available once."""

    __slots__ = ("_value", "_exc", "_callbacks", "_lock", "_done", "_latch")

    def __init__(self):
        self._value = None
        self._exc: Optional[BaseException] = None
        self._callbacks: List[Callable] = []
        self._lock = threading.Lock()
        self._done = False
        self._latch: Optional[Latch] = None  # for whoever blocks

    def complete(self, value=None) -> None:
        """Deliver the result and run the callbacks, in this thread."""
        self._value = value
        with self._lock:
            self._done = True
            callbacks, self._callbacks = self._callbacks, []
            latch = self._latch
        if latch is not None:
            latch.open()
        for cb in callbacks:
            cb(self)

    def fail(self, exc: BaseException) -> None:
        """Deliver an exception to whoever reads the result."""
        self._exc = exc
        self.complete()

    def add_done_callback(self, fn: Callable) -> None:
        """Run fn(self) once completed: now if it is, else in the completing thread."""
        if not self._done:
            with self._lock:
                if not self._done:
                    self._callbacks.append(fn)
                    return
        fn(self)

    def wait(self):
        """Block until completed; then the result."""
        if not self._done:
            with self._lock:
                if not self._done and self._latch is None:
                    self._latch = Latch()
                latch = self._latch if not self._done else None
            if latch is not None:
                latch.wait()
        return self.result()

    def raised(self, exc: BaseException) -> bool:
        """Whether exc is this completed result's own exception (not one that interrupted
        the thread waiting for it)."""
        return self._done and exc is self._exc

    def value_if_done(self):
        """The value if completed without an exception, else None: a look from another
        thread while the walk goes on (checkpoints)."""
        return self._value if self._done and self._exc is None else None

    def result(self):
        """The value (or exception) of a completed result; callers only ask after completion."""
        if not self._done:
            raise RuntimeError("result requested before completion")
        if self._exc is not None:
            raise self._exc
        return self._value


class Slot:
    """One file's result within a batch task: the batch fills it in before the task
    completes, and the directory waits for the task, so a slot needs no lock, no callbacks
    and no event (a Completion per small file cost about 5 us of the GIL's time)."""

    __slots__ = ("_value", "_exc", "_done")

    def __init__(self):
        self._value = None
        self._exc: Optional[BaseException] = None
        self._done = False

    def complete(self, value=None) -> None:
        self._value = value
        self._done = True  # after the value: a checkpoint may look from another thread

    def fail(self, exc: BaseException) -> None:
        self._exc = exc
        self._done = True

    value_if_done = Completion.value_if_done
    result = Completion.result


_new = object.__new__


def finished(value) -> Completion:
    """A Completion that already holds its value. Only the fields a completed one reads are
    set: no lock and no callback list for the many entries that need no thread."""
    done = _new(Completion)
    done._value = value
    done._exc = None
    done._done = True
    return done


class WorkerPool:
    def __init__(self, workers: int, name: str, extras_when: Optional[threading.Event] = None):
        """extras_when: the workers past the first take tasks only while it is set."""
        self._queue: "queue.SimpleQueue" = queue.SimpleQueue()
        self._extras_when = extras_when
        self._threads = [threading.Thread(target=self._loop, args=(i,), name=f"{name}-{i}", daemon=True)
                         for i in range(workers)]
        self._cancelled = False
        for t in self._threads:
            t.start()

    def submit(self, fn: Callable, *args) -> Completion:
        done = Completion()
        self._queue.put((done, fn, args))
        return done

    def backlog(self) -> bool:
        """Whether tasks wait for a worker."""
        return not self._queue.empty()

    def _loop(self, index: int) -> None:
        get = self._queue.get
        gate = self._extras_when if index else None
        while True:
            if gate is not None:
                gate.wait()
            job = get()
            if job is None:
                return
            self._run(*job)
            job = None  # waiting for the next job must not keep this one's input (chunks) alive

    def _run(self, done: Completion, fn: Callable, args: tuple) -> None:
        if self._cancelled:
            done.fail(CancelledTask())
            return
        try:
            value = fn(*args)
        except BaseException as exc:  # delivered to whoever reads the result
            done.fail(exc)
        else:
            done.complete(value)

    def shutdown(self, cancel: bool = False) -> None:
        self._cancelled = cancel
        if self._extras_when is not None:
            self._extras_when.set()  # a worker waiting for it must come to its stop
        for _ in self._threads:
            self._queue.put(None)
        for t in self._threads:
            t.join()


class CancelledTask(Exception):
    pass


class Gate:
    """Flow control for the walker: it waits once `high` files are queued and resumes when
    they drain to `low`, so finishing tasks rarely have to wake it. A task counts the files
    it holds (a batch of small files, many)."""

    def __init__(self, high: int, low: int):
        self._high, self._low = high, low
        self._count = 0
        self._lock = threading.Lock()
        self._open = threading.Event()
        self._open.set()

    def enter(self, files: int = 1) -> None:
        self._open.wait()
        with self._lock:
            self._count += files
            if self._count >= self._high:
                self._open.clear()

    def leave(self, files: int = 1) -> None:
        with self._lock:
            self._count -= files
            if self._count <= self._low and not self._open.is_set():
                self._open.set()
