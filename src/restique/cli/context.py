"""Global options shared by every command, and opening the repository they name."""
from __future__ import annotations

import os
import sys
from typing import List, Optional

from ..errors import UsageError
from . import password as passwords

MAX_PASSWORD_TRIES = 3


# the fields of GlobalOptions and their defaults (options and _opened: a new list each)
_FIELDS = {
    "repo": None,
    "repository_file": None,
    "password_file": None,
    "password_command": None,
    "key_hint": None,
    "json": False,
    "quiet": False,
    "verbose": 0,
    "no_lock": False,
    "no_cache": False,
    "cache_dir": None,
    "cleanup_cache": False,
    "compression": "auto",
    "pack_size": None,
    "retry_lock": 0.0,
    "options": None,
    "password_env": "RESTIC_PASSWORD",
    "password_prompt": "enter password for repository: ",
    "backend_options": None,  # backend.options.BackendOptions: -o, TLS files, limits
    "literal_password": None,  # a profile's own password (allow-password-in-file)
    "repository": None,  # the opened Repository
    "_opened": None,  # every repository opened, closed when the command ends
}


class GlobalOptions:
    """The global flags of a command line, and the repositories opened with them. A plain
    class taking _FIELDS as keywords: a dataclass this size costs every command a millisecond
    of start-up (no repr either: it would show a password)."""

    def __init__(self, **values):
        unknown = values.keys() - _FIELDS.keys()
        if unknown:
            raise TypeError(f"GlobalOptions got unexpected fields {sorted(unknown)}")
        self.__dict__.update(_FIELDS, options=[], _opened=[])
        self.__dict__.update(values)

    def replace(self, **changes) -> "GlobalOptions":
        """A copy with changes, sharing the rest (the opened repositories too), as
        dataclasses.replace copied it when this was a dataclass."""
        return GlobalOptions(**{**{name: self.__dict__[name] for name in _FIELDS}, **changes})

    def location(self) -> str:
        from ..operations.open_repo import read_location

        return read_location(self.repo, self.repository_file)

    def backend(self):
        """The storage at location(), with -o options, TLS settings, limits and retries,
        behind a local cache that _open() switches on."""
        from ..operations.open_repo import compose_backend

        return compose_backend(self.location(), self.backend_options)

    def password(self, new: bool = False) -> str:
        from ..operations.open_repo import configured_password

        if self.literal_password:
            return self.literal_password
        pw = configured_password(self.password_file, self.password_command, self.password_env)
        if pw is None:  # an empty RESTIC_PASSWORD means "ask" too
            prompt = "enter password for new repository: " if new else self.password_prompt
            pw = passwords.ask_new(prompt, self.quiet) if new else passwords.ask(prompt, self.quiet)
        if not pw:
            raise UsageError("an empty password is not a password")
        return pw

    # --- opening the repository: each command says which lock it needs (restic's lock.go) ---
    def open_for_reading(self):
        """A shared lock, or none with --no-lock (read-only repositories)."""
        return self._open(lock=None if self.no_lock else False)

    def open_for_appending(self, dry_run: bool = False):
        """A shared lock for adding data (backup); a dry run takes none."""
        return self._open(lock=None if dry_run else False)

    def open_exclusively(self, dry_run: bool = False):
        """An exclusive lock, for commands that remove data or keys."""
        return self._open(lock=None if dry_run else True)

    def open_unlocked(self):
        """No lock at all: for unlock and listing locks."""
        return self._open(lock=None)

    def _open(self, lock: Optional[bool]):
        from ..operations.open_repo import lock_repository, unlock_with_password

        tries = MAX_PASSWORD_TRIES if self._asks_password() else 1
        repo = unlock_with_password(self.backend(), self.password, tries, key_hint=self.key_hint,
                                    compression=self.compression, pack_size=self.pack_size,
                                    on_wrong_password=_say_wrong_password)
        self._opened.append(repo)
        if self.repository is None:
            self.repository = repo
        if not self.quiet and not self.json and sys.stdout.isatty():
            level = f", compression level {repo.compression}" if repo.config.version >= 2 else ""
            print(f"repository {repo.config.id[:8]} opened (version {repo.config.version}{level})")
        self._use_cache(repo)
        if lock is not None:
            from .output import print_warning

            repo.on_lock_refresh_error = print_warning
            lock_repository(repo, lock, self.retry_lock, self._say_waiting)
        return repo

    def _say_waiting(self) -> None:
        """restic's notice that the lock is taken and --retry-lock waits for it."""
        from .fmt import format_go_duration

        if not self.quiet and not self.json:
            print(f"repo already locked, waiting up to {format_go_duration(self.retry_lock)} for the lock", flush=True)

    def _use_cache(self, repo) -> None:
        """Switch on the local cache, with restic's messages (only on a terminal)."""
        from ..operations.open_repo import use_cache

        if self.no_cache or _checks_without_cache():
            return
        setup = use_cache(repo, self.cache_dir, self.cleanup_cache)
        for warning in setup.warnings:
            print(warning, file=sys.stderr)
        if self.quiet or self.json or not sys.stdout.isatty() or setup.cache is None:
            return
        if setup.created:
            print(f"created new cache in {setup.cache.base}")
        if setup.removed_old:
            print(f"removing {setup.removed_old} old cache dirs from {setup.cache.base}")
        elif setup.old_found:
            print(f"found {setup.old_found} old cache directories in {setup.cache.base}, "
                  "run `restic cache --cleanup` to remove them")

    def secondary(self, source) -> "GlobalOptions":
        """The options for a second repository (--from-repo ...), sharing the rest."""
        values = {name: getattr(self, name) for name in _FIELDS}
        values.update(repo=source.repo, repository_file=source.repository_file,
                      password_file=source.password_file, password_command=source.password_command,
                      key_hint=source.key_hint, password_env=source.password_env,
                      password_prompt=source.password_prompt, repository=None, _opened=self._opened,
                      literal_password=None)  # a profile's password is not the other repository's
        return GlobalOptions(**values)

    def _asks_password(self) -> bool:
        return self.literal_password is None and not (self.password_file or self.password_command or os.environ.get(self.password_env)) \
            and passwords.stdin_is_terminal()

    def close(self) -> None:
        if self.repository is not None and self.repository not in self._opened:
            self._opened.append(self.repository)  # created by init
        while self._opened:
            self._opened.pop().close()
        self.repository = None


def _say_wrong_password() -> None:
    print("wrong password or no key found. Try again", file=sys.stderr)


def _checks_without_cache() -> bool:
    """`check` reads every file from the repository itself (restic gives it a fresh, empty
    temporary cache), unless it is run with --with-cache."""
    import click

    ctx = click.get_current_context(silent=True)
    return ctx is not None and ctx.info_name == "check" and not ctx.params.get("with_cache")
