"""Step 1 of a restore, the first walk (restic's restorer.go): create the directories, decide
for every entry what the overwrite mode allows, look at existing files (which of their blobs
already hold the right content), and list the files whose content must be written."""
import hashlib
import os
import stat
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional, Tuple

from ...model.node import Node
from ..fs_io import open_for_reading
from ..walker import join
from .options import RestoreOptions
from .recording import CONTENT_DONE, CONTENT_PENDING, FinishRecording
from .report import FILE_RESTORED, FILE_UPDATED, RestoreReport
from .traverse import TreeTraversal


class PlannedFile:
    """A regular file whose content is restored; the content steps keep its state here.

    Its paths are not stored: a file keeps its directory's (location, target) pair, which
    all files of the directory share with the finish recording, and its name, which the
    recording holds too (two path strings per file were most of a large restore's plan)."""

    __slots__ = ("directory", "name", "size", "_content", "matches", "fresh", "sparse",
                 "remaining", "failed", "created", "action", "record")

    def __init__(self, directory, name, size, content, matches, fresh, record=-1):
        self.directory = directory  # (location, target) of the directory holding it
        self.name = name
        self.record = record  # its number in the finish recording
        self.size = size
        self._content = bytes.fromhex("".join(content))  # 32 bytes per blob id: compact
        self.matches = matches  # per blob: does the existing file hold it already (or None)
        self.fresh = fresh  # its directory was created by this restore
        self.sparse = False
        self.remaining = 0  # blobs still to write
        self.failed = False
        self.created = False
        self.action = FILE_RESTORED if matches is None else FILE_UPDATED

    @property
    def location(self) -> str:
        """Its snapshot path, as errors and progress name it."""
        return join(self.directory[0], self.name)

    @property
    def target(self) -> str:
        """Where it is restored."""
        return join(self.directory[1], self.name)

    @property
    def content(self) -> List[str]:
        raw = self._content
        return [raw[i:i + 32].hex() for i in range(0, len(raw), 32)]

    @property
    def raw_content(self) -> bytes:
        """The blob ids, 32 bytes each."""
        return self._content


class _Matches(list):
    """Per-blob match flags of an existing file, plus whether its size is right."""

    size_ok = True


@dataclass
class RestorePlan:
    """What the first walk found; the content and finish steps work from it."""

    # content to write; with on_files and keep_files False only those not handed on yet
    files: List[PlannedFile] = field(default_factory=list)
    # other entries (and hard links) the overwrite mode leaves alone
    skipped: set = field(default_factory=set)
    # (device, inode) -> (location, target) of the first of a file's hard links
    hardlinks: Dict[Tuple[int, int], Tuple[str, str]] = field(default_factory=dict)
    # directories this run created: nothing to overwrite in them
    fresh_dirs: set = field(default_factory=set)
    # the walk's events the finish step replays
    recording: Optional[FinishRecording] = None


FIRST_BATCH = 256  # files handed on first; each later batch is twice as large, up to
MAX_BATCH = 4096  # (a pack that two batches need is read twice: few, large batches)


def new_recording(traversal: TreeTraversal, options: RestoreOptions) -> FinishRecording:
    """What the plan walk records for the finish step of this restore."""
    return FinishRecording(traversal.target, options.ownership_by_name, options.delete)


def plan_restore(traversal: TreeTraversal, options: RestoreOptions, index, report: RestoreReport,
                 on_files: Optional[Callable[[List[PlannedFile]], None]] = None,
                 keep_files: bool = True, recording: Optional[FinishRecording] = None) -> RestorePlan:
    """The first walk. on_files, if given, receives the files to write in batches while the
    walk goes on (every file once, the last batch when the walk ends); unless keep_files,
    plan.files lets go of them then (a file lives while its content is written). recording:
    where the walk is recorded (new_recording() if not given), plan.recording then."""
    planner = _Planner(options, index, report, traversal.target, on_files, keep_files)
    recording = planner.recording = planner.plan.recording = recording or new_recording(traversal, options)

    def visit_node(node: Node, target: str, location: str, parent: str) -> None:
        planner.visit_node(node, target, location, parent, recording.visit(node, target, location, parent))

    traversal.walk(planner.enter_dir, visit_node, recording.leave, recording.error)
    planner.hand_on()
    return planner.plan


class _Planner:
    def __init__(self, options: RestoreOptions, index, report: RestoreReport, root: str,
                 on_files: Optional[Callable[[List[PlannedFile]], None]], keep_files: bool):
        self.root = root  # the restore target: the only directory trusted as it is
        self.overwrite = options.overwrite
        self.dry_run = options.dry_run
        self.index = index
        self.report = report
        self.plan = RestorePlan()
        self.recording: Optional[FinishRecording] = None  # set by plan_restore
        self._ensured: set = set()
        self._on_files = on_files
        self._keep_files = keep_files or on_files is None
        self._handed = 0  # plan.files[:_handed] went to on_files
        self._batch = FIRST_BATCH

    def hand_on(self) -> None:
        """Give on_files the files planned since the last batch."""
        files = self.plan.files
        if self._on_files is not None and len(files) > self._handed:
            batch = files[self._handed:]
            if self._keep_files:
                self._handed = len(files)
            else:
                files.clear()
            self._batch = min(2 * self._batch, MAX_BATCH)
            self._on_files(batch)

    def enter_dir(self, node: Node, target: str, location: str) -> None:
        self.report.planned(0)
        self._ensure_dir(target)

    def visit_node(self, node: Node, target: str, location: str, parent: str, directory: tuple) -> None:
        """Plan one entry of the directory directory ((location, target)); the recording is
        told of a regular file whose metadata the finish step sets (its content written or right)."""
        self._ensure_dir(parent)
        plan, report = self.plan, self.report
        fresh = parent in plan.fresh_dirs
        if node.type == "file" and node.links > 1 and node.inode:  # no inode: can't tell links apart
            key = (node.device_id, node.inode)
            if key in plan.hardlinks:  # restored as a link to the first one
                if self._should_overwrite(node, target, fresh):
                    report.planned(0)
                else:
                    plan.skipped.add(location)
                    report.skipped(location, 0)
                return
            plan.hardlinks[key] = (location, target)
        if node.type != "file":
            if self._should_overwrite(node, target, fresh):
                report.planned(0)
            else:
                plan.skipped.add(location)
                report.skipped(location, node.size)
            return
        if not self._should_overwrite(node, target, fresh):
            report.skipped(location, node.size)
            return
        matches = None if fresh else self._existing_content(node, target)
        if matches is not None and matches.size_ok and all(matches):
            report.skipped(location, node.size)
            self.recording.finish_content()
            return
        report.planned(node.size)
        # pending (before the writers may see it) until the writers tell otherwise
        record = self.recording.finish_content(CONTENT_DONE if self.dry_run else CONTENT_PENDING)
        plan.files.append(PlannedFile(directory, node.name, node.size, node.content or [], matches, fresh,
                                      record))
        if len(plan.files) - self._handed >= self._batch:
            self.hand_on()

    def _ensure_dir(self, path: str) -> None:
        """Make path a real directory, checking every level below the restore target: a
        symlink left in the target (by an earlier restore, or by someone else) must not
        take what is restored below it somewhere else."""
        if self.dry_run or path in self._ensured:
            return
        missing = []  # path and its ancestors not checked yet, deepest first
        while path not in self._ensured:
            missing.append(path)
            if path == self.root or os.path.dirname(path) == path:
                break
            path = os.path.dirname(path)
        for path in reversed(missing):
            if path == self.root or os.path.dirname(path) == path:
                os.makedirs(path, 0o700, exist_ok=True)  # the user's target: followed if a symlink
            elif os.path.dirname(path) in self.plan.fresh_dirs:
                self._make_dir(path)  # nothing there yet: no need to look
            else:
                try:
                    st = os.lstat(path)
                except FileNotFoundError:
                    self._make_dir(path)
                else:
                    if not stat.S_ISDIR(st.st_mode):
                        os.unlink(path)  # a file or symlink where the snapshot has a directory
                        self._make_dir(path)
            self._ensured.add(path)

    def _make_dir(self, path: str) -> None:
        os.mkdir(path, 0o700)
        self.plan.fresh_dirs.add(path)

    def _should_overwrite(self, node: Node, target: str, fresh: bool) -> bool:
        if fresh or self.overwrite in ("always", "if-changed"):
            return True
        try:
            st = os.lstat(target)
        except FileNotFoundError:
            return True
        if self.overwrite == "if-newer":
            return node.mtime.unix_ns > st.st_mtime_ns
        return False

    def _existing_content(self, node: Node, target: str) -> Optional[_Matches]:
        """Which blobs an existing regular file at target already holds, or None if there is
        nothing usable there (missing, not a regular file, or hard linked elsewhere)."""
        try:
            fd = open_for_reading(target)
        except OSError:
            return None
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode) or st.st_nlink > 1:
                return None
            content = node.content or []
            matches = _Matches([False] * len(content))
            matches.size_ok = st.st_size == node.size
            if self.overwrite == "if-changed" and matches.size_ok and st.st_mtime_ns == node.mtime.unix_ns:
                matches[:] = [True] * len(content)  # trusted: same size and mtime
                return matches
            offset = 0
            for i, blob_id in enumerate(content):
                loc = self.index.lookup("data", blob_id)
                if loc is None:
                    break
                data = os.pread(fd, loc.size, offset)
                if len(data) < loc.size:
                    break
                matches[i] = hashlib.sha256(data).hexdigest() == blob_id
                offset += loc.size
            return matches
        finally:
            os.close(fd)
