"""The backup walk: directories are scanned in one thread, file contents are read by
`--read-concurrency` threads, and a directory's tree blob is written as soon as all its
entries are done (by whichever thread finishes the last one). Unchanged files (same type,
size, mtime, ctime and inode as in the parent snapshot, all blobs present) keep the
parent's content list without being read. In a directory that changed, an entry whose every
field equals what the parent recorded is written again as the parent's tree wrote it, when
that tree is in the encoder's own form (parent.entry_texts): no node is built or encoded.

The stages: this module walks and decides what each entry needs; file_reader.py reads a
changed file, small_files.py reads small files in batches, file_saver.py chunks and saves
content, tree_saver.py writes a directory's tree once its entries are done, reuse.py
recognises directories unchanged since the parent snapshot.
"""
import errno
import functools
import os
import stat
import sys
from dataclasses import dataclass
from typing import Callable, Dict, List, Optional

from ...errors import RestiqueError
from ...model.gotime import GoTime
from ...model.node import EncodedNode, Node
from ...repository.chunker import MIN_SIZE, Chunker
from ..fs_metadata import node_from_fields, read_xattrs
from .dir_scan import DirScans
from .file_reader import FileReader, PendingFile
from .file_saver import FileSaver
from .parent import ParentTrees, entry_texts
from .progress import BackupProgress, ItemResult, item_action, report_error
from .reuse import TreeReuse
from .small_files import SmallFileBatches
from .targets import TargetDir
from .tasks import Completion, Gate, WorkerPool, finished
from .tree_saver import DirJob, TreeSaver

MAX_QUEUED_FILES = 2048
_UNCHANGED = ItemResult("unchanged")


@dataclass
class BackupOptions:
    read_concurrency: int = 2
    with_atime: bool = False
    ignore_ctime: bool = False
    ignore_inode: bool = False
    # reject(snapshot path, fs path, lstat result) -> True to leave the entry out
    reject: Optional[Callable[[str, str, os.stat_result], bool]] = None
    one_file_system: bool = False
    xattrs: bool = True


@dataclass
class BackupResult:
    tree_id: str
    progress: BackupProgress


class Archiver:
    def __init__(self, repo, options: BackupOptions, progress: Optional[BackupProgress] = None):
        self.repo = repo
        self.opts = options
        self.progress = progress or BackupProgress()
        self.chunker = Chunker(repo.config.chunker_polynomial)
        workers = max(2, os.cpu_count() or 2)
        self.saver = FileSaver(repo, self.chunker, self.progress.blob_added, self.progress.bytes_read, workers)
        self.readers = WorkerPool(max(1, options.read_concurrency), "reader")
        self.queued = Gate(MAX_QUEUED_FILES, MAX_QUEUED_FILES // 2)
        self.trees = TreeSaver(repo, self.progress)
        self.reader = FileReader(self.saver, self.progress)
        self.small_files = SmallFileBatches(self.reader, self.saver, self.readers, self.queued, self.progress,
                                            self.trees)
        self.parents = ParentTrees(repo)
        self.scans = DirScans(options.xattrs)
        self.reuse = TreeReuse(self.parents, functools.partial(repo.index.has, "data"),
                               self.scans, options.reject, options.with_atime, options.xattrs, options.one_file_system,
                               self.progress.wants_items())
        self._root_dev: Optional[int] = None
        self.root_parent_tree: Optional[str] = None  # the parent's root tree, for checkpoints

    # --- entry points ---
    def save_targets(self, root: TargetDir, parent_tree: Optional[str]) -> str:
        """Save everything the target tree names; returns the root tree id."""
        self.root_parent_tree = parent_tree
        _allow_deep_trees()
        try:
            job = self._save_target_dir(root, "", None, parent_tree)
            node = job.done.wait()
            return node.subtree
        except BaseException:
            self.saver.cancelled.set()
            raise
        finally:
            self._shutdown()

    def save_stream(self, stream, name_parts: List[str], mtime: GoTime) -> str:
        """--stdin: one file named name_parts[-1] below directories name_parts[:-1]."""
        try:
            ids, total, added, stored = self.saver.save_stream(stream)
            if not total:
                path = "/" + "/".join(name_parts)
                self.progress.error(path, f"read {path}: no data read")
                raise RestiqueError("unable to save snapshot: snapshot is empty")
            node = Node(name=name_parts[-1], type="file", mode=0o644, mtime=mtime, atime=mtime, ctime=mtime,
                        uid=os.getuid(), gid=os.getgid(), size=total, content=ids)
            self.progress.file_done("/" + "/".join(name_parts), "file",
                                    ItemResult("new", total, stored), total)
            for depth in range(len(name_parts) - 1, 0, -1):
                tree_id = self.trees.save_tree([node], "/" + "/".join(name_parts[:depth]) + "/")
                node = Node(name=name_parts[depth - 1], type="dir", mode=(1 << 31) | 0o755, mtime=mtime,
                            atime=mtime, ctime=mtime, uid=os.getuid(), gid=os.getgid(), subtree=tree_id)
            return self.trees.save_tree([node], "/", count=False)
        except BaseException:
            self.saver.cancelled.set()
            raise
        finally:
            self._shutdown()

    def _shutdown(self) -> None:
        cancel = self.saver.cancelled.is_set()
        self.readers.shutdown(cancel=cancel)
        self.saver.shutdown()

    # --- directories ---
    def _save_target_dir(self, target: TargetDir, snap_path: str, parent_node: Optional[dict],
                         parent_tree: Optional[str]) -> DirJob:
        node = None
        if target.fs_path is not None:
            # directories on the way to a target are followed when they are symlinks
            st = os.stat(target.fs_path)
            if not stat.S_ISDIR(st.st_mode):
                raise NotADirectoryError(f"path is not a directory: {target.fs_path}")
            node = self._node(snap_path.rpartition("/")[2], target.fs_path, st, None)
        job = self.trees.open_dir(node, snap_path, parent_node)
        old = self.parents.children(parent_tree)
        outer = self.small_files.start_dir(job)
        for name, child in sorted(target.children.items()):
            child_snap = f"{snap_path}/{name}"
            old_node = old.get(name)
            if isinstance(child, TargetDir):
                try:
                    sub = self._save_target_dir(child, child_snap, old_node, old_node.get("subtree") if old_node else None)
                except OSError as exc:
                    report_error(self.progress, child_snap, exc)
                    continue
                self.trees.add_child(job, sub.done)
            else:
                self.trees.add_child(job, self._save_path(child.fs_path, name, child_snap, old_node,
                                                          is_target=child.explicit))
        self.small_files.end_dir(outer)
        self.trees.release_dir(job)
        return job

    def _save_dir(self, fs_path: str, node: Node, snap_path: str, parent_node: Optional[dict]) -> Completion:
        job = self.trees.open_dir(node, snap_path, parent_node)
        old = self.parents.children(parent_node.get("subtree") if parent_node and parent_node.get("type") == "dir" else None)
        self._add_dir_entries(job, fs_path, snap_path, old)
        self.trees.release_dir(job)
        return job.done

    def _add_dir_entries(self, job: DirJob, fs_path: str, snap_path: str, old: Dict[str, dict]) -> None:
        try:
            entries = self.scans.take(fs_path)
        except OSError as exc:
            report_error(self.progress, snap_path or "/", exc, op="open")
            if job.node is not None:
                job.node = None  # an unreadable directory is left out completely
            return
        outer = self.small_files.start_dir(job)
        add_child, save_entry = self.trees.add_child, self._save_entry
        fs_prefix = fs_path if fs_path.endswith("/") else fs_path + "/"  # os.path.join's result
        snap_prefix = snap_path + "/"
        texts = entry_texts(old)
        taken: List[Node] = []
        for name, err, st, link, xattrs in entries:
            child_fs, child_snap = fs_prefix + name, snap_prefix + name
            if err:
                if err != errno.ENOENT:  # ENOENT: vanished since the directory was listed
                    report_error(self.progress, child_snap, OSError(err, os.strerror(err), child_fs), op="lstat")
                continue
            text = texts.get(name) if texts is not None else None
            if text is None or stat.S_ISDIR(st.st_mode):
                add_child(job, save_entry(child_fs, name, child_snap, old.get(name), st, (link, xattrs)))
            elif not self._left_out(child_snap, child_fs, st):
                # the parent wrote this entry as the encoder writes it: when a node made now
                # would equal it field for field, its text is written again as it is
                o = old.get(name)
                if o is not None and self.reuse.same(o, st, link, xattrs):
                    taken.append(EncodedNode.of(o, text))
                    if stat.S_ISREG(st.st_mode):
                        self.progress.file_done(child_snap, "file", _UNCHANGED, st.st_size)
                else:
                    add_child(job, self._save_kept_entry(child_fs, name, child_snap, o, st, (link, xattrs)))
        if taken:
            self.trees.add_done(job, taken)
        self.small_files.end_dir(outer)

    def _reused_dir(self, node: Node, old: dict, reused, snap_path: str) -> Completion:
        """A directory whose content equals the parent's: its subtree id is reused."""
        node.subtree = old["subtree"]
        self.progress.unchanged_items(reused.files, reused.dirs, reused.size, reused.items or ())
        self.progress.file_done(snap_path + "/", "dir", ItemResult(item_action(old, node)), 0)
        return finished(node)

    def _empty_dir(self, node: Node, snap_path: str, old: Optional[dict]) -> Completion:
        job = self.trees.open_dir(node, snap_path, old)
        self.trees.release_dir(job)
        return job.done

    def _mount_dev(self, fs_path: str) -> int:
        try:
            return os.lstat(os.path.dirname(fs_path) or ".").st_dev
        except OSError:
            return -1

    # --- single entries ---
    def _save_path(self, fs_path: str, name: str, snap_path: str, old: Optional[dict],
                   is_target: bool = False) -> Optional[Completion]:
        """Start saving one entry named on the command line; None when it is left out."""
        try:
            st = os.lstat(fs_path)
        except FileNotFoundError:
            return None  # vanished since the directory was listed
        except OSError as exc:
            report_error(self.progress, snap_path, exc, during="scan" if is_target else "archival", op="lstat")
            return None
        return self._save_entry(fs_path, name, snap_path, old, st, None, is_target)

    def _read_extras(self, fs_path: str, st) -> tuple:
        """(symlink target, extended attributes) of an entry that was not scanned."""
        link = os.readlink(os.fsencode(fs_path)) if stat.S_ISLNK(st.st_mode) else None
        return link, read_xattrs(fs_path) if self.opts.xattrs else None

    def _node(self, name: str, fs_path: str, st, extras: Optional[tuple]) -> Node:
        link, xattrs = extras if extras is not None else self._read_extras(fs_path, st)
        if type(link) is int:
            raise OSError(link, os.strerror(link), fs_path)  # readlink failed in the scan
        return node_from_fields(name, st, os.fsdecode(link) if link is not None else None, xattrs,
                                self.opts.with_atime)

    def _left_out(self, snap_path: str, fs_path: str, st, is_target: bool = False) -> bool:
        """Whether an entry is not saved at all: a socket (restic does not record them), or
        excluded."""
        return stat.S_ISSOCK(st.st_mode) or \
            (self.opts.reject is not None and not is_target and self.opts.reject(snap_path, fs_path, st))

    def _save_entry(self, fs_path: str, name: str, snap_path: str, old: Optional[dict], st,
                    extras: Optional[tuple], is_target: bool = False) -> Optional[Completion]:
        """Start saving one entry from its lstat fields (and, when scanned, its symlink
        target and extended attributes); None when it is left out or is a small file, which
        the directory's batch delivers."""
        if self._left_out(snap_path, fs_path, st, is_target):
            return None
        return self._save_kept_entry(fs_path, name, snap_path, old, st, extras, is_target)

    def _save_kept_entry(self, fs_path: str, name: str, snap_path: str, old: Optional[dict], st,
                         extras: Optional[tuple], is_target: bool = False) -> Optional[Completion]:
        """_save_entry of an entry that is not left out."""
        try:
            node = self._node(name, fs_path, st, extras)
        except OSError as exc:
            report_error(self.progress, snap_path, exc)
            return None
        if stat.S_ISDIR(st.st_mode):
            if self._root_dev is None:
                self._root_dev = st.st_dev
            if self.opts.one_file_system and not is_target and st.st_dev != self._mount_dev(fs_path):
                node.subtree = None
                return self._empty_dir(node, snap_path, old)
            if old is not None and old.get("type") == "dir":
                reused = self.reuse.events(fs_path, snap_path, old, st.st_dev)
                if reused is not None:
                    return self._reused_dir(node, old, reused, snap_path)
            return self._save_dir(fs_path, node, snap_path, old)
        if stat.S_ISREG(st.st_mode):
            return self._save_file(fs_path, st, node, snap_path, old)
        return finished(node)  # restic counts neither files nor dirs for these

    # --- files ---
    def _save_file(self, fs_path: str, st: os.stat_result, node: Node, snap_path: str,
                   old: Optional[dict]) -> Optional[Completion]:
        if self._unchanged(st, node, old):
            node.content = list(old["content"])
            self.progress.file_done(snap_path, "file", _UNCHANGED, node.size)
            return finished(node)
        entry = PendingFile(fs_path, st, node, snap_path, old)
        if st.st_size < MIN_SIZE:
            return self.small_files.add(entry)
        self.queued.enter()
        self.progress.start_file(snap_path)
        done = self.readers.submit(self.reader.read_and_save_file, entry)
        done.add_done_callback(lambda _d: self.queued.leave())
        return done

    def _unchanged(self, st: os.stat_result, node: Node, old: Optional[dict]) -> bool:
        """restic's test: same type, size, mtime, ctime and inode, and every blob still there.
        Times are compared as the text both sides store."""
        if old is None or old.get("type") != "file" or old.get("content") is None:
            return False
        if (old.get("size") or 0) != st.st_size or old.get("mtime") != node.mtime.rfc3339():
            return False
        if not self.opts.ignore_ctime and old.get("ctime") != node.ctime.rfc3339():
            return False
        if not self.opts.ignore_inode and (old.get("inode") or 0) != st.st_ino:
            return False
        index = self.repo.index
        return all(index.has("data", blob_id) for blob_id in old["content"])


# The walk recurses about three calls per directory level; a path may have up to 2,048 levels
# (PATH_MAX). Python 3.11 keeps Python-to-Python calls off the C stack, so a higher limit is safe.
_DEEPEST_WALK = 3 * 2048 + 1000


def _allow_deep_trees() -> None:
    if sys.getrecursionlimit() < _DEEPEST_WALK:
        sys.setrecursionlimit(_DEEPEST_WALK)
