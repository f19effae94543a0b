"""Serving a SnapshotFS at a mountpoint until it is unmounted or a signal arrives.

The calling thread reads the kernel's requests and answers those it can from what is ready;
the others go to worker threads, which answer them when done. A signal handler that raises
(KeyboardInterrupt, the CLI's own) ends the serving: the filesystem is unmounted and the
exception goes on.
"""
import errno
import gc
import os
import select
import signal
import threading
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import Callable, Optional

from ..interrupts import hold
from ..errors import RestiqueError
from ..operations.collector import fewer_collections
from ..operations.snapshot_fs import SnapshotFS
from . import kernel
from .kernel import FuseError
from .ops import NO_REPLY, SnapshotOperations, fuse_error
from .session import FuseSession, MountError

WORKERS = 16  # requests answered at the same time (each may wait for the repository)
# Listings and trees kept for the kernel grow by hundreds of thousands of long-lived
# objects: with Python's default of 700, young collections run every few requests and full
# collections walk the caches again and again (a tenth of a first `find`).
YOUNG_COLLECTION_THRESHOLD = 50_000


def mount_options(fsname: str, allow_other: bool, no_default_permissions: bool) -> set:
    options = {"ro", f"fsname={fsname}", "subtype=restique"}
    if not no_default_permissions:
        options.add("default_permissions")  # the kernel checks the stored modes
    if allow_other:
        options.add("allow_other")
    return options


class Channel:
    """The FUSE device: requests in, answers and notices out (from any thread)."""

    def __init__(self, fd: int):
        self.fd = os.dup(fd)  # the session closes its own when unmounting
        self._poll = select.poll()
        self._poll.register(self.fd, select.POLLIN)
        self._lock = threading.Lock()
        self._open = True
        self._waiter, self._wakeups, self._previous_wakeup = self._signal_waiter()

    def _signal_waiter(self):
        """A poll of the device and of the interpreter's signal wake-up pipe. A signal that
        arrives just before a blocking read (or on another thread) would not interrupt it: the
        read would wait for the next request, maybe forever; the pipe wakes the poll up."""
        waiter = select.poll()
        waiter.register(self.fd, select.POLLIN)
        try:
            wake_read, wake_write = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        except OSError:
            return waiter, None, None
        try:
            previous = signal.set_wakeup_fd(wake_write, warn_on_full_buffer=False)
        except ValueError:  # not the main thread: signals are not ours to watch
            os.close(wake_read)
            os.close(wake_write)
            return waiter, None, None
        waiter.register(wake_read, select.POLLIN)
        return waiter, (wake_read, wake_write), previous

    def read(self) -> bytes:
        """The next request; a signal's handler runs (and raises) while this waits."""
        while True:
            ready = self._waiter.poll()
            if any(fd == self.fd for fd, _ in ready):
                return os.read(self.fd, kernel.READ_SIZE)
            self._drain_wakeups()  # the signal's Python handler runs at this call

    def _drain_wakeups(self) -> None:
        try:
            while os.read(self._wakeups[0], 512):
                pass
        except BlockingIOError:
            pass

    def request_waiting(self) -> bool:
        """Whether read() would return at once (a request, or the end)."""
        return bool(self._poll.poll(0))

    def write(self, message: bytes) -> None:
        with self._lock:  # never to a closed (or reused) descriptor
            if not self._open:
                return
            try:
                os.write(self.fd, message)
            except OSError:  # ENOENT: the request was interrupted; ENODEV: unmounted
                pass

    def answer(self, unique: int, payload: bytes = b"", error: int = 0) -> None:
        self.write(kernel.reply(unique, payload, error))

    def close(self) -> None:
        with self._lock:
            if self._open:
                self._open = False
                os.close(self.fd)
                if self._wakeups is not None:
                    signal.set_wakeup_fd(self._previous_wakeup)
                    for fd in self._wakeups:
                        os.close(fd)


def serve(fs: SnapshotFS, mountpoint: str, options: set,
          on_mounted: Optional[Callable[[], None]] = None) -> None:
    """Mount fs read-only at mountpoint and answer requests until it is unmounted from
    outside; an exception (a signal's) unmounts it and goes on."""
    if not os.path.exists("/dev/fuse"):
        raise RestiqueError("FUSE is not available on this system (no /dev/fuse)")
    # from mounting until the serving that unmounts on a signal's exception: a signal in
    # between would leave the mountpoint mounted, and dead
    mounting = hold()
    try:
        session = FuseSession(mountpoint, options)
    except (MountError, OSError) as exc:
        mounting.release()
        raise RestiqueError(f"unable to mount {mountpoint}: {exc}") from None
    channel = ops = workers = None
    try:
        channel = Channel(session.fd)
        ops = SnapshotOperations(fs, channel.write)
        workers = ThreadPoolExecutor(WORKERS, thread_name_prefix="mount-request")
        mounting.release()
        with _collections_for_serving():
            if on_mounted is not None:
                on_mounted()
            answer_requests(channel, ops, workers)
    except BaseException:
        if channel is not None:
            channel.close()
        session.unmount()
        raise
    finally:
        if channel is not None:
            channel.close()
        if workers is not None:
            workers.shutdown(wait=False, cancel_futures=True)
        if ops is not None:
            ops.close()
        session.close()
        mounting.release()  # when the serving could not even begin


def answer_requests(channel: Channel, ops: SnapshotOperations, workers: ThreadPoolExecutor) -> None:
    """Read and answer requests until the filesystem is unmounted; while none waits, do the
    operations' idle work."""
    handlers = ops.handlers()
    unpack, answer = kernel.IN_HEADER.unpack_from, channel.answer
    waiting = channel.request_waiting
    while True:
        if ops.idle_work_waiting and not waiting() and ops.idle_work():
            continue
        try:
            request = channel.read()
        except OSError as exc:
            if exc.errno == errno.ENODEV:  # unmounted
                return
            if exc.errno in (errno.ENOENT, errno.EINTR, errno.EAGAIN):  # interrupted before it was read
                continue
            raise
        _, opcode, unique, inode = unpack(request)
        quick, full = handlers.get(opcode, (None, None))
        if opcode == kernel.INIT:
            _answer(channel, kernel.init_reply, unique, request)
            continue
        if quick is not None:
            try:
                payload = quick(inode, request)
            except FuseError as exc:
                answer(unique, error=exc.errno)
                continue
            except Exception as exc:  # noqa: BLE001 - answered, logged, serving goes on
                ops.errors.append(str(exc))
                answer(unique, error=errno.EIO)
                continue
            if payload is not None:
                if payload is not NO_REPLY:
                    answer(unique, payload)
                continue
        if full is None:
            answer(unique, error=errno.ENOSYS)
            continue
        workers.submit(_answer, channel, full, unique, inode, request)


def _answer(channel: Channel, handler, unique: int, *args) -> None:
    try:
        payload = handler(*args)
    except Exception as exc:  # noqa: BLE001 - every request gets its answer
        error = fuse_error(exc)
        channel.answer(unique, error=error.errno)
        return
    channel.answer(unique, payload)


@contextmanager
def _collections_for_serving():
    """Fewer garbage collections while serving; what was loaded before (the index, the
    snapshot list) is moved out of the collector's sight, as it lives until the unmount."""
    gc.collect()
    gc.freeze()
    try:
        with fewer_collections(YOUNG_COLLECTION_THRESHOLD):
            yield
    finally:
        gc.unfreeze()
