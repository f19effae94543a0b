"""Checkpoints of a running backup, so that the next backup after an interruption (Ctrl-C,
SIGTERM, a crash, a power cut) starts where this one stopped.

A checkpoint writes, for every directory still open, a tree of the entries already done,
merged with the parent's entries not reached yet: any node of either is a sound parent
node, since its content is what its metadata describes. Then it writes the open packs and
an index file (restic finds the blobs too), and hands the root of those trees to `record`.
The next backup of the same paths uses that tree as its parent: files whose metadata is
unchanged keep their content without being read, whole directories are taken as they are.
The trees are ordinary unreferenced blobs: restic 0.14 reads them without complaint and the
next prune removes them. No snapshot is written, so `snapshots` and `forget` never see one.

Checkpoints are written every `interval` seconds while the backup runs, and once more when
it is interrupted (after the readers have stopped).
"""
import dataclasses
import threading
from typing import Callable, Dict, Iterable, Optional

from ...model.node import Node, encode_tree
from .parent import ParentTrees
from .tree_saver import DirJob

CHECKPOINT_INTERVAL = 300.0  # seconds; what a crash may cost at most, besides open packs


def partial_root_tree(jobs: Iterable[DirJob], old_children: Callable[[Optional[str]], Dict[str, dict]],
                      root_parent_tree: Optional[str], save_tree: Callable[[list], str]) -> Optional[str]:
    """Save the trees of the open directories, deepest first, each with its done entries,
    the partial trees of its open subdirectories and the parent's other entries; returns
    the root's tree id (None when the root is not among the jobs)."""
    open_below: Dict[str, Dict[str, Node]] = {}  # directory path -> its open subdirectories' nodes
    for job in sorted(jobs, key=lambda j: j.snap_path.count("/"), reverse=True):
        with job.lock:
            children = list(job.children)
        entries: Dict[str, object] = dict(old_children(root_parent_tree if not job.snap_path else _subtree(job.parent_node)))
        entries.update(open_below.pop(job.snap_path, {}))
        for child in children:
            node = child.value_if_done()
            if node is not None:
                entries[node.name] = node
        tree_id = save_tree([e if isinstance(e, Node) else Node.from_json(e) for e in entries.values()])
        if not job.snap_path:
            return tree_id
        if job.node is not None:  # None: the directory is left out
            node = dataclasses.replace(job.node, subtree=tree_id)
            open_below.setdefault(job.snap_path.rpartition("/")[0], {})[node.name] = node
    return None


def _subtree(parent_node: Optional[dict]) -> Optional[str]:
    if parent_node and parent_node.get("type") == "dir":
        return parent_node.get("subtree")
    return None


class Checkpoints:
    """Writes checkpoints of one backup: periodically in a thread, and on request."""

    def __init__(self, repo, archiver, record: Optional[Callable[[str], None]], interval: float):
        self.repo = repo
        self.archiver = archiver
        self.record = record  # None: no resume record (no cache); the index is still written
        self.interval = interval
        self._parents = ParentTrees(repo)  # its own: the walker's cache is not thread-safe
        self._stop = threading.Event()
        self._writing = threading.Lock()
        self._thread: Optional[threading.Thread] = None

    def start(self) -> None:
        if self.interval > 0:
            self._thread = threading.Thread(target=self._run, name="checkpoints", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.write()
            except Exception:
                return  # the backup meets the same failure and reports it; checkpoints only save time

    def write(self) -> None:
        """Write the open packs and the index, then (with a record) the trees done so far."""
        with self._writing:
            tree = None
            if self.record is not None:
                tree = self._root_tree()
            self.repo.flush()  # packs, then the index naming them, then the record naming a tree
            if tree is not None:
                self.record(tree)

    def _root_tree(self) -> Optional[str]:
        """The whole root tree when it is written already (an interruption that came as the
        backup finished), else the partial one."""
        trees = self.archiver.trees
        jobs = trees.open_jobs.copy().values()  # before looking at the root: it leaves once done
        root = trees.root_job.done.value_if_done() if trees.root_job is not None else None
        if root is not None:
            return root.subtree
        return partial_root_tree(jobs, self._parents.children, self.archiver.root_parent_tree, self._save_tree)

    def _save_tree(self, nodes: list) -> str:
        return self.repo.blobs.save("tree", encode_tree(nodes))[0]
