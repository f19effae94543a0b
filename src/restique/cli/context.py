"""Global options shared by every command, and opening the repository they name."""
import os
import sys
from dataclasses import dataclass, field
from typing import List, Optional

from ..errors import UsageError, WrongPassword
from . import password as passwords

MAX_PASSWORD_TRIES = 3


@dataclass
class GlobalOptions:
    repo: Optional[str] = None
    repository_file: Optional[str] = None
    password_file: Optional[str] = None
    password_command: Optional[str] = None
    key_hint: Optional[str] = None
    json: bool = False
    quiet: bool = False
    verbose: int = 0
    no_lock: bool = False
    no_cache: bool = False
    cache_dir: Optional[str] = None
    compression: str = "auto"
    pack_size: Optional[int] = None
    retry_lock: float = 0.0
    options: List[str] = field(default_factory=list)
    repository: object = None  # the opened Repository, closed when the command ends

    def location(self) -> str:
        if self.repo and self.repository_file:
            raise UsageError("Options -r and --repository-file are mutually exclusive, please specify only one")
        if self.repository_file:
            try:
                with open(self.repository_file) as f:
                    return f.read().strip()
            except OSError as exc:
                raise UsageError(f"unable to read repository file {self.repository_file}: {exc.strerror}") from None
        if not self.repo:
            raise UsageError("Please specify repository location (-r or --repository-file)")
        return self.repo

    def password(self, new: bool = False) -> str:
        pw = passwords.configured_password(self.password_file, self.password_command)
        if pw is None and "RESTIC_PASSWORD" in os.environ and not new:
            pw = None  # an empty RESTIC_PASSWORD means "ask"
        if pw is None:
            prompt = "enter password for new repository: " if new else "enter password for repository: "
            pw = passwords.ask_new(prompt, self.quiet) if new else passwords.ask(prompt, self.quiet)
        if not pw:
            raise UsageError("an empty password is not a password")
        return pw

    def open(self, lock: Optional[bool] = False, load_index: bool = False):
        """Open the repository. lock: None = no lock, False = shared, True = exclusive."""
        from ..repository.repository import open_repository

        location = self.location()
        tries = MAX_PASSWORD_TRIES if self._asks_password() else 1
        for attempt in range(tries):
            pw = self.password()
            try:
                repo = open_repository(location, pw, self.key_hint, self.compression, self.pack_size)
                break
            except WrongPassword:
                if attempt + 1 == tries:
                    raise
                print("wrong password or no key found. Try again", file=sys.stderr)
        self.repository = repo
        if not self.quiet and not self.json and sys.stdout.isatty():
            level = f", compression level {repo.compression}" if repo.config.version >= 2 else ""
            print(f"repository {repo.config.id[:8]} opened (version {repo.config.version}{level})")
        if lock is not None and not (self.no_lock and not lock):
            repo.lock(exclusive=lock, retry_seconds=self.retry_lock)
        if load_index:
            repo.load_index()
        return repo

    def _asks_password(self) -> bool:
        return not (self.password_file or self.password_command or os.environ.get("RESTIC_PASSWORD")) \
            and passwords.stdin_is_terminal()

    def close(self) -> None:
        if self.repository is not None:
            self.repository.close()
            self.repository = None

    def verbose_print(self, level: int, *args) -> None:
        if not self.quiet and self.verbose >= level:
            print(*args)
