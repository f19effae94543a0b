"""Differences between two trees (two snapshots, or a folder of each), as restic's `diff`
computes them: the change of every entry, and statistics of what was added and removed.

Entries are compared directory by directory in name order (bytewise). A directory whose
subtree id is the same on both sides holds no change and is not compared. The modifier of
an entry present on both sides is built from "T" (type changed), "M" (file content changed;
"?" added when nothing else about the file changed, which points to bitrot) and, with
`metadata`, "U" (metadata changed). An added or removed directory is listed with its whole
content ("+" or "-" on every entry).

The statistics count entries (files, dirs, others) where they were added or removed, and the
blobs that only one side references: a blob referenced by both trees counts in neither, even
when it is referenced from different places (a file copied into an unchanged folder), so the
blob lists of the unchanged folders are read too (as restic does), each distinct tree once.

Trees are compared as decoded JSON objects: two equal objects are equal nodes, and only
entries whose objects differ are decoded into Nodes, which keeps large trees cheap.
"""
from collections import deque
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from typing import Callable, Dict, Iterable, List, NamedTuple, Optional, Set

from ..errors import IntegrityError, RestiqueError
from ..model import gojson
from ..model.names import go_unquote
from ..model.node import Node
from .walker import join

Warn = Callable[[str], None]
Entry = dict  # one node of a tree blob, as its JSON object

READ_ERRORS = (RestiqueError, OSError, EOFError)
PREFETCH_TREES = 32  # tree blobs read ahead while walking the unchanged folders


@dataclass
class DiffOptions:
    metadata: bool = False  # also report entries whose metadata alone changed ("U")


class Change(NamedTuple):
    """One changed entry: its path in the snapshot (directories end with "/") and the
    modifier ("+", "-", or a combination of "T", "M", "?", "U")."""

    path: str
    modifier: str


@dataclass
class DiffStat:
    """Entries and blobs on one side only (added: the second tree, removed: the first)."""

    files: int = 0
    dirs: int = 0
    others: int = 0
    data_blobs: int = 0
    tree_blobs: int = 0
    bytes: int = 0

    def count(self, entry_type: str) -> None:
        if entry_type == "file":
            self.files += 1
        elif entry_type == "dir":
            self.dirs += 1
        else:
            self.others += 1


@dataclass
class DiffStatistics:
    changed_files: int = 0
    added: DiffStat = field(default_factory=DiffStat)
    removed: DiffStat = field(default_factory=DiffStat)
    errors: int = 0  # subtrees that could not be read (reported to warn and skipped)


def diff_trees(repo, tree_a: str, tree_b: str, options: Optional[DiffOptions] = None,
               on_change: Optional[Callable[[Change], None]] = None,
               warn: Optional[Warn] = None) -> DiffStatistics:
    """Compare tree_b (the newer side) with tree_a: on_change(Change) for every difference,
    in restic's order, then the statistics. A subtree that cannot be read is reported to
    warn(`error: ...`), skipped, and counted in the result's `errors`, as restic goes on
    after it; the root trees' errors are raised. Needs the repository index loaded."""
    comparer = _Comparer(repo, options or DiffOptions(), on_change or (lambda change: None), warn)
    comparer.before.tree.add(tree_a)
    comparer.after.tree.add(tree_b)
    if tree_a != tree_b:
        comparer.run(_load_entries(repo, tree_a), _load_entries(repo, tree_b))
    return comparer.finish()


def _load_entries(repo, tree_id: str) -> Dict[str, Entry]:
    """The nodes of a tree blob by name (surrogate escapes for raw bytes)."""
    try:
        return {go_unquote(node["name"]): node for node in _tree_nodes(repo.load_blob("tree", tree_id))}
    except (KeyError, TypeError) as exc:
        raise IntegrityError(f"tree {tree_id[:8]} is damaged: {exc!r}") from None


def _tree_nodes(raw: bytes) -> List[Entry]:
    try:
        nodes = gojson.loads(raw).get("nodes") or []
    except (ValueError, AttributeError) as exc:
        raise IntegrityError(f"tree is damaged: {exc}") from None
    if not isinstance(nodes, list) or not all(isinstance(node, dict) for node in nodes):
        raise IntegrityError("tree is damaged: a node is not an object")
    return nodes


class _BlobSet:
    """Data and tree blob ids referenced by one side of the comparison."""

    __slots__ = ("data", "tree")

    def __init__(self):
        self.data: Set[str] = set()
        self.tree: Set[str] = set()

    def add_entry(self, entry: Optional[Entry]) -> None:
        if entry is None:
            return
        kind = entry.get("type")
        if kind == "file":
            self.data.update(entry.get("content") or ())
        elif kind == "dir" and entry.get("subtree"):
            self.tree.add(entry["subtree"])


class _Comparer:
    def __init__(self, repo, options: DiffOptions, on_change, warn: Optional[Warn]):
        self.repo = repo
        self.options = options
        self.emit = on_change
        self.warn = warn
        self.stats = DiffStatistics()
        self.before = _BlobSet()
        self.after = _BlobSet()
        self.common_trees: Dict[str, None] = {}  # unchanged subtrees, in the order met

    def _error(self, exc: Exception) -> None:
        self.stats.errors += 1
        if self.warn is not None:
            self.warn(f"error: {exc}")

    def run(self, entries_a: Dict[str, Entry], entries_b: Dict[str, Entry]) -> None:
        """Depth-first over the entries of both trees, a directory before its content; an
        explicit stack instead of recursion, so that no folder depth is too deep."""
        stack = [_pairs("/", entries_a, entries_b)]
        while stack:
            item = next(stack[-1], None)
            if item is None:
                stack.pop()
                continue
            path, entry_a, entry_b = item
            self.before.add_entry(entry_a)
            self.after.add_entry(entry_b)
            if entry_a is not None and entry_b is not None:
                subtrees = self._compare(path, entry_a, entry_b)
            elif entry_a is not None:
                subtrees = self._one_side(path, entry_a, "-", self.stats.removed)
            else:
                subtrees = self._one_side(path, entry_b, "+", self.stats.added)
            if subtrees is not None:
                stack.append(self._subtree_pairs(*subtrees))

    def _subtree_pairs(self, prefix: str, tree_a: Optional[str], tree_b: Optional[str]):
        """_pairs of two subtrees (one None when a folder only one side has is listed)."""
        try:
            entries_a = _load_entries(self.repo, tree_a) if tree_a else {}
            entries_b = _load_entries(self.repo, tree_b) if tree_b else {}
        except READ_ERRORS as exc:
            self._error(exc)
            return iter(())
        return _pairs(prefix, entries_a, entries_b)

    def _subtree(self, path: str, entry: Entry) -> Optional[str]:
        subtree = entry.get("subtree")
        if not subtree:
            self._error(IntegrityError(f"directory {path} has no subtree"))
        return subtree

    def _compare(self, path: str, entry_a: Entry, entry_b: Entry):
        """The change of an entry both sides have; (path, subtree a, subtree b) when both
        are directories with different content, to be compared next."""
        type_a, type_b = entry_a.get("type"), entry_b.get("type")
        modifier = "T" if type_a != type_b else ""
        if type_b == "dir":
            path += "/"
        if type_a == "file" and type_b == "file" and entry_a.get("content") != entry_b.get("content"):
            modifier += "M"
            self.stats.changed_files += 1
            if _same_entries(entry_a, entry_b, compare_content=False):
                modifier += "?"  # new content under identical metadata: probably bitrot
        elif self.options.metadata and not _same_entries(entry_a, entry_b):
            modifier += "U"
        if modifier:
            self.emit(Change(path, modifier))
        if type_a != "dir" or type_b != "dir":
            return None  # a type change is not looked into, as in restic
        sub_a, sub_b = self._subtree(path, entry_a), self._subtree(path, entry_b)
        if not sub_a or not sub_b:
            return None
        if sub_a == sub_b:
            self.common_trees[sub_a] = None
            return None
        return path, sub_a, sub_b

    def _one_side(self, path: str, entry: Entry, modifier: str, stat: DiffStat):
        """An entry only one side has; for a directory, what to list next: its whole content,
        under the same modifier, as entries of that side only."""
        is_dir = entry.get("type") == "dir"
        if is_dir:
            path += "/"
        self.emit(Change(path, modifier))
        stat.count(entry.get("type"))
        if not is_dir or not self._subtree(path, entry):
            return None
        return (path, entry["subtree"], None) if modifier == "-" else (path, None, entry["subtree"])

    def finish(self) -> DiffStatistics:
        """Blob counts and sizes of each side's own blobs."""
        only_before = _Difference(self.before, self.after)
        only_after = _Difference(self.after, self.before)
        if (only_before or only_after) and self.common_trees:
            common = _CommonBlobs(self.repo, self._error)
            common.find(self.common_trees, only_before.ids() | only_after.ids())
            for found in (common.data, common.tree):
                only_before.discard(found)
                only_after.discard(found)
        only_before.add_to(self.stats.removed, self.repo.index, self.warn)
        only_after.add_to(self.stats.added, self.repo.index, self.warn)
        return self.stats


def _pairs(prefix: str, entries_a: Dict[str, Entry], entries_b: Dict[str, Entry]):
    """(path, entry of a or None, entry of b or None) for every name, bytewise in order."""
    for name in sorted(entries_a.keys() | entries_b.keys(), key=_name_bytes):
        yield join(prefix, name), entries_a.get(name), entries_b.get(name)


class _CommonBlobs:
    """The wanted blobs that the unchanged subtrees reference. Each distinct tree is read
    once, a few ahead in worker threads (reading and decrypting release the GIL), and the
    reading stops as soon as every wanted blob has been found."""

    def __init__(self, repo, on_error: Callable[[Exception], None]):
        self.repo = repo
        self.on_error = on_error
        self.data: Set[str] = set()
        self.tree: Set[str] = set()

    def find(self, roots: Iterable[str], wanted: Set[str]) -> None:
        seen: Set[str] = set(roots)
        queue = deque(seen)
        with ThreadPoolExecutor(4, thread_name_prefix="diff-trees") as pool:
            running = set()
            while (queue or running) and wanted:
                while queue and len(running) < PREFETCH_TREES:
                    running.add(pool.submit(self.repo.load_blob, "tree", queue.popleft()))
                done, running = wait(running, return_when=FIRST_COMPLETED)
                for future in done:
                    try:
                        data_ids, subtrees = tree_blob_ids(future.result())
                    except READ_ERRORS as exc:
                        self.on_error(exc)
                        continue
                    self._take(wanted, data_ids, self.data)
                    self._take(wanted, subtrees, self.tree)
                    for subtree in subtrees:
                        if subtree not in seen:
                            seen.add(subtree)
                            queue.append(subtree)
            for future in running:
                future.cancel()

    @staticmethod
    def _take(wanted: Set[str], ids: List[str], found: Set[str]) -> None:
        hits = wanted.intersection(ids)
        if hits:
            wanted.difference_update(hits)
            found.update(hits)


def tree_blob_ids(raw: bytes):
    """(data blob ids, subtree ids) a tree blob references, without decoding its nodes."""
    data_ids: List[str] = []
    subtrees: List[str] = []
    for node in _tree_nodes(raw):
        kind = node.get("type")
        if kind == "file":
            data_ids.extend(node.get("content") or ())
        elif kind == "dir" and node.get("subtree"):
            subtrees.append(node["subtree"])
    return data_ids, subtrees


class _Difference:
    """The blobs of one side that the other side does not reference."""

    def __init__(self, side: _BlobSet, other: _BlobSet):
        self.data = side.data - other.data
        self.tree = side.tree - other.tree

    def __bool__(self) -> bool:
        return bool(self.data or self.tree)

    def ids(self) -> Set[str]:
        return self.data | self.tree

    def discard(self, ids: Set[str]) -> None:
        self.data -= ids
        self.tree -= ids

    def add_to(self, stat: DiffStat, index, warn: Optional[Warn]) -> None:
        stat.data_blobs += len(self.data)
        stat.tree_blobs += len(self.tree)
        for kind, ids in (("data", self.data), ("tree", self.tree)):
            for blob_id in sorted(ids):
                location = index.lookup(kind, blob_id)
                if location is None:
                    if warn is not None:
                        warn(f"unable to find blob size for <{kind}/{blob_id[:8]}>")
                    continue
                stat.bytes += location.size


def _same_entries(a: Entry, b: Entry, compare_content: bool = True) -> bool:
    """Whether two tree entries are equal nodes (restic's Node.Equals), optionally ignoring
    their content. Equal JSON objects are; others are decoded and compared field by field."""
    if compare_content and a == b:
        return True
    if not compare_content and {**a, "content": None} == {**b, "content": None}:
        return True
    return same_node(Node.from_json(a), Node.from_json(b), compare_content)


def same_node(a: Node, b: Node, compare_content: bool = True) -> bool:
    """restic's Node.Equals: every field the same, times compared as instants, extended
    attributes as a set; content too unless compare_content is False."""
    return (a.name == b.name and a.type == b.type and a.mode == b.mode
            and a.mtime.unix_ns == b.mtime.unix_ns and a.atime.unix_ns == b.atime.unix_ns
            and a.ctime.unix_ns == b.ctime.unix_ns
            and a.uid == b.uid and a.gid == b.gid and a.user == b.user and a.group == b.group
            and a.inode == b.inode and a.device_id == b.device_id and a.size == b.size
            and a.links == b.links and a.linktarget == b.linktarget and a.device == b.device
            and (not compare_content or a.content == b.content)
            and _same_xattrs(a.xattrs, b.xattrs)
            and (a.generic_attributes or {}) == (b.generic_attributes or {})
            and a.subtree == b.subtree and a.error == b.error)


def _same_xattrs(a: Iterable, b: Iterable) -> bool:
    a, b = list(a), list(b)
    return len(a) == len(b) and dict(a) == dict(b)


def _name_bytes(name: str) -> bytes:
    return name.encode("utf-8", "surrogateescape")
