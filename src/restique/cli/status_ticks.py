"""When and how a command's status display shows the status: a thread that shows it every
`interval` seconds, and at once when the process gets SIGUSR1, as restic does (`kill -USR1` on a
backup or restore running from cron puts its status into the log). Without a handler SIGUSR1
would end the process, lock and all."""
import os
import signal
import threading

# no typing here: this loads before the key derivation starts (see key_prefetch)

TERMINAL_INTERVAL = 1 / 6  # seconds between updates of a status line on a terminal
JSON_INTERVAL = 1.0  # seconds between --json status messages

_waiting: "set[threading.Event]" = set()  # one a running display; set and list ops hold the GIL


def status_interval(default: "float | None") -> "float | None":
    """Seconds between status updates: 1/RESTIC_PROGRESS_FPS when that is a positive number
    (at most 60 a second, as restic), else default (None: only when SIGUSR1 asks)."""
    try:
        fps = float(os.environ.get("RESTIC_PROGRESS_FPS", ""))
    except ValueError:
        return default
    return 1 / min(fps, 60.0) if fps > 0 else default


def install() -> None:
    """Take SIGUSR1 for status requests (from the main thread, at start)."""
    signal.signal(signal.SIGUSR1, _requested)


def _requested(signum, frame) -> None:
    for wake in list(_waiting):
        wake.set()


class StatusDisplay:
    """A thread that calls show() every interval seconds (None: only on SIGUSR1), once at
    start too when first is set, from start() until stop(). A reader gone (a broken pipe, a
    closed stdout) ends it quietly: the main thread meets and reports that."""

    def __init__(self, interval: "float | None", show, first: bool = False):
        self.interval = interval
        self._show = show
        self._first = first
        self._wake = threading.Event()
        self._stopped = False
        self._thread = threading.Thread(target=self._run, name="status", daemon=True)

    def start(self) -> None:
        _waiting.add(self._wake)
        self._thread.start()

    def stop(self) -> None:
        self._stopped = True
        _waiting.discard(self._wake)
        self._wake.set()
        if self._thread.is_alive():
            self._thread.join()

    def _run(self) -> None:
        try:
            if self._first:
                self._show()
            while True:
                self._wake.wait(self.interval)
                if self._stopped:
                    return
                self._wake.clear()
                self._show()
        except (BrokenPipeError, ValueError):
            pass
