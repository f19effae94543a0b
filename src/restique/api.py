"""The library interface: what every restique command does, as Python calls.

    import restique

    with restique.open("rest:http://host:8000/repo/", password_file="/etc/backup.pw") as repo:
        snapshot, summary = restique.backup(repo, ["/srv/data"], restique.BackupRequest(tags=["daily"]))
        for sn in restique.snapshots(repo):
            print(sn.short_id, sn.time, sn.paths)
        data = restique.read_file(repo, "latest", "/srv/data/notes.txt")
        restique.forget(repo, restique.ForgetOptions(policy=restique.KeepPolicy(daily=7)))

The command line runs the same operations (``restique.operations``) after opening the
repository with the same code (``restique.operations.open_repo``); these functions add what a
command adds around them: each call takes the lock its command takes, for the duration of the
call (shared for reading and backing up, exclusive for ``forget``, ``prune`` and ``check``),
and releases it when it returns. A lock held by another process raises ``LockFailed`` at once,
or after ``lock_wait`` seconds given to ``open``.

Nothing here prints. Progress goes to the callback a caller passes (see each function);
failures are ``RestiqueError`` subclasses whose ``exit_code`` is the one the command line
exits with:

| exception | exit code | raised when |
| --- | --- | --- |
| ``RestiqueError`` | 1 | any failure (the base class of all below) |
| ``UsageError`` | 1 | invalid options or arguments |
| ``PasswordError`` | 1 | the password file or command cannot be read |
| ``NotFound`` | 1 | a snapshot, path or object does not exist |
| ``IntegrityError`` | 1 | data read from the repository is damaged |
| ``AlreadyExists`` | 1 | ``init`` finds a repository at the location |
| ``RepositoryNotFound`` | 10 | no repository at the location |
| ``LockFailed`` | 11 | another process holds a conflicting lock |
| ``WrongPassword`` | 12 | no key opens with the password |

``backup`` signals files it could not read by ``summary.errors`` (the CLI's exit code 3).

Threads and processes:

- Any number of repositories may be open in one process; they share nothing.
- One ``Repository`` may be used from several threads at once for reading: ``snapshots``,
  ``find_snapshot``, ``ls``, ``find``, ``diff``, ``dump``, ``read_file``, ``restore``,
  ``stats``. Each call takes its own shared lock. ``repo.load_blob`` is safe from several
  threads once the index is loaded (by ``repo.load_index()`` or any of these calls): two
  threads must not load the index at the same time outside this module.
- Calls that write (``backup``, ``forget``, ``prune``, ``check``, ``copy`` into it) must not
  run at the same time as any other call on the same ``Repository`` object: open a second
  one (another ``open()``) for concurrent writers, as two processes would, and the locks
  decide who may go on.
- Options objects, iterators and progress callbacks belong to the call they are passed to;
  backup and restore call their progress callbacks from worker threads, one at a time.
"""
import dataclasses
from typing import (BinaryIO, Callable, Dict, Iterator, List, NamedTuple, Optional, Sequence,
                    Tuple, Union)

from .backend.options import BackendOptions
from .errors import (AlreadyExists, IntegrityError, LockFailed, NotFound, RepositoryNotFound,
                     RestiqueError, UsageError, WrongPassword)
from .model.keep_policy import KeepPolicy
from .model.node import Node
from .model.snapshot import Snapshot
from .model.snapshot_filter import SnapshotFilter
from .operations import open_repo
from .operations.archiver import BackupOptions, BackupProgress
from .operations.archiver.progress import ItemResult
from .operations.backup import BackupOutcome, BackupRequest, existing_targets, run_backup
from .operations.check import CheckOptions, CheckReport, CheckSummary, Problem
from .operations.check import check as _check
from .operations.copy import CopyEvent, CopyOptions, copy_snapshots
from .operations.diff import Change, DiffOptions, DiffStatistics, diff_trees
from .operations.dump import DumpOptions, DumpResult
from .operations.dump import dump as _dump
from .operations.find import FindOptions, Found
from .operations.find import find as _find
from .operations.forget import ForgetOptions, ForgetResult
from .operations.forget import forget as _forget
from .operations.ls import LsOptions
from .operations.ls import ls as _ls
from .operations.open_repo import PasswordError
from .operations.prune import PruneOptions, PrunePlan, PruneReport
from .operations.prune import prune as _prune
from .operations.restorer import RestoreOptions, RestoreProgress, RestoreStats
from .operations.restorer import restore as _restore
from .operations.snapshot_lookup import find_filtered_snapshots, find_snapshot as _find_snapshot
from .operations.stats import Stats, StatsOptions
from .operations.stats import stats as _stats
from .repository.config import STABLE_VERSION
from .repository.repository import Repository
from .repository.repository import init_repository as _init_repository

SnapshotRef = Union[Snapshot, str]  # a Snapshot, or "latest", an ID or ID prefix, with ":subfolder"
BackupCallback = Callable[[str, str, ItemResult], None]
RestoreCallback = Callable[[str, str, int], None]
Warn = Callable[[str], None]


class BackupSummary(NamedTuple):
    """What ``backup`` returns: the new snapshot (None when skipped as unchanged; its id is
    empty in a dry run), the snapshot's ``summary`` counts (restic's field names) and the
    backup's outcome (parent, tree, ``errors``: files that could not be read)."""

    snapshot: Optional[Snapshot]
    summary: Dict[str, object]
    outcome: BackupOutcome

    @property
    def errors(self) -> int:
        return self.outcome.progress.stats.errors


# --- opening ---------------------------------------------------------------------------------

def _settings(options: Optional[Dict[str, str]], backend_options: Optional[BackendOptions]) -> BackendOptions:
    settings = backend_options or BackendOptions()
    if not options:
        return settings
    extended = {**settings.extended, **{str(k): str(v) for k, v in options.items()}}
    return dataclasses.replace(settings, extended=extended)  # the caller's object stays as it was


def _password(password: Optional[str], password_file: Optional[str], password_command: Optional[str]) -> str:
    if password is not None and (password_file or password_command):
        raise UsageError("give one of password, password_file and password_command")
    found = password if password is not None else open_repo.configured_password(password_file, password_command, None)
    if found is None:
        raise UsageError("no password given: pass password, password_file or password_command")
    if not found:
        raise UsageError("an empty password is not a password")
    return found


def open(location: Optional[str] = None, *, password: Optional[str] = None,  # noqa: A001 - restique.open
         password_file: Optional[str] = None, password_command: Optional[str] = None,
         repository_file: Optional[str] = None, key_hint: Optional[str] = None,
         options: Optional[Dict[str, str]] = None, backend_options: Optional[BackendOptions] = None,
         cache_dir: Optional[str] = None, no_cache: bool = False, compression: str = "auto",
         pack_size: Optional[int] = None, no_lock: bool = False, lock_wait: float = 0.0) -> Repository:
    """Open the repository at ``location`` (``/srv/repo``, ``sftp:host:/repo``,
    ``rest:https://...``, ``s3:...``, ``rclone:remote:path``), or at the location written in
    ``repository_file``, with exactly one of ``password``, ``password_file`` (its content,
    stripped) and ``password_command`` (its output). ``options`` are restic's ``-o`` options
    (``{"rest.connections": "4"}``); ``backend_options`` the TLS settings and rate limits.
    The local cache is used unless ``no_cache`` (under ``cache_dir``, or the default folder).
    ``no_lock``: reading calls take no lock (read-only storage). ``lock_wait``: seconds a call
    waits for a lock another process holds.

    Use the result as a context manager, or call its ``close()``.
    Raises RepositoryNotFound, WrongPassword, PasswordError, UsageError."""
    location = open_repo.read_location(location, repository_file)
    secret = _password(password, password_file, password_command)
    backend = open_repo.compose_backend(location, _settings(options, backend_options))
    repo = open_repo.unlock_with_password(backend, lambda: secret, key_hint=key_hint,
                                          compression=compression, pack_size=pack_size)
    if not no_cache:
        open_repo.use_cache(repo, cache_dir)
    open_repo.call_locking(repo).configure(no_lock, lock_wait)
    return repo


def init(location: str, *, password: Optional[str] = None, password_file: Optional[str] = None,
         password_command: Optional[str] = None, version: int = STABLE_VERSION,
         options: Optional[Dict[str, str]] = None, backend_options: Optional[BackendOptions] = None,
         compression: str = "auto", pack_size: Optional[int] = None,
         chunker_polynomial: Optional[int] = None, lock_wait: float = 0.0) -> Repository:
    """Create a repository at ``location`` (format ``version``: 1 or 2) and return it open.
    ``chunker_polynomial``: another repository's (``repo.config.chunker_polynomial``), so that
    ``copy`` between them deduplicates. Raises AlreadyExists if one is there already."""
    secret = _password(password, password_file, password_command)
    backend = open_repo.compose_backend(location, _settings(options, backend_options))
    try:
        repo = _init_repository(backend, secret, version, polynomial=chunker_polynomial,
                                compression_mode=compression, pack_size=pack_size)
    except BaseException:
        backend.close()  # a helper process (rclone) must not outlive a failed init
        raise
    open_repo.call_locking(repo).configure(False, lock_wait)
    return repo


# --- snapshots -------------------------------------------------------------------------------

def snapshots(repo: Repository, filter: Optional[SnapshotFilter] = None,  # noqa: A002 - restic's word
              ids: Sequence[str] = (), *, warn: Optional[Warn] = None) -> List[Snapshot]:
    """The snapshots named by ``ids`` (ID prefixes or ``latest``), or all that ``filter``
    selects (``SnapshotFilter(hosts=[...], tags=[["a", "b"]], paths=[...])``), oldest
    first. Unknown IDs and damaged snapshot files go to ``warn`` and are skipped."""
    with open_repo.locked_for_call(repo):
        found = find_filtered_snapshots(repo, list(ids), filter, warn=warn or _ignore)
    return sorted(found, key=lambda sn: sn.time.unix_ns) if not ids else found


def find_snapshot(repo: Repository, spec: str, filter: Optional[SnapshotFilter] = None) -> Snapshot:
    """The snapshot ``spec`` names: ``latest`` (the newest that ``filter`` selects), an ID or
    an unambiguous ID prefix. Raises NotFound."""
    with open_repo.locked_for_call(repo):
        return _find_snapshot(open_repo.index_loaded_once(repo), spec.partition(":")[0], filter)[0]


def _tree(repo: Repository, snapshot: SnapshotRef) -> Tuple[Snapshot, str]:
    """(snapshot, tree id) of a Snapshot or of a spec such as ``latest:/srv/data``; the
    index is loaded (once) for the reading that follows."""
    open_repo.index_loaded_once(repo)
    if isinstance(snapshot, Snapshot):
        if not snapshot.tree:
            raise IntegrityError(f"snapshot {snapshot.short_id} has no tree")
        return snapshot, snapshot.tree
    return _find_snapshot(repo, snapshot)


# --- backup ----------------------------------------------------------------------------------

class _BackupCallback(BackupProgress):
    def __init__(self, callback: BackupCallback):
        super().__init__()
        self.callback = callback

    def item(self, path: str, kind: str, result: ItemResult) -> None:
        self.callback(path, kind, result)


def backup(repo: Repository, source: Union[Sequence[str], BinaryIO],
           request: Optional[BackupRequest] = None, *,
           progress: Union[BackupProgress, BackupCallback, None] = None,
           warn: Optional[Warn] = None) -> BackupSummary:
    """Back up ``source`` (file and folder paths, or a binary stream saved as
    ``request.stdin_filename``) as a new snapshot. ``request`` holds the rest of restic's
    backup flags (tags, host, parent, excludes, ``options`` with the reading settings, dry
    run). ``progress``: ``progress(path, kind, result)`` for each file (``kind`` "file")
    and folder ("dir") saved, ``result.action`` "new", "modified" or "unchanged"; or a
    ``BackupProgress`` subclass for every event. Files that cannot be read are counted in
    ``summary.errors`` and left out; the snapshot is still written. Paths that do not exist
    go to ``warn``; none existing raises RestiqueError."""
    request = request or BackupRequest()
    if isinstance(source, (str, bytes)):
        raise UsageError("backup takes a list of paths or a binary stream, not one string")
    if hasattr(source, "read"):
        request.stdin, request.paths = source, []
    else:
        request.paths = existing_targets(list(source), warn or _ignore)
    if progress is not None and not isinstance(progress, BackupProgress):
        progress = _BackupCallback(progress)
    with open_repo.locked_for_call(repo, skip=request.dry_run):
        outcome = run_backup(open_repo.index_loaded_once(repo), request, progress)
    summary = outcome.snapshot.summary if outcome.snapshot is not None else {}
    return BackupSummary(outcome.snapshot, dict(summary or {}), outcome)


# --- reading -------------------------------------------------------------------------------

class _RestoreCallback(RestoreProgress):
    def __init__(self, callback: RestoreCallback):
        self.callback = callback

    def item(self, action: str, location: str, size: int) -> None:
        self.callback(action, location, size)


def restore(repo: Repository, snapshot: SnapshotRef, target: Union[str, RestoreOptions], *,
            progress: Union[RestoreProgress, RestoreCallback, None] = None) -> RestoreStats:
    """Restore a snapshot (or ``"ID:/sub/folder"``) into the folder ``target``, or as a
    ``RestoreOptions`` says (includes, excludes, overwrite, delete, verify, dry run).
    ``progress``: ``progress(action, location, size)`` per entry done (action "file
    restored", "dir restored" ...; see ``restique.operations.restorer``), or a
    ``RestoreProgress`` subclass, which also hears of errors. Entries that fail are in
    ``stats.errors`` and the restore goes on."""
    options = RestoreOptions(target=target) if isinstance(target, str) else target
    if progress is not None and not isinstance(progress, RestoreProgress):
        progress = _RestoreCallback(progress)
    with open_repo.locked_for_call(repo):
        _, tree_id = _tree(repo, snapshot)
        return _restore(repo, tree_id, options, progress)


def ls(repo: Repository, snapshot: SnapshotRef, options: Optional[LsOptions] = None) -> Iterator[Tuple[str, Node]]:
    """(path, node) of each entry of the snapshot (or of ``options.dirs``), in tree order.
    The shared lock is held until the iterator is exhausted or closed."""
    with open_repo.locked_for_call(repo):
        _, tree_id = _tree(repo, snapshot)
        yield from _ls(repo, tree_id, options)


def find(repo: Repository, options: FindOptions, *, warn: Optional[Warn] = None) -> Iterator[Found]:
    """Search snapshots for paths (``FindOptions(patterns=["*.conf"])``) or, with
    ``kind="blob"|"tree"|"pack"``, for objects; yields FoundEntry / FoundObject items."""
    with open_repo.locked_for_call(repo):
        yield from _find(open_repo.index_loaded_once(repo), options, None, warn)


def diff(repo: Repository, first: SnapshotRef, second: SnapshotRef, options: Optional[DiffOptions] = None,
         *, on_change: Optional[Callable[[Change], None]] = None, warn: Optional[Warn] = None) -> DiffStatistics:
    """Compare two snapshots (or subfolders, ``"ID:/srv"``): ``on_change(Change(path,
    modifier))`` for each difference ("+", "-", "M", "T", "U"), then the statistics."""
    with open_repo.locked_for_call(repo):
        tree_a, tree_b = _tree(repo, first)[1], _tree(repo, second)[1]
        return diff_trees(repo, tree_a, tree_b, options, on_change, warn)


def dump(repo: Repository, snapshot: SnapshotRef, path: str, out: BinaryIO,
         options: Optional[DumpOptions] = None) -> DumpResult:
    """Write the file at ``path`` in the snapshot to ``out``, or a folder as a tar (or zip,
    ``DumpOptions(archive="zip")``) archive. Memory stays flat whatever the size."""
    with open_repo.locked_for_call(repo):
        _, tree_id = _tree(repo, snapshot)
        return _dump(repo, tree_id, path, out, options)


def read_file(repo: Repository, snapshot: SnapshotRef, path: str) -> bytes:
    """The content of one file of a snapshot, in memory. Raises DumpError (a NotFound-like
    RestiqueError) when ``path`` is missing or is not a file."""
    import io

    from .operations.dump import DumpError

    buffer = io.BytesIO()

    def refuse_folder() -> None:
        raise DumpError(f"{path} is a folder, not a file")

    dump(repo, snapshot, path, buffer, DumpOptions(before_archive=refuse_folder))
    return buffer.getvalue()


def stats(repo: Repository, options: Optional[StatsOptions] = None, *, warn: Optional[Warn] = None) -> Stats:
    """Sizes of the selected snapshots, in the counting ``options.mode`` (restore-size,
    files-by-contents, raw-data, blobs-per-file)."""
    with open_repo.locked_for_call(repo):
        return _stats(open_repo.index_loaded_once(repo), options or StatsOptions(), warn)


# --- maintenance -----------------------------------------------------------------------------

def forget(repo: Repository, options: ForgetOptions, *, warn: Optional[Warn] = None) -> ForgetResult:
    """Apply a retention policy (``ForgetOptions(policy=KeepPolicy(daily=7, weekly=4))``) per
    group, or remove ``options.snapshot_ids``. Removes snapshot files only: ``prune``
    afterwards frees their data. Refuses an empty policy as restic does."""
    from .operations.forget import no_policy_message

    refusal = no_policy_message(options)
    if refusal:
        raise UsageError(refusal)
    with open_repo.locked_for_call(repo, exclusive=True):
        return _forget(repo, options, warn=warn or _ignore)


def prune(repo: Repository, options: Optional[PruneOptions] = None, *,
          report: Optional[PruneReport] = None) -> PrunePlan:
    """Remove the data no snapshot uses (repacking partly used packs, as
    ``options`` allows); ``report`` hears of phases, progress and warnings."""
    options = options or PruneOptions()
    with open_repo.locked_for_call(repo, exclusive=True, skip=options.dry_run):
        return _prune(open_repo.index_loaded_once(repo), options, report)


class _ProblemCallback(CheckReport):
    def __init__(self, callback: Callable[[Problem], None]):
        self.callback = callback

    def problem(self, problem: Problem) -> None:
        self.callback(problem)


def check(repo: Repository, options: Optional[CheckOptions] = None, *,
          report: Union[CheckReport, Callable[[Problem], None], None] = None) -> CheckSummary:
    """Verify the repository (and with ``read_data`` every pack's content). ``report``:
    ``report(problem)`` per finding, or a ``CheckReport`` subclass that also hears of stages
    and progress. The summary's ``errors_found`` says whether the CLI would exit 1."""
    if report is not None and not isinstance(report, CheckReport):
        report = _ProblemCallback(report)
    with open_repo.locked_for_call(repo, exclusive=True):
        return _check(repo, options or CheckOptions(), report)


def copy(source: Repository, destination: Repository,
         options: Optional[CopyOptions] = None) -> List[CopyEvent]:
    """Copy snapshots (all, or ``options.snapshot_ids`` / ``options.filter``) from
    ``source`` into ``destination``, skipping those already copied; returns one event per
    step (CopyStarted, SnapshotCopied, SnapshotSkipped)."""
    with open_repo.locked_for_call(source), open_repo.locked_for_call(destination):
        return list(copy_snapshots(open_repo.index_loaded_once(source), open_repo.index_loaded_once(destination), options or CopyOptions()))


def _ignore(message: str) -> None:
    pass


__all__ = [
    "open", "init", "Repository", "backup", "snapshots", "find_snapshot", "restore", "ls", "find",
    "diff", "dump", "read_file", "stats", "forget", "prune", "check", "copy",
    "BackupRequest", "BackupOptions", "BackupProgress", "BackupSummary", "ItemResult",
    "RestoreOptions", "RestoreProgress", "RestoreStats", "LsOptions", "FindOptions", "DiffOptions",
    "DiffStatistics", "Change", "DumpOptions", "DumpResult", "StatsOptions", "Stats",
    "ForgetOptions", "ForgetResult", "KeepPolicy", "PruneOptions", "PrunePlan", "PruneReport",
    "CheckOptions", "CheckReport", "CheckSummary", "Problem", "CopyOptions", "CopyEvent",
    "Snapshot", "SnapshotFilter", "Node", "BackendOptions",
    "RestiqueError", "UsageError", "PasswordError", "NotFound", "IntegrityError",
    "RepositoryNotFound", "LockFailed", "WrongPassword", "AlreadyExists",
]
