"""Retrying transient backend errors with exponential backoff, as restic's retry backend does.

A failed operation is tried again after a growing, randomised pause (0.5 s, then 1.5 times
longer each time, ±50%) until it succeeds, fails permanently (`is_permanent`), has been tried
`max_tries` times, or `max_time` seconds have passed. Every retry is announced on one line:
`Load(<data/1234567890>, 0, 0) returned error, retrying after 720.853ms: <error>`.

Once the command is stopping (`stop_retrying()`, called on SIGINT/SIGTERM, as restic cancels
its context) a pause ends at once and nothing is tried again: a backup whose server is gone
stops within moments instead of retrying for up to 15 minutes.
"""
import sys
import threading
import time
from typing import Callable, Iterator, Optional, Tuple

from .base import FileType, is_not_found, is_permanent

INITIAL_INTERVAL = 0.5
MULTIPLIER = 1.5
RANDOMIZATION = 0.5
MAX_INTERVAL = 60.0

_stopping = threading.Event()


def stop_retrying() -> None:
    """The process is stopping: every failure from now on is final, and pauses end now."""
    _stopping.set()


def go_duration(seconds: float) -> str:
    """A pause the way Go prints a time.Duration, to the microsecond: 720.853ms, 1.5s, 1m3.2s."""
    micros = round(seconds * 1e6)
    if micros < 1000:
        return f"{micros}µs"
    if micros < 1_000_000:
        return f"{micros / 1000:.3f}".rstrip("0").rstrip(".") + "ms"
    minutes, micros = divmod(micros, 60_000_000)
    secs = f"{micros / 1e6:.6f}".rstrip("0").rstrip(".") + "s"
    return f"{minutes}m{secs}" if minutes else secs


def handle(ftype: FileType, name: str) -> str:
    """restic's short name of a file in messages: <data/1234567890>."""
    return f"<{ftype.label}/{'' if ftype is FileType.CONFIG else name[:10]}>"


def print_notice(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


class RetryBackend:
    """Wraps a backend; every other attribute is the wrapped backend's."""

    releases_written_parts = False  # a save tried again needs its parts again

    def __init__(self, backend, max_time: float = 15 * 60.0, max_tries: int = 10,
                 report: Callable[[str], None] = print_notice, initial_interval: Optional[float] = None):
        self.backend = backend
        self.max_time = max_time
        self.max_tries = max_tries
        self.report = report
        # a short bound (in tests) gets short pauses too, so that several retries fit in it
        self.initial_interval = initial_interval or min(INITIAL_INTERVAL, max(max_time / 20, 0.001))

    def __getattr__(self, name):
        return getattr(self.backend, name)

    def _retry(self, what: str, call: Callable, on_failure: Optional[Callable] = None):
        start = time.monotonic()
        interval = self.initial_interval
        for attempt in range(1, self.max_tries + 1):
            try:
                result = call()
            except Exception as exc:
                if is_permanent(exc) or attempt == self.max_tries or _stopping.is_set():
                    raise
                import random  # only once something failed: every command composes this wrapper

                pause = interval * random.uniform(1 - RANDOMIZATION, 1 + RANDOMIZATION)
                if time.monotonic() - start + pause > self.max_time:
                    raise
                if on_failure is not None:
                    on_failure()
                self.report(f"{what} returned error, retrying after {go_duration(pause)}: {_one_line(exc)}")
                if _stopping.wait(pause):
                    raise
                interval = min(interval * MULTIPLIER, MAX_INTERVAL)
            else:
                if attempt > 1:
                    self.report(f"{what} operation successful after {attempt - 1} retries")
                return result

    # --- the Backend protocol ---
    def create(self) -> None:
        self._retry("Create()", self.backend.create)

    def save(self, ftype: FileType, name: str, data) -> None:
        def forget_partial():  # a server that refuses to replace files would refuse the retry
            if not self.backend.atomic_replace:
                try:
                    self.backend.remove(ftype, name)
                except Exception:
                    pass

        self._retry(f"Save({handle(ftype, name)})", lambda: self.backend.save(ftype, name, data), forget_partial)

    def load(self, ftype: FileType, name: str, offset: int = 0, length: Optional[int] = None) -> bytes:
        what = f"Load({handle(ftype, name)}, {length or 0}, {offset})"
        return self._retry(what, lambda: self.backend.load(ftype, name, offset, length))

    def stat(self, ftype: FileType, name: str) -> int:
        return self._retry(f"Stat({handle(ftype, name)})", lambda: self.backend.stat(ftype, name))

    def remove(self, ftype: FileType, name: str) -> None:
        try:
            self._retry(f"Remove({handle(ftype, name)})", lambda: self.backend.remove(ftype, name))
        except Exception as exc:
            # stopping on a signal, a lock that cannot be removed is left for `unlock` (restic
            # only logs it): the signal, not the unreachable server, is what the exit says
            if not (ftype is FileType.LOCK and _stopping.is_set() and not is_not_found(exc)):
                raise

    def list(self, ftype: FileType) -> Iterator[Tuple[str, int]]:
        # a listing is read whole inside the retry, so a failure half-way starts it again
        return iter(self._retry(f"List({ftype.label})", lambda: list(self.backend.list(ftype))))

    def close(self) -> None:
        self.backend.close()


def _one_line(exc: BaseException) -> str:
    text = str(exc) if not isinstance(exc, OSError) or not exc.strerror else exc.strerror
    if isinstance(exc, OSError) and exc.filename and not is_not_found(exc):
        text += f": {exc.filename}"
    return " ".join(text.split())
