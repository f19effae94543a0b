"""Opening a repository by its location, as every command and the library API do: where the
location and the password come from, the composed backend (rate limits, retries, the local
cache), the key tried with the password, and the lock a caller needs.

The CLI (cli/context.py) and the library (restique.api) both open repositories through these
functions; what differs is only who is asked for a password and what is printed.
"""
from __future__ import annotations

import contextlib
import os
import signal
import threading
import weakref
from typing import Callable, Iterator, Optional

from ..backend.options import BackendOptions
from ..errors import RestiqueError, UsageError, WrongPassword
from ..repository.locks import Lock
from ..repository.repository import Repository, open_repository
from .cache import CacheSetup, setup_cache

NO_LOCATION = "Please specify repository location (-r or --repository-file)"


class PasswordError(RestiqueError):
    """The password could not be read from its file or command (exit code 1)."""


def read_location(location: Optional[str], repository_file: Optional[str] = None) -> str:
    """The repository location: given directly, or the first line of repository_file."""
    if location and repository_file:
        raise UsageError("Options -r and --repository-file are mutually exclusive, please specify only one")
    if repository_file:
        try:
            with open(repository_file) as f:
                return f.read().strip()
        except OSError as exc:
            raise UsageError(f"unable to read repository file {repository_file}: {exc.strerror}") from None
    if not location:
        raise UsageError(NO_LOCATION)
    return location


# --- where a password comes from, in restic's order and with its messages ---
def password_from_file(path: str) -> str:
    try:
        with open(path, "rb") as f:
            return f.read().decode("utf-8", errors="surrogateescape").strip()
    except FileNotFoundError:
        raise PasswordError(f"Resolving password failed: {path} does not exist") from None
    except OSError as exc:
        raise PasswordError(f"Resolving password failed: {path}: {exc.strerror}") from None


def password_from_command(command: str) -> str:
    """The command's standard output, stripped. Its output is never part of a message (it is
    the password); its standard error goes to the user's, as restic does."""
    import shlex  # here: most passwords come from the environment or a file
    import subprocess

    try:
        args = shlex.split(command)
    except ValueError as exc:
        raise PasswordError(f"Resolving password failed: {exc}") from None
    if not args:
        raise PasswordError("Resolving password failed: command string is empty")
    try:
        proc = subprocess.run(args, stdout=subprocess.PIPE, stdin=subprocess.DEVNULL)
    except OSError as exc:
        raise PasswordError(f"Resolving password failed: {_exec_error(args[0], exc)}") from None
    if proc.returncode < 0:
        raise PasswordError(f"Resolving password failed: signal: {_signal_name(-proc.returncode)}")
    if proc.returncode != 0:
        raise PasswordError(f"Resolving password failed: exit status {proc.returncode}")
    return proc.stdout.decode("utf-8", errors="surrogateescape").strip()


def _exec_error(program: str, exc: OSError) -> str:
    """Go's words for a command that could not be started."""
    if isinstance(exc, FileNotFoundError) and "/" not in program:
        return f'exec: "{program}": executable file not found in $PATH'
    text = exc.strerror or str(exc)
    return f"fork/exec {program}: {text[:1].lower() + text[1:]}"


def _signal_name(number: int) -> str:
    """Go's name of a signal that ended a command ("killed", "terminated" ...)."""
    try:
        text = signal.strsignal(number) or str(number)
    except ValueError:
        return f"signal {number}"
    return text[:1].lower() + text[1:]


def configured_password(password_file: Optional[str], password_command: Optional[str],
                        env_name: Optional[str] = "RESTIC_PASSWORD") -> Optional[str]:
    """The password from a file, a command or the environment variable env_name (None: not
    consulted), or None when nothing is configured and the user must be asked."""
    if password_file and password_command:
        raise PasswordError("Resolving password failed: Password file and command are mutually exclusive options")
    if password_command:
        return password_from_command(password_command)
    if password_file:
        return password_from_file(password_file)
    return (os.environ.get(env_name) if env_name else None) or None


# --- the backend, the key, the cache and the lock ---
def compose_backend(location: str, options: Optional[BackendOptions] = None):
    """The storage at location with its wrappers (rate limits, retries), behind a local cache
    that use_cache() switches on once the repository's id is known."""
    from ..backend.compose import with_cache
    from ..backend.location import open_backend

    return with_cache(open_backend(location, options))


def unlock_with_password(backend, passwords: Callable[[], str], tries: int = 1, *,
                         key_hint: Optional[str] = None, compression: str = "auto",
                         pack_size: Optional[int] = None,
                         on_wrong_password: Optional[Callable[[], None]] = None) -> Repository:
    """Open the repository on backend with a password from passwords(), asking up to tries
    times (on_wrong_password() between tries). The backend is closed when opening fails,
    so a helper process (rclone) does not outlive it."""
    try:
        for attempt in range(tries):
            password = passwords()
            if not password:
                raise UsageError("an empty password is not a password")
            try:
                return open_repository(backend, password, key_hint, compression, pack_size)
            except WrongPassword:
                if attempt + 1 == tries:
                    raise
                if on_wrong_password:
                    on_wrong_password()
        raise WrongPassword()
    except BaseException:
        backend.close()
        raise


def use_cache(repo: Repository, cache_dir: Optional[str] = None, cleanup: bool = False) -> CacheSetup:
    """Switch on the local cache of repo (under cache_dir, or the default folder)."""
    return setup_cache(repo, cache_dir, cleanup)


def lock_repository(repo: Repository, exclusive: bool, retry_seconds: float = 0.0,
                    on_wait: Optional[Callable[[], None]] = None, *, until_close: bool = True) -> Lock:
    """Take repo's lock at once or, when another holder conflicts, wait up to retry_seconds
    for it (on_wait() is called once before waiting). LockFailed when it stays taken.
    until_close: repo.close() releases it (a command's lock); otherwise the caller releases
    it (a library call's lock, held for that call only)."""
    if until_close:
        return repo.lock(exclusive, retry_seconds, on_wait)
    return Lock(repo, exclusive, retry_seconds, on_wait, repo.on_lock_refresh_error)


# --- locks and the index for library calls (restique.api) ---
class CallLocking:
    """How library calls on one open repository lock it (no_lock: reading calls take none;
    lock_wait: seconds to wait for another holder), and the guard that makes the first
    reading calls of several threads load the index once."""

    def __init__(self, no_lock: bool = False, lock_wait: float = 0.0):
        self.configure(no_lock, lock_wait)
        self.index_guard = threading.Lock()

    def configure(self, no_lock: bool, lock_wait: float) -> None:
        self.no_lock = no_lock
        self.lock_wait = lock_wait


# per open repository, forgotten with it
_CALL_LOCKING: "weakref.WeakKeyDictionary[Repository, CallLocking]" = weakref.WeakKeyDictionary()
_CALL_LOCKING_GUARD = threading.Lock()


def call_locking(repo: Repository) -> CallLocking:
    """repo's settings; a repository opened otherwise (open_repository) gets the defaults."""
    with _CALL_LOCKING_GUARD:
        settings = _CALL_LOCKING.get(repo)
        if settings is None:
            settings = _CALL_LOCKING[repo] = CallLocking()
        return settings


@contextlib.contextmanager
def locked_for_call(repo: Repository, exclusive: bool = False, *, skip: bool = False) -> Iterator[Repository]:
    """repo under the lock its command takes, for the duration of one library call (skip:
    none, for a dry run)."""
    settings = call_locking(repo)
    if skip or (settings.no_lock and not exclusive):
        yield repo
        return
    lock = lock_repository(repo, exclusive, settings.lock_wait, until_close=False)
    try:
        yield repo
    finally:
        lock.release()


def index_loaded_once(repo: Repository) -> Repository:
    """repo with its index loaded, once, however many threads ask for it first at once."""
    if not repo.index_loaded:
        with call_locking(repo).index_guard:
            repo.load_index()
    return repo
