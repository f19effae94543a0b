"""A minimal thread pool for the backup walk.

concurrent.futures costs a Condition per Future; a backup submits one task per changed
file, so the lighter Task below (a plain lock, callbacks run by the worker that finishes
the task) matters for trees of many small files.
"""
import queue
import threading
from typing import Callable, List, Optional


class Task:
    __slots__ = ("_fn", "_args", "_value", "_exc", "_callbacks", "_lock", "_done", "_event")

    def __init__(self, fn: Callable, args: tuple):
        self._fn = fn
        self._args = args
        self._value = None
        self._exc: Optional[BaseException] = None
        self._callbacks: List[Callable] = []
        self._lock = threading.Lock()
        self._done = False
        self._event: Optional[threading.Event] = None

    def wait(self):
        """Block until the task finished; then its result."""
        with self._lock:
            if not self._done and self._event is None:
                self._event = threading.Event()
            event = self._event
        if event is not None:
            event.wait()
        return self.result()

    def add_done_callback(self, fn: Callable) -> None:
        with self._lock:
            if not self._done:
                self._callbacks.append(fn)
                return
        fn(self)

    def result(self):
        """The value (or exception) of a finished task; callers only ask after completion."""
        if not self._done:
            raise RuntimeError("task result requested before the task finished")
        if self._exc is not None:
            raise self._exc
        return self._value

    def _finish(self, value=None, exc: Optional[BaseException] = None) -> None:
        self._value, self._exc = value, exc
        with self._lock:
            self._done = True
            callbacks, self._callbacks = self._callbacks, []
            event = self._event
        if event is not None:
            event.set()
        for cb in callbacks:
            cb(self)

    def _run(self) -> None:
        fn, args = self._fn, self._args
        self._fn = self._args = None  # a finished task must not keep its input (chunks) alive
        try:
            value = fn(*args)
        except BaseException as exc:  # delivered to whoever reads the result
            self._finish(exc=exc)
        else:
            self._finish(value)


class WorkerPool:
    def __init__(self, workers: int, name: str):
        self._queue: "queue.SimpleQueue" = queue.SimpleQueue()
        self._threads = [threading.Thread(target=self._loop, name=f"{name}-{i}", daemon=True)
                         for i in range(workers)]
        self._cancelled = False
        for t in self._threads:
            t.start()

    def submit(self, fn: Callable, *args) -> Task:
        task = Task(fn, args)
        self._queue.put(task)
        return task

    def _loop(self) -> None:
        while True:
            task = self._queue.get()
            if task is None:
                return
            if self._cancelled:
                task._finish(exc=CancelledTask())
            else:
                task._run()

    def shutdown(self, cancel: bool = False) -> None:
        self._cancelled = cancel
        for _ in self._threads:
            self._queue.put(None)
        for t in self._threads:
            t.join()


class CancelledTask(Exception):
    pass


class Gate:
    """Flow control for the walker: it waits once `high` tasks are queued and resumes when
    they drain to `low`, so finishing tasks rarely have to wake it."""

    def __init__(self, high: int, low: int):
        self._high, self._low = high, low
        self._count = 0
        self._lock = threading.Lock()
        self._open = threading.Event()
        self._open.set()

    def enter(self) -> None:
        self._open.wait()
        with self._lock:
            self._count += 1
            if self._count >= self._high:
                self._open.clear()

    def leave(self) -> None:
        with self._lock:
            self._count -= 1
            if self._count <= self._low and not self._open.is_set():
                self._open.set()
