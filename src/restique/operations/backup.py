"""A whole backup run: choose the parent, save the targets, write the snapshot."""
import getpass
import os
import socket
from dataclasses import dataclass, field
from typing import List, Optional

from ..errors import RestiqueError, UsageError
from ..model.gotime import GoTime
from ..model.snapshot_group import GroupBy
from ..model.snapshot import Snapshot, new_summary
from .allocator import return_large_buffers
from .archiver import Archiver, BackupOptions, BackupProgress
from .archiver.checkpoint import CHECKPOINT_INTERVAL, Checkpoints
from .archiver.parent import PARENT_GROUP, find_parent
from .archiver.prescan import Prescan
from .archiver.resume_record import ResumeRecord, ResumeRecords
from .archiver.targets import absolute_paths, build_target_tree, path_components

PROGRAM_VERSION = "restique 0.1.0"


@dataclass
class BackupRequest:
    paths: List[str] = field(default_factory=list)
    tags: List[str] = field(default_factory=list)
    hostname: Optional[str] = None
    time: Optional[GoTime] = None
    parent: Optional[str] = None  # full snapshot id; None = find one
    force: bool = False
    dry_run: bool = False
    skip_if_unchanged: bool = False  # no snapshot when the tree equals the parent's
    excludes: List[str] = field(default_factory=list)  # recorded in the snapshot
    stdin: object = None  # a binary stream for --stdin
    stdin_filename: str = "stdin"
    options: BackupOptions = field(default_factory=BackupOptions)
    # where checkpoints of interrupted backups are recorded (the cache); None: no resuming
    resume_folder: Optional[str] = None
    checkpoint_interval: float = CHECKPOINT_INTERVAL  # seconds; 0: only when interrupted
    # folders scanned while the repository was opened (archiver.prescan.Prescan), or None
    prescan: Optional[Prescan] = None
    group_by: GroupBy = PARENT_GROUP  # which snapshots the parent is found among


@dataclass
class BackupOutcome:
    snapshot_id: Optional[str]  # None for a dry run
    parent: Optional[str]
    tree: str
    progress: BackupProgress
    started: GoTime
    ended: GoTime
    snapshot: Optional[Snapshot]  # None when skipped
    skipped: bool = False  # --skip-if-unchanged found nothing new


def _username() -> str:
    try:
        return getpass.getuser()
    except Exception:
        return ""


def existing_targets(paths: List[str], warn) -> List[str]:
    """The paths that exist (a missing one is only a warning, as in restic)."""
    found = []
    for p in paths:
        if os.path.lexists(p):
            found.append(p)
        else:
            warn(f"{p} does not exist, skipping")
    if not found:
        raise RestiqueError("all target directories/files do not exist")
    return found


def run_backup(repo, req: BackupRequest, progress: Optional[BackupProgress] = None,
               on_parent=None, on_resume=None) -> BackupOutcome:
    """Back up req.paths (or req.stdin) into repo. on_parent(parent_id or None) is called
    once the parent is known, before files are read; on_resume(ResumeRecord) when an
    interrupted backup's checkpoint is used as well."""
    progress = progress or BackupProgress()
    start = GoTime.now()
    snap_time = req.time or start
    hostname = req.hostname or socket.gethostname()  # an empty --host means this machine, as in restic
    # file contents, trees and index files freed by the threads would otherwise raise glibc's
    # thresholds and stay in their heaps: 117-133 MiB instead of 104-111 at 200,000 files
    return_large_buffers()
    repo.load_index()
    repo.blobs.dry_run = req.dry_run
    archiver = Archiver(repo, req.options, progress)
    records = ResumeRecords(req.resume_folder, repo.key) if req.resume_folder and req.stdin is None else None

    if req.stdin is not None:
        parts = path_components(req.stdin_filename)  # restic: path.Join("/", name)
        if not parts:
            raise UsageError(f'invalid --stdin-filename "{req.stdin_filename}": it must name a file')
        paths = ["/" + "/".join(parts)]
        parent_id = None
        if on_parent:
            on_parent(None)
        tree = archiver.save_stream(req.stdin, parts, snap_time)
    else:
        paths = absolute_paths(req.paths)
        parent_id = None
        if not req.force:
            parent_id = req.parent or find_parent(repo, hostname, paths, snap_time, req.tags, req.group_by)
        if on_parent:
            on_parent(parent_id)
        parent = repo.load_json("snapshot", parent_id) if parent_id else None
        resumed = _resume_record(repo, req, records, hostname, paths, parent)
        if resumed and on_resume:
            on_resume(resumed)
        parent_tree = resumed.tree if resumed else parent.get("tree") if parent else None
        tree = _save_targets(repo, archiver, req, parent_tree, records and (
            lambda tree_id: records.save(hostname, paths, tree_id)))
        if req.skip_if_unchanged and parent and parent.get("tree") == tree:
            repo.flush()
            if records:
                records.remove(hostname, paths)
            now = GoTime.now()
            return BackupOutcome(None, parent_id, tree, progress, start, now, None, skipped=True)

    repo.flush()
    end = GoTime.now()
    snapshot = Snapshot(
        time=snap_time, parent=parent_id, tree=tree, paths=paths, hostname=hostname,
        username=_username(), uid=os.getuid(), gid=os.getgid(), excludes=list(req.excludes),
        tags=list(req.tags), program_version=PROGRAM_VERSION, summary=_summary(progress.stats, start, end))
    if not req.dry_run:
        snapshot.id = repo.save_json("snapshot", snapshot.to_json(with_id=False))
        if records:
            records.remove(hostname, paths)  # complete now: the checkpoint has served
    return BackupOutcome(snapshot.id or None, parent_id, tree, progress, start, end, snapshot)


def _summary(stats, start: GoTime, end: GoTime) -> dict:
    return new_summary(
        start, end,
        files_new=stats.files.new, files_changed=stats.files.changed,
        files_unmodified=stats.files.unmodified, dirs_new=stats.dirs.new,
        dirs_changed=stats.dirs.changed, dirs_unmodified=stats.dirs.unmodified,
        data_blobs=stats.data_blobs, tree_blobs=stats.tree_blobs, data_added=stats.data_added,
        data_added_packed=stats.data_added_packed, total_files_processed=stats.files_processed,
        total_bytes_processed=stats.bytes_processed)


def _resume_record(repo, req: BackupRequest, records: Optional[ResumeRecords], hostname: str,
                   paths: List[str], parent: Optional[dict]) -> Optional[ResumeRecord]:
    """The checkpoint of an interrupted backup of these paths, when it is newer than the
    parent (it holds the parent's entries it had not reached) and its tree is stored.
    --force and --parent ask for something else."""
    if records is None or req.force or req.parent:
        return None
    record = records.load(hostname, paths)
    if record is None or not repo.index.has("tree", record.tree):
        return None
    if parent is not None and GoTime.parse(parent.get("time", "")).unix_ns >= record.written_ns:
        return None
    return record


def _save_targets(repo, archiver: Archiver, req: BackupRequest, parent_tree: Optional[str], record) -> str:
    """archiver.save_targets with checkpoints: periodic ones, and one after an interruption
    (the readers have stopped by then), so that the next backup resumes."""
    if req.prescan is not None:
        archiver.scans.use_prescanned(req.prescan.finish())
    checkpoints = Checkpoints(repo, archiver, record, 0 if req.dry_run else req.checkpoint_interval)
    checkpoints.start()
    try:
        return archiver.save_targets(build_target_tree(req.paths), parent_tree)
    except BaseException:
        checkpoints.stop()
        if not req.dry_run:
            try:
                checkpoints.write()
            except BaseException:
                pass  # a second Ctrl-C or a failing repository: the first error is what counts
        raise
    finally:
        checkpoints.stop()
