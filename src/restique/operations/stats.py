"""Statistics about the data of some snapshots, in restic's four counting modes.

- restore-size: every entry of the snapshots (files, directories, links, ...) and the size
  of their files as a restore writes them; hard links (same inode and device) count once
  per snapshot.
- files-by-contents: files with distinct contents (the same list of data blobs); every
  entry without content, a directory or an empty file, shares the empty contents.
- raw-data: the blobs (trees and data) the snapshots reference, counted once, with their
  size in the repository (compressed and encrypted) taken from the index; for repository
  format 2 also what they would take uncompressed and how much compression saved.
- blobs-per-file: the data blobs of each path whose contents were not seen before, each
  blob counted once per path, with its plaintext size.

Each tree is loaded once per call even when several snapshots share it: restore-size keeps
a summary of every tree it has counted, the other modes skip subtrees they have seen.

restore-size and raw-data read their trees level by level, each level's trees loaded pack by
pack, and take what they count straight from the tree's JSON bytes (restique._treescan)
instead of decoding every node; a tree the scanner declines is decoded as JSON, and
restore-size leaves a snapshot with a tree it cannot load to the walk, which reports the
problem with its path.
"""
import functools
import hashlib
from ..model import gojson
from dataclasses import dataclass
from typing import Callable, Dict, List, Optional, Sequence, Set, Tuple

from ..errors import IntegrityError, RestiqueError, UsageError
from ..model.names import go_quote, go_unquote
from ..model.snapshot import Snapshot
from ..model.snapshot_filter import SnapshotFilter
from ..repository.crypto import OVERHEAD  # IV and MAC around every encrypted blob
from .._treescan import scan
from .prune.tree_packs import load_trees
from .prune.used_blobs import load_level
from .snapshot_lookup import find_filtered_snapshots

RESTORE_SIZE = "restore-size"
FILES_BY_CONTENTS = "files-by-contents"
RAW_DATA = "raw-data"
BLOBS_PER_FILE = "blobs-per-file"
MODES = (RESTORE_SIZE, FILES_BY_CONTENTS, BLOBS_PER_FILE, RAW_DATA)

Warn = Callable[[str], None]


@dataclass
class StatsOptions:
    """Which snapshots (IDs or `latest`; none means all that match filter) and how to count."""
    mode: str = RESTORE_SIZE
    snapshot_ids: Sequence[str] = ()
    filter: Optional[SnapshotFilter] = None

    def validate(self) -> None:
        if self.mode not in MODES:
            raise UsageError(f"unknown counting mode: {self.mode} (use the -h flag to get a list of supported modes)")


@dataclass
class Stats:
    """The totals; the compression figures are set in raw-data mode on format 2 only."""
    mode: str
    snapshots_count: int = 0
    total_size: int = 0
    total_file_count: int = 0
    total_blob_count: int = 0
    total_uncompressed_size: int = 0
    compression_ratio: float = 0.0
    compression_progress: float = 0.0
    compression_space_saving: float = 0.0

    def to_json(self) -> dict:
        """restic's JSON object, fields in its order; zero compression figures and a zero
        blob count are left out (restic 0.14 always has total_file_count)."""
        out = {"total_size": self.total_size}
        for key in ("total_uncompressed_size", "compression_ratio", "compression_progress",
                    "compression_space_saving"):
            if getattr(self, key):
                out[key] = getattr(self, key)
        out["total_file_count"] = self.total_file_count
        if self.total_blob_count:
            out["total_blob_count"] = self.total_blob_count
        out["snapshots_count"] = self.snapshots_count
        return out


def stats(repo, options: StatsOptions, warn: Optional[Warn] = None) -> Stats:
    """Count the snapshots options selects. Unknown snapshot IDs and unreadable snapshot
    files go to warn (and are skipped) as restic does; a damaged tree or a blob missing from
    the index raises RestiqueError."""
    options.validate()
    warn = warn or (lambda message: None)
    repo.load_index()
    snapshots = find_filtered_snapshots(repo, list(options.snapshot_ids), options.filter, warn=warn)
    result = Stats(options.mode, snapshots_count=len(snapshots))
    counter = _COUNTERS[options.mode](repo, result)
    for sn in snapshots:
        if not sn.tree:
            raise RestiqueError(f"error walking snapshot: snapshot {sn.short_id} has nil tree")
        counter.add_snapshot(sn)
    counter.finish()
    return result


class _Entry:
    """The part of a tree node that stats reads: decoding only these fields (no times, no
    attributes) makes walking several times faster than decoding whole nodes."""
    __slots__ = ("name", "type", "size", "inode", "device_id", "links", "content", "subtree")

    def __init__(self, obj: dict):
        name = obj.get("name") or ""
        self.name = go_unquote(name) if "\\" in name else name
        self.type = obj.get("type") or ""
        self.size = int(obj.get("size") or 0)
        self.inode = int(obj.get("inode") or 0)
        self.device_id = int(obj.get("device_id") or 0)
        self.links = int(obj.get("links") or 0)
        self.content = obj.get("content")
        self.subtree = obj.get("subtree")


def _entry_loader(repo) -> Callable[[str], List[_Entry]]:
    """A tree loader for the walker that yields _Entry objects, in the walker's name order.
    No cache: the counters never load a tree twice."""
    def load(tree_id: str) -> List[_Entry]:
        return _decode_entries(tree_id, repo.load_blob("tree", tree_id))

    return load


def _decode_entries(tree_id: str, raw: bytes) -> List[_Entry]:
    try:
        entries = [_Entry(obj) for obj in gojson.loads(raw).get("nodes") or ()]
    except (ValueError, TypeError, AttributeError, KeyError) as exc:
        raise IntegrityError(f"tree {tree_id[:8]} is damaged: {exc}") from None
    entries.sort(key=_name_bytes)
    return entries


def _scan_decoded(tree_id: str, raw: bytes) -> Optional[tuple]:
    """What the native scan gives for restore-size (subtrees, contents, count, size, parts),
    from the decoded entries of a tree it declined; None for a tree only the walk may judge
    (a directory without a usable subtree id), and IntegrityError for undecodable text."""
    subtrees: List[str] = []
    parts: list = []
    count = size = 0
    hardlinks = False
    for entry in _decode_entries(tree_id, raw):
        count += 1
        if entry.type == "dir":
            if not isinstance(entry.subtree, str) or not entry.subtree:
                return None
            subtrees.append(entry.subtree)
            parts.append(entry.subtree)
        if entry.links == 1 or entry.type == "dir" or entry.inode == 0:
            size += entry.size
        else:
            hardlinks = True
            parts.append((entry.inode, entry.device_id, entry.size))
    return subtrees, [], count, size, parts if hardlinks else None


def _name_bytes(entry: _Entry) -> bytes:
    return entry.name.encode("utf-8", "surrogateescape")


class _RestoreSize:
    """Per snapshot: every entry, and the sizes of its files with hard links counted once."""

    def __init__(self, repo, result: Stats):
        self.repo = repo
        self.result = result
        self.load = _entry_loader(repo)  # trees are summarised, never reloaded
        self.summaries: Dict[str, _Summary] = {}

    def add_snapshot(self, sn: Snapshot) -> None:
        summary = self.summaries.get(sn.tree)
        if summary is None:
            summary = self._summarise_scanned(sn.tree) or self._summarise(sn.tree)
        self.result.total_file_count += summary.count
        self.result.total_size += summary.total()

    def _summarise_scanned(self, root: str) -> Optional["_Summary"]:
        """The summary of tree root from the native scans of its trees (loaded level by level,
        pack by pack), children before parents; None when some tree cannot be loaded or is
        declined by the scanner: the walk then decides, with its own words for any error."""
        scanned: Dict[str, tuple] = {}
        level = [root]
        try:
            while level:
                found: List[str] = []
                for tree_id, raw in load_level(level, self._load_tree, self._load_trees):
                    result = scan(raw, True) if isinstance(raw, bytes) else None
                    if result is None:
                        result = _scan_decoded(tree_id, raw)
                        if result is None:
                            return None
                    scanned[tree_id] = (result[0], None, result[2], result[3], result[4])  # no content ids kept
                    for subtree in result[0]:
                        if subtree not in self.summaries and subtree not in scanned:
                            scanned[subtree] = ()
                            found.append(subtree)
                level = found
        except RestiqueError:
            return None
        summaries = self.summaries
        stack = [root]
        expanded = set()
        while stack:
            tree_id = stack[-1]
            if tree_id in summaries:
                stack.pop()
                continue
            subtrees, _, count, size, parts = scanned[tree_id]
            missing = [subtree for subtree in subtrees if subtree not in summaries]
            if missing:
                if tree_id in expanded:
                    return None
                expanded.add(tree_id)
                stack += missing
                continue
            stack.pop()
            summary = summaries[tree_id] = _Summary()
            summary.count, summary.size = count, size
            for part in subtrees if parts is None else parts:
                if isinstance(part, str):
                    summary.merge(summaries[part])
                else:
                    summary._add_hardlink((part[0], part[1]), part[2])
        return summaries[root]

    def _load_tree(self, tree_id: str) -> bytes:
        return self.repo.load_blob("tree", tree_id)

    def _load_trees(self, tree_ids: List[str]):
        index = self.repo.index
        return load_trees(self.repo, tree_ids, lambda tree_id: index.lookup("tree", tree_id))

    def _summarise(self, root: str) -> "_Summary":
        """The summary of tree root, reusing (and adding to) the summaries of its subtrees."""
        stack = [_Summary()]

        def descend(path: str, node: _Entry) -> bool:
            return node.subtree not in self.summaries

        from .walker import walk_events

        try:
            for path, node, leaving in walk_events(self.repo, root, descend=descend, loader=self.load):
                if leaving:
                    done = stack.pop()
                    self.summaries[node.subtree] = done
                    stack[-1].merge(done)
                    continue
                stack[-1].add(node)
                if node.type == "dir" and node.subtree:
                    known = self.summaries.get(node.subtree)
                    if known is not None:
                        stack[-1].merge(known)
                    else:
                        stack.append(_Summary())
        except RestiqueError as exc:
            raise RestiqueError(f"error walking snapshot: walking tree {root}: {exc}") from None
        self.summaries[root] = stack[0]
        return stack[0]

    def finish(self) -> None:
        pass


class _Summary:
    """What restore-size counts below one tree: entries, sizes outside hard links, and the
    size of each hard-linked (inode, device) as first met in walk order (None while there
    is none: most trees have none, and a summary is kept for every tree)."""
    __slots__ = ("count", "size", "hardlinks")

    def __init__(self):
        self.count = 0
        self.size = 0
        self.hardlinks: Optional[Dict[Tuple[int, int], int]] = None

    def add(self, node: _Entry) -> None:
        self.count += 1
        if node.links == 1 or node.type == "dir" or node.inode == 0:
            self.size += node.size
        else:
            self._add_hardlink((node.inode, node.device_id), node.size)

    def merge(self, other: "_Summary") -> None:
        self.count += other.count
        self.size += other.size
        if other.hardlinks:
            for key, size in other.hardlinks.items():
                self._add_hardlink(key, size)

    def _add_hardlink(self, key: Tuple[int, int], size: int) -> None:
        if self.hardlinks is None:
            self.hardlinks = {}
        self.hardlinks.setdefault(key, size)

    def total(self) -> int:
        return self.size + sum(self.hardlinks.values()) if self.hardlinks else self.size


def _content_key(content: Optional[List[str]]):
    """One value per distinct list of data blobs (restic hashes the list)."""
    if not content:
        return ""
    if len(content) == 1:
        return content[0]
    return hashlib.sha256("".join(content).encode()).digest()


class _ByContents:
    """files-by-contents and blobs-per-file: only entries whose contents were not met before
    count. A subtree met before holds nothing new, so it is not walked again."""

    def __init__(self, repo, result: Stats):
        self.repo = repo
        self.result = result
        self.load = _entry_loader(repo)
        self.seen_trees: Set[str] = set()
        self.seen_contents: set = set()
        self.path_blobs: Dict[str, Set[str]] = {}  # blobs-per-file: the blobs counted per path

    def add_snapshot(self, sn: Snapshot) -> None:
        if sn.tree in self.seen_trees:
            return
        self.seen_trees.add(sn.tree)
        from .walker import walk

        per_file = self.result.mode == BLOBS_PER_FILE
        try:
            for path, node in walk(self.repo, sn.tree, descend=self._descend, loader=self.load):
                key = _content_key(node.content)
                if key in self.seen_contents:
                    continue
                self.seen_contents.add(key)
                if per_file:
                    self._count_blobs(path, node)
                else:
                    self.result.total_size += node.size
                    self.result.total_file_count += 1
        except RestiqueError as exc:
            raise RestiqueError(f"error walking snapshot: walking tree {sn.tree}: {exc}") from None

    def _descend(self, path: str, node: _Entry) -> bool:
        if node.subtree in self.seen_trees:
            return False
        self.seen_trees.add(node.subtree)
        return True

    def _count_blobs(self, path: str, node: _Entry) -> None:
        if not node.content:
            return
        blobs = self.path_blobs.get(path)
        if blobs is None:
            blobs = self.path_blobs[path] = set()
            self.result.total_file_count += 1
        index = self.repo.index
        for blob_id in node.content:
            if blob_id in blobs:
                continue
            location = index.lookup("data", blob_id)
            if location is None:
                raise RestiqueError(f'blob {blob_id} not found for file "{go_quote(path)}"')
            blobs.add(blob_id)
            self.result.total_size += location.size
            self.result.total_blob_count += 1

    def finish(self) -> None:
        pass


class _RawData:
    """The distinct blobs referenced: every tree once, the data blobs of its files. Order and
    names do not matter here, so the trees are walked level by level, each level's trees
    loaded pack by pack, their ids read by the native scanner (JSON for anything unusual)."""

    def __init__(self, repo, result: Stats):
        self.repo = repo
        self.result = result
        self.trees: Set[str] = set()
        self.data: Set[str] = set()

    def add_snapshot(self, sn: Snapshot) -> None:
        if sn.tree in self.trees:
            return
        self.trees.add(sn.tree)
        level = [sn.tree]
        try:
            while level:
                found: List[str] = []
                for tree_id, raw in load_level(level, self._load_tree, self._load_trees):
                    self._add_tree(tree_id, raw, found)
                level = found
        except RestiqueError as exc:
            raise RestiqueError(f"error walking snapshot: {exc}") from None

    def _load_tree(self, tree_id: str) -> bytes:
        return self.repo.load_blob("tree", tree_id)

    def _load_trees(self, tree_ids: List[str]):
        index = self.repo.index
        return load_trees(self.repo, tree_ids, lambda tree_id: index.lookup("tree", tree_id))

    def _add_tree(self, tree_id: str, raw: bytes, found: List[str]) -> None:
        scanned = scan(raw) if isinstance(raw, bytes) else None
        if scanned is None:
            self._add_decoded_tree(tree_id, raw, found)
            return
        self.data.update(scanned[1])
        trees = self.trees
        for subtree in scanned[0]:
            if subtree not in trees:
                trees.add(subtree)
                found.append(subtree)

    def _add_decoded_tree(self, tree_id: str, raw: bytes, pending: List[str]) -> None:
        try:
            nodes = gojson.loads(raw).get("nodes") or ()
            for obj in nodes:
                kind = obj.get("type")
                if kind == "file":
                    content = obj.get("content")
                    if content:
                        self.data.update(content)
                elif kind == "dir":
                    subtree = obj.get("subtree")
                    if not subtree:
                        raise IntegrityError(f"directory {obj.get('name')!r} in tree {tree_id[:8]} has no subtree")
                    if subtree not in self.trees:
                        self.trees.add(subtree)
                        pending.append(subtree)
        except (ValueError, TypeError, AttributeError, KeyError) as exc:
            raise IntegrityError(f"tree {tree_id[:8]} is damaged: {exc}") from None

    def finish(self) -> None:
        """Sizes from the index: stored size, and for format 2 the uncompressed size of
        every blob and of the compressed ones."""
        result = self.result
        index = self.repo.index
        with_compression = self.repo.config.version >= 2
        compressed_stored = compressed_uncompressed = plain_stored = 0
        for blob_type, ids in (("tree", self.trees), ("data", self.data)):
            found = list(map(functools.partial(index.stored_sizes, blob_type), ids))
            if None in found:
                missing = next(blob_id for blob_id, sizes in zip(ids, found) if sizes is None)
                raise RestiqueError(f"blob <{blob_type}/{missing[:8]}> not found")
            compressed = [sizes for sizes in found if sizes[1]]
            stored = sum(sizes[0] for sizes in found)
            result.total_size += stored
            compressed_stored += sum(sizes[0] for sizes in compressed)
            compressed_uncompressed += sum(sizes[1] for sizes in compressed) + OVERHEAD * len(compressed)
            plain_stored += stored
        if with_compression:
            # a compressed blob counts with its uncompressed size, any other with its stored one
            result.total_uncompressed_size = plain_stored - compressed_stored + compressed_uncompressed
        else:
            compressed_stored = compressed_uncompressed = 0
        result.total_blob_count = len(self.trees) + len(self.data)
        if compressed_stored:
            result.compression_ratio = compressed_uncompressed / compressed_stored
        if result.total_uncompressed_size:
            result.compression_progress = compressed_uncompressed / result.total_uncompressed_size * 100
            result.compression_space_saving = (1 - result.total_size / result.total_uncompressed_size) * 100


_COUNTERS = {RESTORE_SIZE: _RestoreSize, FILES_BY_CONTENTS: _ByContents, BLOBS_PER_FILE: _ByContents,
             RAW_DATA: _RawData}
