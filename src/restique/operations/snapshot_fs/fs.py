"""SnapshotFS: the repository's snapshots as one read-only tree of paths (see __init__)."""
import os
import posixpath
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional, Sequence, Tuple

from ...errors import NotFound, RestiqueError
from ...model.names import go_quote, unsafe_name
from ...model.node import Node
from ...model.snapshot import Snapshot
from ...model.snapshot_filter import SnapshotFilter
from ..snapshot_lookup import load_all_snapshots
from ..walker import LazyTreeLoader
from .entries import FsEntry, listing_entries, node_entry, virtual_entry
from .layout import VirtualDir, build_layout
from .reader import DEFAULT_CACHE_BYTES, BlobCache, FileReader
from .tree_preload import PreloadedTrees

TREE_CACHE_NODES = 200_000  # decoded entries kept (a few hundred bytes each)
LISTED_DIRS_KEPT = 20_000  # resolved subdirectories of listed folders (~600 bytes each)
READER_CACHE = 64
TREE_JSON_PER_ENTRY = 200  # bytes of tree JSON per entry at least (a file's take 300 to 400)


class NotADirectory(RestiqueError):
    """list_dir of a path that is not a directory."""


class NotAFile(RestiqueError):
    """read of a path that is not a regular file."""


@dataclass
class SnapshotFSOptions:
    path_template: Optional[Sequence[str]] = None  # restic's --path-template list; None: the defaults
    time_template: Optional[str] = None  # Go layout; None: 2006-01-02T15:04:05Z07:00
    filter: SnapshotFilter = field(default_factory=SnapshotFilter)
    owner_root: bool = False
    # new snapshots show within 5 s: a refresh is due after 3 s, the next request (the mount's
    # folders above the snapshots are kept by the kernel for 1 s) finds it and drops them
    refresh_seconds: float = 3.0
    cache_bytes: int = DEFAULT_CACHE_BYTES  # decrypted data blobs kept for reads
    on_warning: Optional[Callable[[str], None]] = None  # told each warning as it is found


@dataclass
class _Found:
    """A resolved path: its entry, plus where its children come from."""
    entry: FsEntry
    virtual: Optional[VirtualDir] = None  # a virtual directory or snapshot root
    tree: Optional[str] = None  # the tree listing a directory's children
    inner: str = "/"  # the path inside the snapshot


class SnapshotFS:
    def __init__(self, repo, options: Optional[SnapshotFSOptions] = None):
        self.repo = repo
        self.options = options or SnapshotFSOptions()
        self._uid, self._gid = (0, 0) if self.options.owner_root else (os.getuid(), os.getgid())
        self._started_ns = time.time_ns()
        self._refresh_lock = threading.Lock()
        self._tree_lock = threading.Lock()
        self._preloaded = PreloadedTrees(repo)
        self._loader = LazyTreeLoader(self._preloaded, cache_bytes=0)  # entries decoded on first use
        self._trees: "OrderedDict[str, Tuple[List[Node], Dict[str, Node]]]" = OrderedDict()
        self._tree_nodes = 0
        self._readers: "OrderedDict[Tuple[str, str], FileReader]" = OrderedDict()
        self._known: Dict[str, Optional[Snapshot]] = {}  # every snapshot id seen (None: unreadable)
        self._snapshots: List[Snapshot] = []
        self._layout: Dict[str, VirtualDir] = {}
        # subdirectories seen in listings, by path: a walker lists each next, and resolving
        # its path again from the root took a tenth of a listing; emptied with each new layout
        self._listed_dirs: Dict[str, _Found] = {}
        self._checked = 0.0
        self.generation = 0  # counts the changes of the snapshot list (and so of the folders above the snapshots)
        self.warnings: List[str] = []  # snapshots that could not be loaded, entries skipped
        self.unsafe_names = 0  # tree entries not served: their names are not one path component
        self._unsafe_trees: set = set()  # trees already reported
        repo.load_index()
        self.blobs = BlobCache(repo, self.options.cache_bytes)
        self.refresh(force=True)

    # --- the snapshot list ---
    def snapshots(self) -> List[Snapshot]:
        """The snapshots shown (filtered, oldest first), refreshed at most every refresh_seconds."""
        self.refresh()
        return list(self._snapshots)

    def refresh(self, force: bool = False) -> bool:
        """Reload the snapshot list if refresh_seconds have passed (or force); True if it
        changed. New index files are read before new snapshots are shown."""
        with self._refresh_lock:
            now = time.monotonic()
            if not force and now - self._checked < self.options.refresh_seconds:
                return False
            ids = set(self.repo.list_ids("snapshot"))
            self._checked = now
            if ids == set(self._known) and not force:
                return False
            self._load_new_indexes()
            new = sorted(ids - set(self._known))
            for sn in load_all_snapshots(self.repo, new, warn=self._warn):
                self._known[sn.id] = sn
            for sid in new:
                self._known.setdefault(sid, None)
            for sid in set(self._known) - ids:
                del self._known[sid]
            shown = self.options.filter.apply(sn for sn in self._known.values() if sn is not None)
            shown.sort(key=lambda sn: (sn.time.unix_ns, sn.id))
            layout = build_layout(shown, self.options.path_template, self.options.time_template)
            self._snapshots, self._layout, self._listed_dirs = shown, layout, {}
            self.generation += 1
            return True

    def _warn(self, message: str) -> None:
        self.warnings.append(message)
        if self.options.on_warning is not None:
            self.options.on_warning(message)

    def _load_new_indexes(self) -> None:
        index = self.repo.index
        known = set(index.index_ids)
        for index_id in self.repo.list_ids("index"):
            if index_id not in known:
                index.add_index_bytes(index_id, self.repo.load_unpacked("index", index_id))

    # --- trees ---
    def _children(self, tree_id: str) -> Tuple[List[Node], Dict[str, Node]]:
        with self._tree_lock:
            hit = self._trees.get(tree_id)
            if hit is not None:
                self._trees.move_to_end(tree_id)
                return hit
        nodes = self._loader(tree_id)  # outside the lock: one slow load must not hold up other lookups
        nodes = self._safe_nodes(tree_id, nodes)
        hit = (nodes, {n.name: n for n in nodes})
        with self._tree_lock:
            if tree_id not in self._trees:
                self._trees[tree_id] = hit
                self._tree_nodes += len(nodes)
            while self._tree_nodes > TREE_CACHE_NODES and len(self._trees) > 1:
                _, (old, _) = self._trees.popitem(last=False)
                self._tree_nodes -= len(old)
        return hit

    def listing_ready(self, path: str, max_entries: int = 1 << 62) -> bool:
        """Whether list_dir(path) can answer without reading the repository: a folder seen
        in a listing whose tree was read (or preloaded), and no refresh due; and the folder
        holds at most about max_entries entries."""
        found = self._listed_dirs.get(path)
        if found is None or time.monotonic() - self._checked >= self.options.refresh_seconds:
            return False
        if not found.tree:
            return True
        hit = self._trees.get(found.tree)
        if hit is not None:
            return len(hit[0]) <= max_entries
        size = self._preloaded.size(found.tree)
        return 0 < size and size // TREE_JSON_PER_ENTRY <= max_entries

    def preload_listed(self, paths: Sequence[str]) -> None:
        """Read the trees of folders seen in listings (paths, the first listed next) together,
        a pack window at a time, so that listing them one by one next finds them read.
        Nothing is read while the first one's tree is at hand (an earlier batch read it):
        asked before every listing, a batch is read once per batch, not once per folder."""
        listed, trees, preloaded = self._listed_dirs, self._trees, self._preloaded
        first = listed.get(paths[0]) if paths else None
        if first is not None and (not first.tree or first.tree in trees or first.tree in preloaded):
            return
        found = [listed.get(path) for path in paths]
        preloaded.preload(f.tree for f in found if f is not None and f.tree and f.tree not in trees)

    def _safe_nodes(self, tree_id: str, nodes: List[Node]) -> List[Node]:
        """nodes without those named "", ".", ".." or with a slash: as paths they would
        point elsewhere (a hostile or damaged tree); each tree's are reported once."""
        safe = [n for n in nodes if not unsafe_name(n.name)]
        if len(safe) != len(nodes) and tree_id not in self._unsafe_trees:
            self._unsafe_trees.add(tree_id)
            for n in nodes:
                if unsafe_name(n.name):
                    self.unsafe_names += 1
                    self._warn(f'tree {tree_id[:10]}: entry "{go_quote(n.name)}" skipped: '
                               "not a valid file name")
        return safe

    # --- paths ---
    def _virtual(self, path: str, name: str, v: VirtualDir) -> _Found:
        sn = v.snapshot
        if v.link_target:
            return _Found(virtual_entry(path, name, sn.time.unix_ns, self._uid, self._gid, sn, v.link_target))
        when = sn.time.unix_ns if sn is not None else self._started_ns
        return _Found(virtual_entry(path, name, when, self._uid, self._gid, sn), v, sn.tree if sn else None)

    def _resolve(self, path: str) -> _Found:
        """The path's entry; only the last component's entry is built (a deep path is
        resolved for every directory a listing walks into)."""
        if not path.startswith("/"):
            raise NotFound(f"{path}: not found")
        listed = self._listed_dirs.get(path)
        if listed is not None:
            return listed
        parts = [p for p in posixpath.normpath(path).split("/") if p]
        v: Optional[VirtualDir] = self._layout["/"]
        tree: Optional[str] = None
        node: Optional[Node] = None
        snapshot: Optional[Snapshot] = None
        walked, inner, name = "", "/", ""
        i = 0
        while i < len(parts):
            name = parts[i]
            walked += "/" + name
            if v is not None and v.names is not None:
                child = v.names.get(name) or v.hidden.get(name)
                if child is None:
                    raise NotFound(f"{path}: not found")
                if child.link_target and i + 1 < len(parts):  # `latest/...`: follow the link
                    parts[i] = child.link_target
                    walked = walked[:walked.rfind("/")]
                    continue
                v, snapshot = child, child.snapshot
                tree = child.snapshot.tree if child.snapshot is not None and not child.link_target else None
            elif tree:
                node = self._children(tree)[1].get(name)
                if node is None:
                    raise NotFound(f"{path}: not found")
                inner = inner.rstrip("/") + "/" + name
                v, tree = None, node.subtree if node.type == "dir" else None
            else:
                raise NotFound(f"{path}: not found")
            i += 1
        if v is not None:
            return self._virtual(walked or "/", name, v)
        return _Found(node_entry(walked, node, snapshot, self.options.owner_root), None, tree, inner)

    def lookup(self, path: str) -> FsEntry:
        """The entry at path ("/", "/snapshots/latest", "/ids/<id>/home/a.txt"); NotFound."""
        self.refresh()
        return self._resolve(path).entry

    def list_dir(self, path: str) -> List[FsEntry]:
        """The entries of the directory at path, in name order (bytewise)."""
        self.refresh()
        found = self._resolve(path)
        if found.entry.kind != "dir":
            raise NotADirectory(f"{path}: not a directory")
        base = found.entry.path.rstrip("/")
        if found.virtual is not None and found.virtual.names is not None:
            items = sorted(found.virtual.names.items(), key=lambda kv: kv[0].encode("utf-8", "surrogateescape"))
            return [self._virtual(f"{base}/{name}", name, v).entry for name, v in items]
        if not found.tree:
            return []
        sn, owner_root, listed = found.entry.snapshot, self.options.owner_root, self._listed_dirs
        entries = listing_entries(base, self._children(found.tree)[0], sn, owner_root)
        if len(listed) > LISTED_DIRS_KEPT:
            listed.clear()
        inner = found.inner.rstrip("/")
        for e in entries:
            if e.kind == "dir":
                listed[e.path] = _Found(e, None, e.node.subtree, f"{inner}/{e.name}")
        return entries

    def open_reader(self, path: str) -> FileReader:
        """A reader of the regular file at path, for repeated reads (read(offset, size))."""
        found = self._resolve(path)
        entry = found.entry
        if entry.kind != "file":
            raise NotAFile(f"{path}: not a regular file")
        key = (entry.snapshot.id, found.inner)
        with self._tree_lock:
            reader = self._readers.get(key)
            if reader is not None:
                self._readers.move_to_end(key)
                return reader
        reader = FileReader(self.blobs, entry.node.content, entry.size)
        with self._tree_lock:
            self._readers[key] = reader
            while len(self._readers) > READER_CACHE:
                self._readers.popitem(last=False)
        return reader

    def read(self, path: str, offset: int, size: int) -> bytes:
        """size bytes of the file at path from offset (fewer at its end); thread-safe."""
        return self.open_reader(path).read(offset, size)

    def close(self) -> None:
        self.blobs.close()
