"""Repository locks, as restic defines them.

A lock is an encrypted JSON file in locks/. Exclusive locks exclude every other lock;
non-exclusive locks only exclude exclusive ones. A lock is stale when it is older than
30 minutes or when it was made on this host by a process that no longer exists. Holders
refresh their lock every 5 minutes by writing a new file and removing the old one.
RESTIQUE_LOCK_REFRESH_SECONDS shortens that interval, for tests.
"""
from __future__ import annotations

import os
import threading
import time
from typing import Callable, List, NamedTuple, Optional, Tuple

from ..backend.base import BackendNotFound, FileType
from ..errors import IntegrityError, LockFailed, RestiqueError
from ..model import gojson
from ..model.gotime import GoTime
from .keys import default_username

STALE_AFTER = 30 * 60
REFRESH_EVERY = float(os.environ.get("RESTIQUE_LOCK_REFRESH_SECONDS") or 5 * 60)
# the host name is os.uname()'s: what socket.gethostname() returns, without loading socket


class LockInfo(NamedTuple):
    """The content of a lock file (a NamedTuple: cheaper to define than a dataclass, and
    every command that locks loads this module)."""
    time: GoTime
    exclusive: bool
    hostname: str
    username: str
    pid: int
    uid: int = 0
    gid: int = 0

    def to_json(self) -> dict:
        obj = {
            "time": self.time.rfc3339(),
            "exclusive": self.exclusive,
            "hostname": self.hostname,
            "username": self.username,
            "pid": self.pid,
        }
        if self.uid:
            obj["uid"] = self.uid
        if self.gid:
            obj["gid"] = self.gid
        return obj

    @classmethod
    def from_json(cls, raw: bytes) -> "LockInfo":
        try:
            obj = gojson.loads(raw)
            info = cls(
                GoTime.parse(obj["time"]),
                bool(obj.get("exclusive")),
                str(obj.get("hostname", "")),
                str(obj.get("username", "")),
                int(obj.get("pid", 0)),
                int(obj.get("uid", 0)),
                int(obj.get("gid", 0)),
            )
        except gojson.DECODING_ERRORS:
            raise IntegrityError("lock file is damaged") from None
        # a pid that no process can have would overflow the liveness check
        if not -1 << 31 <= info.pid < 1 << 31 or not 0 <= info.uid < 1 << 32 or not 0 <= info.gid < 1 << 32:
            raise IntegrityError("lock file is damaged: pid, uid or gid out of range")
        return info

    @classmethod
    def mine(cls, exclusive: bool) -> "LockInfo":
        return cls(GoTime.now(), exclusive, os.uname().nodename, default_username(), os.getpid(), os.getuid(), os.getgid())

    def is_stale(self) -> bool:
        if time.time() - self.time.seconds > STALE_AFTER:
            return True
        if self.hostname != os.uname().nodename:
            return False
        return not _process_exists(self.pid)

    def describe(self, storage_id: str) -> str:
        from ..backend.retry import go_duration

        age = max(0.0, time.time() - self.time.unix_ns / 1e9)
        kind = "exclusively " if self.exclusive else ""
        return (
            f"repository is already locked {kind}by PID {self.pid} on {self.hostname} by {self.username} "
            f"(UID {self.uid}, GID {self.gid}), lock was created at {self.time.local_string()} ({go_duration(age)} ago), "
            f"storage ID {storage_id[:8]}; the `unlock` command can be used to remove stale locks"
        )


def _process_exists(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def list_locks(repo, skip: Optional[str] = None):
    """(id, LockInfo or None when unreadable) of every lock file but skip (one's own)."""
    result = []
    for lock_id in repo.list_ids(FileType.LOCK):
        if lock_id == skip:
            continue
        try:
            result.append((lock_id, LockInfo.from_json(repo.load_unpacked(FileType.LOCK, lock_id))))
        except BackendNotFound:
            continue  # removed meanwhile
        except IntegrityError:
            result.append((lock_id, None))
    return result


def remove_locks(repo, stale_only: bool = True) -> int:
    removed = 0
    for lock_id, info in list_locks(repo):
        if stale_only and (info is None or not info.is_stale()):
            continue
        try:
            repo.backend.remove(FileType.LOCK, lock_id)
            removed += 1
        except BackendNotFound:  # removed meanwhile
            pass
    return removed


class Lock:
    """A held lock; refreshed in the background until released."""

    def __init__(self, repo, exclusive: bool, retry_seconds: float = 0.0,
                 on_wait: Optional[Callable[[], None]] = None,
                 on_refresh_error: Optional[Callable[[str], None]] = None, *, acquire: bool = True):
        """Taken at once unless acquire is False (then by acquire()); retry_seconds and
        on_wait() as for acquire(); on_refresh_error(message) when a background refresh fails
        (restic warns, and the lock goes stale after 30 minutes without one)."""
        self.repo = repo
        self.exclusive = exclusive
        self.lock_id: Optional[str] = None
        self._stop = threading.Event()
        self._thread: Optional[threading.Thread] = None
        self._on_refresh_error = on_refresh_error
        self._retry_seconds = retry_seconds
        self._on_wait = on_wait
        if acquire:
            self.acquire()

    def acquire(self) -> None:
        """Take the lock, waiting up to retry_seconds for a conflicting holder (on_wait() is
        called once, before the first wait). Whatever stops it midway (a conflict, a failure,
        Ctrl-C) leaves no lock file behind."""
        try:
            self._acquire(self._retry_seconds, self._on_wait)
        except BaseException:
            self._remove_file(quietly=True)
            raise

    def _write(self) -> None:
        """Write a new lock file; self.lock_id names it from before it exists."""
        self.lock_id, stored = self._sealed()
        self._save(self.lock_id, stored)

    def _sealed(self) -> Tuple[str, bytes]:
        return self.repo.seal_unpacked(FileType.LOCK, gojson.encode(LockInfo.mine(self.exclusive).to_json()))

    def _save(self, lock_id: str, stored: bytes) -> None:
        try:
            self.repo.backend.save(FileType.LOCK, lock_id, stored)
        except OSError as exc:  # a read-only or full disk: say what failed
            raise RestiqueError(f"unable to create lock in backend: {exc.strerror or exc}") from None

    def _conflicts(self) -> List[str]:
        reasons = []
        for lock_id, info in list_locks(self.repo, skip=self.lock_id):
            if info is None:
                continue
            if self.exclusive or info.exclusive:
                reasons.append(info.describe(lock_id))
        return reasons

    def _acquire(self, retry_seconds: float, on_wait: Optional[Callable[[], None]]) -> None:
        # restic's schedule: the message at the first conflict, 5 s doubling up to a minute, and
        # a last try at the deadline (also when the first try alone took longer than the wait)
        deadline = time.monotonic() + retry_seconds
        delay = min(5.0, retry_seconds)
        last_try = retry_seconds <= 0
        while True:
            self._write()
            conflicts = self._conflicts()
            if not conflicts:
                break
            self._remove_file()
            if last_try:
                raise LockFailed(f"unable to create lock in backend: {conflicts[0]}")
            if on_wait:
                on_wait()
                on_wait = None
            remaining = deadline - time.monotonic()
            if remaining > 0:
                time.sleep(min(delay, remaining))
                delay = min(delay * 2, 60.0)
            last_try = time.monotonic() >= deadline
        self._thread = threading.Thread(target=self._refresh_loop, name="lock-refresh", daemon=True)
        self._thread.start()

    def _refresh_loop(self) -> None:
        while not self._stop.wait(REFRESH_EVERY):
            old = self.lock_id
            try:
                new, stored = self._sealed()
                self._save(new, stored)
                self.lock_id = new
                self.repo.backend.remove(FileType.LOCK, old)
            except Exception as exc:  # the next refresh tries again; staleness needs 30 minutes
                if self._on_refresh_error:
                    self._on_refresh_error(f"unable to refresh lock: {exc}")

    def _remove_file(self, quietly: bool = False) -> None:
        """Remove the lock file (quietly: a failure to do so is not raised, for a removal on
        the way out of another error)."""
        if self.lock_id:
            try:
                self.repo.backend.remove(FileType.LOCK, self.lock_id)
            except BackendNotFound:
                pass
            except Exception:
                if not quietly:
                    raise
            self.lock_id = None

    def release(self) -> None:
        self._stop.set()
        if self._thread:
            self._thread.join(timeout=10)
            self._thread = None
        self._remove_file()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.release()
