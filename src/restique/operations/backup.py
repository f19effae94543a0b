"""A whole backup run: choose the parent, save the targets, write the snapshot."""
import getpass
import os
import socket
from dataclasses import dataclass, field
from typing import List, Optional

from ..errors import RestiqueError, UsageError
from ..model.gotime import GoTime
from ..model.snapshot import Snapshot, new_summary
from .archiver import Archiver, BackupOptions, BackupProgress
from .archiver.parent import find_parent
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
               on_parent=None) -> BackupOutcome:
    """Back up req.paths (or req.stdin) into repo. on_parent(parent_id or None) is called
    once the parent is known, before files are read."""
    progress = progress or BackupProgress()
    start = GoTime.now()
    snap_time = req.time or start
    hostname = req.hostname or socket.gethostname()  # an empty --host means this machine, as in restic
    repo.load_index()
    repo.blobs.dry_run = req.dry_run
    archiver = Archiver(repo, req.options, progress)

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
            parent_id = req.parent or find_parent(repo, hostname, paths, snap_time)
        if on_parent:
            on_parent(parent_id)
        parent_tree = repo.load_json("snapshot", parent_id).get("tree") if parent_id else None
        tree = archiver.save_targets(build_target_tree(req.paths), parent_tree)
        if req.skip_if_unchanged and parent_tree == tree:
            repo.flush()
            now = GoTime.now()
            return BackupOutcome(None, parent_id, tree, progress, start, now, None, skipped=True)

    repo.flush()
    end = GoTime.now()
    stats = progress.stats
    snapshot = Snapshot(
        time=snap_time, parent=parent_id, tree=tree, paths=paths, hostname=hostname,
        username=_username(), uid=os.getuid(), gid=os.getgid(), excludes=list(req.excludes),
        tags=list(req.tags), program_version=PROGRAM_VERSION,
        summary=new_summary(
            start, end,
            files_new=stats.files.new, files_changed=stats.files.changed,
            files_unmodified=stats.files.unmodified, dirs_new=stats.dirs.new,
            dirs_changed=stats.dirs.changed, dirs_unmodified=stats.dirs.unmodified,
            data_blobs=stats.data_blobs, tree_blobs=stats.tree_blobs, data_added=stats.data_added,
            data_added_packed=stats.data_added_packed, total_files_processed=stats.files_processed,
            total_bytes_processed=stats.bytes_processed))
    if not req.dry_run:
        snapshot.id = repo.save_json("snapshot", snapshot.to_json(with_id=False))
    return BackupOutcome(snapshot.id or None, parent_id, tree, progress, start, end, snapshot)
