"""The backup walk: directories are scanned in one thread, file contents are read by
`--read-concurrency` threads, and a directory's tree blob is written as soon as all its
entries are done (by whichever thread finishes the last one). Unchanged files (same type,
size, mtime, ctime and inode as in the parent snapshot, all blobs present) keep the
parent's content list without being read.
"""
import os
import stat
import threading
import time
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Callable, Dict, List, Optional

from ...errors import RestiqueError
from ...model.gotime import GoTime
from ...model import gojson
from ...model.names import go_unquote
from ...model.node import Node, encode_tree
from ... import _seal
from ...repository.chunker import MIN_SIZE, Chunker
from ..fs_io import open_for_reading
from .file_saver import FileSaver
from .progress import BackupProgress, ItemResult
from .targets import TargetDir
from .reuse import TreeReuse
from .tasks import Gate, Task, WorkerPool

MAX_QUEUED_FILES = 2048
# Files below the chunker's minimum size are one blob each; a directory's small files are
# read and hashed in batches by one native call without the GIL.
BATCH_FILES = 64
BATCH_BYTES = 4 * 1024 * 1024


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


class _DirJob:
    """A directory whose tree can be written once every child is done."""

    __slots__ = ("node", "snap_path", "parent_node", "children", "remaining", "lock", "future", "started")

    def __init__(self, node: Optional[Node], snap_path: str, parent_node: Optional[dict]):
        self.node = node
        self.snap_path = snap_path
        self.parent_node = parent_node
        self.children: List[Future] = []
        self.remaining = 1  # held until all children are added
        self.lock = threading.Lock()
        self.future: Future = Future()
        self.started = time.monotonic()


class _Done:
    """An already finished result with the bit of the Future interface the walk uses;
    far cheaper than a Future for the many entries that need no thread."""

    __slots__ = ("value",)

    def __init__(self, value):
        self.value = value

    def result(self):
        return self.value

    def add_done_callback(self, fn) -> None:
        fn(self)


_done = _Done


class Archiver:
    def __init__(self, repo, options: BackupOptions, progress: Optional[BackupProgress] = None):
        self.repo = repo
        self.opts = options
        self.progress = progress or BackupProgress()
        self.chunker = Chunker(repo.config.chunker_polynomial)
        workers = max(2, os.cpu_count() or 2)
        self.files = FileSaver(repo, self.chunker, self.progress.blob_added, self.progress.bytes_read, workers)
        self.readers = WorkerPool(max(1, options.read_concurrency), "reader")
        self.queued = Gate(MAX_QUEUED_FILES, MAX_QUEUED_FILES // 2)
        self._root_dev: Optional[int] = None
        self._recent_trees: Dict[str, Dict[str, dict]] = {}
        self._batch: list = []
        self._batch_bytes = 0
        self.reuse = TreeReuse(self._parent_children, lambda blob_id: repo.index.has("data", blob_id),
                               options.reject, options.with_atime, options.xattrs, options.one_file_system)

    # --- entry point ---
    def save_targets(self, root: TargetDir, parent_tree: Optional[str]) -> str:
        """Save everything the target tree names; returns the root tree id."""
        try:
            job = self._save_target_dir(root, "", None, parent_tree)
            node = job.future.result()
            return node.subtree
        except BaseException:
            self.files.cancelled.set()
            raise
        finally:
            self._shutdown()

    def save_stream(self, stream, name_parts: List[str], mtime: GoTime) -> str:
        """--stdin: one file named name_parts[-1] below directories name_parts[:-1]."""
        try:
            ids, total, added, stored = self.files.save_stream(stream)
            if not total:
                path = "/" + "/".join(name_parts)
                self.progress.error(path, f"read {path}: no data read")
                raise RestiqueError("unable to save snapshot: snapshot is empty")
            node = Node(name=name_parts[-1], type="file", mode=0o644, mtime=mtime, atime=mtime, ctime=mtime,
                        uid=os.getuid(), gid=os.getgid(), size=total, content=ids)
            self.progress.file_done("/" + "/".join(name_parts), "file",
                                    ItemResult("new", total, stored), total)
            for depth in range(len(name_parts) - 1, 0, -1):
                tree_id = self._save_tree([node], None, "/" + "/".join(name_parts[:depth]) + "/", None)
                node = Node(name=name_parts[depth - 1], type="dir", mode=(1 << 31) | 0o755, mtime=mtime,
                            atime=mtime, ctime=mtime, uid=os.getuid(), gid=os.getgid(), subtree=tree_id)
            return self._save_tree([node], None, "/", None, count=False)
        except BaseException:
            self.files.cancelled.set()
            raise
        finally:
            self._shutdown()

    def _shutdown(self) -> None:
        cancel = self.files.cancelled.is_set()
        self.readers.shutdown(cancel=cancel)
        self.files.shutdown()

    # --- parent snapshot ---
    def _parent_children(self, parent_tree: Optional[str]) -> Dict[str, dict]:
        """The parent's nodes of one directory, as parsed JSON by file name. Kept as JSON:
        comparing stored strings is much cheaper than building nodes. A directory whose
        reuse check failed asks again right after: that answer comes from a small cache."""
        if not parent_tree:
            return {}
        hit = self._recent_trees.pop(parent_tree, None)
        if hit is not None:
            return hit
        children = self._load_parent_children(parent_tree)
        self._recent_trees[parent_tree] = children
        while len(self._recent_trees) > 256:
            self._recent_trees.pop(next(iter(self._recent_trees)))
        return children

    def _load_parent_children(self, parent_tree: str) -> Dict[str, dict]:
        try:
            tree = gojson.loads(self.repo.load_blob("tree", parent_tree))
            return {go_unquote(n.get("name", "")): n for n in tree.get("nodes") or []}
        except (RestiqueError, ValueError, AttributeError):
            return {}  # a damaged parent only costs re-reading

    # --- directories ---
    def _save_target_dir(self, target: TargetDir, snap_path: str, parent_node: Optional[dict],
                         parent_tree: Optional[str]) -> _DirJob:
        node = None
        if target.fs_path is not None:
            # directories on the way to a target are followed when they are symlinks
            st = os.stat(target.fs_path)
            if not stat.S_ISDIR(st.st_mode):
                raise NotADirectoryError(f"path is not a directory: {target.fs_path}")
            node = self._node(snap_path.rpartition("/")[2], target.fs_path, st)
        job = _DirJob(node, snap_path, parent_node)
        old = self._parent_children(parent_tree)
        outer = self._start_batch()
        for name, child in sorted(target.children.items()):
            child_snap = f"{snap_path}/{name}"
            old_node = old.get(name)
            if isinstance(child, TargetDir):
                try:
                    sub = self._save_target_dir(child, child_snap, old_node, old_node.get("subtree") if old_node else None)
                except OSError as exc:
                    self._error(child_snap, exc)
                    continue
                self._add_child(job, sub.future)
            else:
                self._add_child(job, self._save_path(child.fs_path, name, child_snap, old_node,
                                                     is_target=child.explicit))
        self._end_batch(outer)
        self._seal(job)
        return job

    def _save_dir(self, fs_path: str, st: os.stat_result, node: Node, snap_path: str,
                  parent_node: Optional[dict]) -> Future:
        job = _DirJob(node, snap_path, parent_node)
        old = self._parent_children(parent_node.get("subtree") if parent_node and parent_node.get("type") == "dir" else None)
        self._add_dir_entries(job, fs_path, snap_path, old)
        self._seal(job)
        return job.future

    def _add_dir_entries(self, job: _DirJob, fs_path: str, snap_path: str, old: Dict[str, Node]) -> None:
        try:
            with os.scandir(fs_path) as it:
                names = sorted(e.name for e in it)
        except OSError as exc:
            self._error(snap_path or "/", exc, op="open")
            if job.node is not None:
                job.node = None  # an unreadable directory is left out completely
            return
        outer = self._start_batch()
        for name in names:
            child_fs = os.path.join(fs_path, name)
            self._add_child(job, self._save_path(child_fs, name, f"{snap_path}/{name}", old.get(name)))
        self._end_batch(outer)

    # --- batches of small files ---
    def _start_batch(self):
        """A directory collects its own small files; its subdirectories theirs."""
        outer = (self._batch, self._batch_bytes)
        self._batch, self._batch_bytes = [], 0
        return outer

    def _end_batch(self, outer) -> None:
        self._flush_batch()
        self._batch, self._batch_bytes = outer

    def _flush_batch(self) -> None:
        if self._batch:
            batch, self._batch, self._batch_bytes = self._batch, [], 0
            self.queued.enter()
            task = self.readers.submit(self._read_batch, batch)
            task.add_done_callback(lambda _t: self.queued.leave())

    def _queue_small_file(self, fs_path: str, st: os.stat_result, node: Node, snap_path: str,
                          old: Optional[dict]) -> Task:
        slot = Task(None, ())
        self.progress.start_file(snap_path)
        self._batch.append((fs_path, st, node, snap_path, old, slot))
        self._batch_bytes += st.st_size
        if len(self._batch) >= BATCH_FILES or self._batch_bytes >= BATCH_BYTES:
            self._flush_batch()
        return slot

    def _read_batch(self, batch) -> None:
        """Read and hash a batch natively, then save what is new and complete each file."""
        if self.files.cancelled.is_set():
            for *_, slot in batch:
                slot._finish(None)
            return
        started = time.monotonic()
        results = _seal.read_small_files([(os.fsencode(b[0]), b[1].st_ino, b[1].st_size) for b in batch])
        for (fs_path, st, node, snap_path, old, slot), (status, op, data, digest) in zip(batch, results):
            try:
                slot._finish(self._small_file_read(fs_path, st, node, snap_path, old, status, op, data, digest,
                                                   started))
            except BaseException as exc:  # delivered to the directory waiting for it
                slot._finish(exc=exc)

    def _small_file_read(self, fs_path, st, node, snap_path, old, status, op, data, digest, started):
        if status == -2:  # it grew past the size seen: read it the general way
            return self._read_file(fs_path, st, node, snap_path, old)
        if status == -1:
            self._error(snap_path, OSError(f"file {fs_path} changed type or was replaced during backup"))
            return None
        if status:
            self._error(snap_path, OSError(status, os.strerror(status), fs_path), op=op)
            return None
        self.progress.bytes_read(len(data))
        if not data:
            return self._file_read(node, [], 0, 0, 0, snap_path, old, started)
        blob_id = digest.hex()
        _, added, stored = self.files.save_blob(data, blob_id)
        return self._file_read(node, [blob_id], len(data), added, stored, snap_path, old, started)

    def _add_child(self, job: _DirJob, fut: Optional[Future]) -> None:
        if fut is None:
            return
        with job.lock:
            job.remaining += 1
            job.children.append(fut)
        fut.add_done_callback(lambda _f, job=job: self._child_done(job))

    def _seal(self, job: _DirJob) -> None:
        self._child_done(job)

    def _child_done(self, job: _DirJob) -> None:
        with job.lock:
            job.remaining -= 1
            if job.remaining:
                return
        try:
            job.future.set_result(self._finish_dir(job))
        except BaseException as exc:
            job.future.set_exception(exc)

    def _finish_dir(self, job: _DirJob) -> Optional[Node]:
        nodes = []
        for fut in job.children:
            child = fut.result()  # errors inside children were reported already; bugs propagate
            if child is not None:
                nodes.append(child)
        if job.snap_path and job.node is None:
            return None
        if not job.snap_path and not nodes:
            raise RestiqueError("unable to save snapshot: snapshot is empty")
        path = (job.snap_path or "") + "/"
        tree_id = self._save_tree(nodes, job.parent_node, path, job, count=job.node is not None)
        if job.node is None:  # the snapshot root
            return Node(name="", type="dir", subtree=tree_id)
        return job.node

    def _save_tree(self, nodes: List[Node], parent_node: Optional[dict], path: str, job: Optional[_DirJob],
                   count: bool = True) -> str:
        raw = encode_tree(nodes)
        tree_id, new, stored = self.repo.blobs.save("tree", raw)
        if new:
            self.progress.blob_added("tree", len(raw), stored)
        if job is not None and job.node is not None:
            job.node.subtree = tree_id
            node = job.node
        else:
            node = None
        if count:
            action = _action(parent_node, node) if node is not None else "new"
            duration = time.monotonic() - job.started if job else 0.0
            self.progress.file_done(path, "dir", ItemResult(action, 0, 0, len(raw) if new else 0,
                                                            stored if new else 0, duration), 0)
        return tree_id

    # --- single entries ---
    def _node(self, name: str, fs_path: str, st: os.stat_result) -> Node:
        from ..fs_metadata import node_from_stat

        return node_from_stat(name, fs_path, st, self.opts.with_atime, self.opts.xattrs)

    def _save_path(self, fs_path: str, name: str, snap_path: str, old: Optional[dict],
                   is_target: bool = False) -> Optional[Future]:
        try:
            st = os.lstat(fs_path)
        except FileNotFoundError:
            return None  # vanished since the directory was listed
        except OSError as exc:
            self._error(snap_path, exc, during="scan" if is_target else "archival", op="lstat")
            return None
        if stat.S_ISSOCK(st.st_mode):
            return None  # restic does not record sockets
        if self.opts.reject is not None and not is_target and self.opts.reject(snap_path, fs_path, st):
            return None
        try:
            node = self._node(name, fs_path, st)
        except OSError as exc:
            self._error(snap_path, exc)
            return None
        if stat.S_ISDIR(st.st_mode):
            if self._root_dev is None:
                self._root_dev = st.st_dev
            if self.opts.one_file_system and not is_target and st.st_dev != self._mount_dev(fs_path):
                node.subtree = None
                return self._empty_dir(node, snap_path, old)
            if old is not None and old.get("type") == "dir":
                events = self.reuse.events(fs_path, snap_path, old, st.st_dev)
                if events is not None:
                    return self._reused_dir(node, old, events)
            return self._save_dir(fs_path, st, node, snap_path, old)
        if stat.S_ISREG(st.st_mode):
            return self._save_file(fs_path, st, node, snap_path, old)
        return _done(node)  # restic counts neither files nor dirs for these

    def _reused_dir(self, node: Node, old: dict, events) -> _Done:
        """A directory whose content equals the parent's: its subtree id is reused."""
        node.subtree = old["subtree"]
        done = self.progress.file_done
        unchanged = ItemResult("unchanged")
        for path, kind, size in events[:-1]:
            if kind != "other":
                done(path, kind, unchanged, size)
        path = events[-1][0]
        done(path, "dir", ItemResult(_action(old, node)), 0)
        return _done(node)

    def _mount_dev(self, fs_path: str) -> int:
        try:
            return os.lstat(os.path.dirname(fs_path) or ".").st_dev
        except OSError:
            return -1

    def _empty_dir(self, node: Node, snap_path: str, old: Optional[dict]) -> Future:
        job = _DirJob(node, snap_path, old)
        self._seal(job)
        return job.future

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

    def _save_file(self, fs_path: str, st: os.stat_result, node: Node, snap_path: str,
                   old: Optional[dict]) -> Future:
        if self._unchanged(st, node, old):
            node.content = list(old["content"])
            self.progress.file_done(snap_path, "file", ItemResult("unchanged"), node.size)
            return _done(node)
        if st.st_size < MIN_SIZE:
            return self._queue_small_file(fs_path, st, node, snap_path, old)
        self.queued.enter()
        self.progress.start_file(snap_path)
        fut = self.readers.submit(self._read_file, fs_path, st, node, snap_path, old)
        fut.add_done_callback(lambda _f: self.queued.leave())
        return fut

    def _read_file(self, fs_path: str, st: os.stat_result, node: Node, snap_path: str,
                   old: Optional[dict]) -> Optional[Node]:
        if self.files.cancelled.is_set():
            return None
        started = time.monotonic()
        try:
            fd = open_for_reading(fs_path)
        except OSError as exc:
            self._error(snap_path, exc, op="open")
            return None
        try:
            now = os.fstat(fd)
            if not stat.S_ISREG(now.st_mode) or now.st_ino != st.st_ino:
                self._error(snap_path, OSError(f"file {fs_path} changed type or was replaced during backup"))
                return None
            ids, total, added, stored = self.files.read_content(fd, now.st_size)
        except OSError as exc:
            exc.filename = exc.filename or fs_path
            self._error(snap_path, exc, op="read")
            return None
        finally:
            os.close(fd)
        return self._file_read(node, ids, total, added, stored, snap_path, old, started)

    def _file_read(self, node: Node, ids, size: int, added: int, stored: int, snap_path: str,
                   old: Optional[dict], started: float) -> Node:
        """Record a file whose content was read."""
        node.content = ids
        node.size = size
        self.progress.file_done(snap_path, "file",
                                ItemResult(_action(old, node), added, stored, 0, 0, time.monotonic() - started), size)
        return node

    def _error(self, path: str, exc: BaseException, during: str = "archival", op: str = "") -> None:
        """Report a failed entry as restic words it: `open /x: permission denied`."""
        if isinstance(exc, OSError) and exc.strerror:
            message = f"{exc.filename or path}: {exc.strerror[:1].lower()}{exc.strerror[1:]}"
            if op:
                message = f"{op} {message}"
        else:
            message = str(exc)
        self.progress.error(path, message, during)


def _action(old: Optional[dict], new: Node) -> str:
    if old is None:
        return "new"
    # the usual reasons for a difference are decided without encoding the whole node
    if (old.get("size") or 0) != new.size or old.get("mtime") != new.mtime.rfc3339() \
            or old.get("ctime") != new.ctime.rfc3339():
        return "modified"
    return "unchanged" if old == new.to_json() else "modified"
