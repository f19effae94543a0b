"""When a command's status display shows the status: every `interval` seconds, and at once when
the process gets SIGUSR1, as restic does (`kill -USR1` on a backup or restore running from cron
puts its status into the log). Without a handler SIGUSR1 would end the process, lock and all."""
import signal
import threading
from typing import Optional, Set

_waiting: Set[threading.Event] = set()  # one a running display; set and list ops hold the GIL


def install() -> None:
    """Take SIGUSR1 for status requests (from the main thread, at start)."""
    signal.signal(signal.SIGUSR1, _requested)


def _requested(signum, frame) -> None:
    for wake in list(_waiting):
        wake.set()


class StatusTicks:
    """The ticks of one status display: `for _ in StatusTicks(interval)` runs the loop body at
    each tick (interval None: only on SIGUSR1) until stop() is called."""

    def __init__(self, interval: Optional[float]):
        self.interval = interval
        self._wake = threading.Event()
        self._stopped = False
        _waiting.add(self._wake)

    def __iter__(self):
        while True:
            self._wake.wait(self.interval)
            if self._stopped:
                return
            self._wake.clear()
            yield

    def stop(self) -> None:
        self._stopped = True
        _waiting.discard(self._wake)
        self._wake.set()
