"""Directory jobs: a directory's tree blob is written as soon as all its entries are done,
by whichever thread finishes the last one (the walker itself, a reader, a batch)."""
import threading
import time
from typing import Dict, List, Optional

from ...errors import RestiqueError
from ...model.node import Node, encode_tree
from .progress import BackupProgress, ItemResult, item_action
from .tasks import Completion, Slot, finished


class DirJob:
    """A directory whose tree can be written once every child is done. `done` completes
    with its node (None if it is left out), or the snapshot root's node."""

    __slots__ = ("node", "snap_path", "parent_node", "children", "remaining", "lock", "done", "started")

    def __init__(self, node: Optional[Node], snap_path: str, parent_node: Optional[dict]):
        self.node = node  # None for the snapshot root, or once the directory is left out
        self.snap_path = snap_path
        self.parent_node = parent_node
        self.children: List[Completion] = []  # or Slots, filled in by a child batch task
        self.remaining = 1  # the walker's hold, released once all children are added
        self.lock = threading.Lock()
        self.done = Completion()
        self.started = time.monotonic()


class TreeSaver:
    def __init__(self, repo, progress: BackupProgress):
        self.repo = repo
        self.progress = progress
        self.open_jobs: Dict[str, DirJob] = {}  # directories not written yet, by path (checkpoints)
        self.root_job: Optional[DirJob] = None  # the snapshot root's, kept once written (checkpoints)

    def open_dir(self, node: Optional[Node], snap_path: str, parent_node: Optional[dict]) -> DirJob:
        """A new directory job; it stays in open_jobs until its tree is written."""
        job = DirJob(node, snap_path, parent_node)
        self.open_jobs[snap_path] = job
        if not snap_path:
            self.root_job = job
        return job

    def add_child(self, job: DirJob, child: Optional[Completion]) -> None:
        """Make the directory wait for child (None: the entry is left out)."""
        if child is None:
            return
        with job.lock:
            job.remaining += 1
            job.children.append(child)
        child.add_done_callback(lambda _c, job=job: self._child_done(job))

    def add_done(self, job: DirJob, nodes: List[Node]) -> None:
        """Children whose nodes are known already."""
        with job.lock:  # a checkpoint copies the children meanwhile
            job.children.extend(map(finished, nodes))

    def add_slot(self, job: DirJob, slot: Slot) -> None:
        """A child that a batch fills in: the directory waits for the batch (hold), not for
        each of its slots."""
        with job.lock:  # a checkpoint copies the children meanwhile
            job.children.append(slot)

    def hold(self, job: DirJob) -> None:
        """Make the directory wait for one more batch, until release(job)."""
        with job.lock:
            job.remaining += 1

    def release(self, job: DirJob) -> None:
        """A batch filled in its slots (or the walker added every child)."""
        self._child_done(job)

    def release_dir(self, job: DirJob) -> None:
        """The walker added every child: the tree is written when the last one is done."""
        self._child_done(job)

    def _child_done(self, job: DirJob) -> None:
        with job.lock:
            job.remaining -= 1
            if job.remaining:
                return
        try:
            job.done.complete(self._finish_dir(job))
        except BaseException as exc:
            job.done.fail(exc)
        self.open_jobs.pop(job.snap_path, None)  # after completing: a checkpoint always sees it

    def _finish_dir(self, job: DirJob) -> Optional[Node]:
        nodes = []
        for child in job.children:
            node = child.result()  # errors inside children were reported already; bugs propagate
            if node is not None:
                nodes.append(node)
        if job.snap_path and job.node is None:
            return None
        if not job.snap_path and not nodes:
            raise RestiqueError("unable to save snapshot: snapshot is empty")
        path = (job.snap_path or "") + "/"
        tree_id = self.save_tree(nodes, path, job, count=job.node is not None)
        if job.node is None:  # the snapshot root
            return Node(name="", type="dir", subtree=tree_id)
        return job.node

    def save_tree(self, nodes: List[Node], path: str, job: Optional[DirJob] = None, count: bool = True) -> str:
        """Write one tree blob; with a job, it becomes that directory's subtree. count:
        report it as a directory done."""
        raw = encode_tree(nodes)
        tree_id, new, stored = self.repo.blobs.save("tree", raw)
        if new:
            self.progress.blob_added("tree", len(raw), stored)
        node = job.node if job is not None else None
        if node is not None:
            node.subtree = tree_id
        if count:
            action = item_action(job.parent_node, node) if node is not None else "new"
            duration = time.monotonic() - job.started if job else 0.0
            self.progress.file_done(path, "dir", ItemResult(action, 0, 0, len(raw) if new else 0,
                                                            stored if new else 0, duration), 0)
        return tree_id
