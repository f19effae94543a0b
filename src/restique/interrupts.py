"""Holding Ctrl-C and SIGTERM back for the few steps that must not be cut in two.

The command line's signal handlers raise an exception in the main thread, wherever it is. That
is what stops a command cleanly almost everywhere, but not in a step whose result is what the
cleanup needs: a process still importing (an extension module's set-up interrupted can crash
it), a mount made but not yet served (a signal between leaves a dead mountpoint), a server's
worker pool half started (the process then waits for those threads forever). Such a step runs
under a hold; a signal that arrives meanwhile is noted and handled when the last hold ends.

Only handlers that ask `held_back()` first honour a hold (the command line's, cli.main); a
library caller's own handlers, and Python's default Ctrl-C, are left as they are. Holds are
taken only in the main thread, where Python runs signal handlers. A thread that waits for
another's result where such an exception may reach it waits on a Latch (below).
"""
import signal
import threading

_holds: set = set()  # the holds in force
_arrived: list = []  # signals held back, first first


class Hold:
    """One hold; release() (or the end of its `with` block) ends it, once."""

    def __init__(self):
        self._active = threading.current_thread() is threading.main_thread()
        if self._active:
            _holds.add(self)

    def release(self) -> None:
        """End this hold; when it was the last, a signal that arrived meanwhile is handled now
        (its handler's exception raised from here)."""
        if not self._active:
            return
        self._active = False
        _holds.discard(self)
        if not _holds and _arrived:
            signum = _arrived[0]
            _arrived.clear()
            handler = signal.getsignal(signum)
            if callable(handler):
                handler(signum, None)

    def __enter__(self) -> "Hold":
        return self

    def __exit__(self, *exc) -> None:
        self.release()


def hold() -> Hold:
    """Hold Ctrl-C and SIGTERM back until the returned Hold is released."""
    return Hold()


def held_back(signum: int) -> bool:
    """For a signal handler: True when a hold is in force (the signal is then noted, and
    handled when the holds end)."""
    if not _holds:
        return False
    _arrived.append(signum)
    return True


def reset() -> None:
    """No hold and no signal waiting: for a program that runs several command lines."""
    _holds.clear()
    _arrived.clear()


class Latch:
    """Closed until open() (from any thread); wait() returns once it is open, at once after.

    Not an Event: the handlers raise their exception in the main thread wherever it waits, and
    one raised while an Event's inner Condition took its lock back left that lock released
    under the thread setting the Event, which then died with "release unlocked lock" (a
    traceback in a stopped backup). An interrupted acquire of a plain lock takes nothing."""

    __slots__ = ("_lock",)

    def __init__(self):
        self._lock = threading.Lock()
        self._lock.acquire()

    def open(self) -> None:
        """Let every waiter through; call once."""
        self._lock.release()

    def wait(self) -> None:
        with self._lock:  # each waiter passes it on
            pass
