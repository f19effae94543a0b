"""Repository migrations (restic's `migrate`): which ones a repository can take, and applying
them by name.

Current restic knows one migration, `upgrade_repo_v2`: a format 1 repository becomes format 2
by rewriting its config with version 2 (id and chunker polynomial kept). Nothing else changes
on disk; new data is compressed from then on, and prune can compress the old data later.
The migration needs an intact repository, so the caller's check runs first; the old config is
kept in a temporary file until the new one is saved, and put back if saving fails.
"""
import os
import shutil
import tempfile
from dataclasses import dataclass, field, replace
from typing import Callable, Iterator, List, Optional, Sequence, Tuple

from ..backend.base import FileType
from ..errors import RestiqueError
from ..model import gojson
from ..repository import compression, unpacked
from ..repository.config import Config


@dataclass(frozen=True)
class Migration:
    name: str
    description: str
    needs_intact_repository: bool  # run the repository check before applying
    # (can be applied?, why not) for a repository
    applicable: Callable[[object], Tuple[bool, str]]
    apply: Callable[[object], None]


def _v1_only(repo) -> Tuple[bool, str]:
    version = repo.config.version
    return version == 1, "" if version == 1 else f"repository is already upgraded to version {version}"


def upgrade_repo_v2(repo) -> None:
    """Save the config as version 2; on failure put the old config back (a copy stays in a
    temporary folder, named in the error, until the new config is saved)."""
    if repo.config.version != 1:
        raise RestiqueError(f"repository has version {repo.config.version}, "
                            "only upgrades from version 1 are supported")
    backend = repo.backend
    old_raw = backend.load(FileType.CONFIG, "")
    backup_dir = tempfile.mkdtemp(prefix="restique-migrate-upgrade-repo-v2-")
    backup = os.path.join(backup_dir, "config")
    with open(os.open(backup, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "wb") as f:
        f.write(old_raw)
    new_config = replace(repo.config, version=2)
    try:
        _save_config(repo, new_config)
    except (RestiqueError, OSError) as exc:
        raise RestiqueError(_restore_old_config(backend, old_raw, exc, backup)) from None
    shutil.rmtree(backup_dir, ignore_errors=True)
    # the open repository now writes format 2: compressed blobs and files
    repo.config = new_config
    repo.blobs.level = compression.LEVELS[repo.compression]


def _save_config(repo, config: Config) -> None:
    """The config file is never compressed; it is checked to decode before it replaces the
    old one (atomically where the backend can, else after removing it, as restic does)."""
    stored = unpacked.encode(repo.key, gojson.encode(config.to_json()), None)
    if Config.from_json(unpacked.decode(repo.key, stored, 1)) != config:
        raise RestiqueError("new config did not decode to its own content after sealing")
    if not getattr(repo.backend, "atomic_replace", False):
        repo.backend.remove(FileType.CONFIG, "")
    repo.backend.save(FileType.CONFIG, "", stored)


def _restore_old_config(backend, old_raw: bytes, cause: Exception, backup: str) -> str:
    """Put the old config back after a failed upgrade; the message for the user."""
    try:
        try:
            backend.remove(FileType.CONFIG, "")
        except OSError:
            pass
        backend.save(FileType.CONFIG, "", old_raw)
    except (RestiqueError, OSError) as again:
        return (f"error uploading config ({cause}), re-uploading old config failed as well ({again}), "
                f"but there is a backup of the config file in {backup}")
    return (f"error uploading config ({cause}), re-uploaded old config was successful, "
            f"there is a backup of the config file in {backup}")


MIGRATIONS: List[Migration] = [
    Migration("upgrade_repo_v2", "upgrade a repository to version 2", True, _v1_only, upgrade_repo_v2),
]


def available_migrations(repo) -> List[Migration]:
    """The migrations that apply to repo, in restic's order."""
    return [m for m in MIGRATIONS if m.applicable(repo)[0]]


# --- applying migrations by name: what happens is told as events ---

@dataclass
class MigrateOptions:
    """names: migrations to apply, in order. force: apply one whose precondition fails.
    check_repository(repo): run before a migration that needs an intact repository; it
    raises (a RestiqueError) when the repository is damaged, which stops everything."""
    names: Sequence[str] = ()
    force: bool = False
    check_repository: Optional[Callable[[object], None]] = None


@dataclass
class MigrationEvent:
    """kind: "unknown" (no such migration), "refused" (precondition failed, reason given),
    "forced" (precondition failed, applied anyway), "checking" (the repository check is
    about to run), "applying", "applied", "failed" (error given)."""
    kind: str
    name: str
    reason: str = ""
    error: Optional[Exception] = field(default=None, compare=False)


def migrate(repo, options: MigrateOptions) -> Iterator[MigrationEvent]:
    """Apply the named migrations to repo (opened with an exclusive lock), yielding what
    happens. A failed migration does not stop the next; the first failure is raised at the
    end, as restic returns it."""
    first_error: Optional[Exception] = None
    by_name = {m.name: m for m in MIGRATIONS}
    for name in options.names:
        migration = by_name.get(name)
        if migration is None:
            yield MigrationEvent("unknown", name)
            continue
        ok, reason = migration.applicable(repo)
        if not ok:
            if not options.force:
                yield MigrationEvent("refused", name, reason or "check failed")
                continue
            yield MigrationEvent("forced", name, reason)
        if migration.needs_intact_repository and options.check_repository is not None:
            yield MigrationEvent("checking", name)
            options.check_repository(repo)
        yield MigrationEvent("applying", name)
        try:
            migration.apply(repo)
        except RestiqueError as exc:
            first_error = first_error or exc
            yield MigrationEvent("failed", name, error=exc)
            continue
        yield MigrationEvent("applied", name)
    if first_error is not None:
        raise first_error
