"""The structure check: index files, pack files against the index, and every tree reachable
from the snapshots (each loaded once) with every blob it references present in the index.
Nothing here reads pack data beyond the tree blobs."""
import functools
import threading
from collections import OrderedDict, defaultdict, deque
from concurrent.futures import Executor, Future, ThreadPoolExecutor
from typing import Callable, Deque, Dict, Iterable, List, Optional, Set, Tuple

from ..._treescan import scan
from ...backend.base import BackendNotFound, BackendShortRead, FileType, remote_connections
from ...errors import RestiqueError
from ...model import gojson
from ...model.names import go_quote, go_unquote
from ...repository import compact_index
from ...repository.compact_index import packs_of_index_file
from ...repository.crypto import OVERHEAD
from ...repository.index import IndexEntry
from ...repository.pack_files import list_pack_sizes

from . import Problem
from .indexed_packs import IndexedPacks

Report = Callable[[Problem], None]
Progress = Callable[..., None]

# a pack's size from its index entries: header length field + sealed header overhead, and
# per blob its stored length plus its header entry (type, length, [uncompressed], id)
_HEADER_FIXED = 4 + OVERHEAD
_PLAIN_ENTRY = 1 + 4 + 32
_COMPRESSED_ENTRY = 1 + 4 + 4 + 32
_NULL_ID = "0" * 64
_OTHER_TYPES = frozenset(("symlink", "socket", "chardev", "dev", "fifo"))  # nothing to check
_TREES_IN_FLIGHT = 64  # trees loaded ahead of the checking: bounds the memory they take
_LOADER_THREADS = 4
_MAX_SPAN = 32 * 1024 * 1024  # largest part of a pack read at once for its tree blobs
_SPANS_KEPT = 64 * 1024 * 1024  # bytes of such parts kept while the walk may need them


def _id_set(ids: Iterable[str]) -> str:
    """Go's %v of a restic.IDSet: sorted short ids in braces."""
    return "{" + " ".join(sorted(i[:8] for i in ids)) + "}"


def expected_header_size(entries: Iterable[IndexEntry]) -> int:
    """A pack header's size with its length field, from the blobs it lists."""
    return _HEADER_FIXED + sum(_COMPRESSED_ENTRY if e.uncompressed_length else _PLAIN_ENTRY for e in entries)


def expected_pack_size(blobs: int, compressed: int, stored: int) -> int:
    """The size of a pack of `blobs` blobs, `compressed` of them compressed, `stored` bytes
    together (IndexedPacks.totals)."""
    return _HEADER_FIXED + compressed * _COMPRESSED_ENTRY + (blobs - compressed) * _PLAIN_ENTRY + stored


def load_indexes(repo, report: Report) -> IndexedPacks:
    """Load every index file into repo.index and return what they say each pack holds (the
    union of what the files say). A file that cannot be loaded, a pack that two files
    describe differently, a pack in several files (hint) and a pack holding both tree and
    data blobs (hint) are reported."""
    packs = IndexedPacks()
    listed_in: Dict[str, List[str]] = defaultdict(list)
    differ: Set[str] = set()
    for index_id in sorted(repo.list_ids(FileType.INDEX)):
        try:
            raw = repo.load_unpacked(FileType.INDEX, index_id)
            index_packs = packs_of_index_file(raw)
            repo.index.add_index_bytes(index_id, raw)  # natively: the same blobs, file by file
        except (RestiqueError, OSError) as exc:
            report(Problem("index_damaged", f"error loading index {index_id}: {exc}", index_id))
            continue
        del raw
        for pack_id, compact in index_packs:
            listed_in[pack_id].append(index_id)
            if pack_id not in packs:
                packs.put(pack_id, compact)
            else:  # rare: a pack in several index files
                known, blobs = set(packs.entries(pack_id)), set(compact_index.entries(compact))
                if known != blobs:
                    differ.add(pack_id)
                    packs.set(pack_id, list(known | blobs))
    repo.index_loaded = True
    mixed = {pack_id for pack_id in packs if packs.mixed(pack_id)}
    for pack_id in sorted(differ | mixed | {p for p, files in listed_in.items() if len(files) > 1}):
        _report_index_hints(pack_id, listed_in[pack_id], pack_id in differ, pack_id in mixed, report)
    return packs


def _report_index_hints(pack_id: str, listed_in: List[str], differ: bool, mixed: bool, report: Report) -> None:
    if differ:
        report(Problem("pack_indexes_differ", f"pack {pack_id} has different data in indexes: "
                       f"{_id_set(listed_in)}", pack_id))
    elif len(listed_in) > 1:
        report(Problem("duplicate_pack", f"pack {pack_id} contained in several indexes: "
                       f"{_id_set(listed_in)}", pack_id, is_error=False))
    if mixed:
        report(Problem("mixed_pack", f"pack {pack_id[:8]} contains a mix of tree and data blobs",
                       pack_id, is_error=False))


def check_packs(repo, indexed: IndexedPacks, report: Report) -> Dict[str, int]:
    """Every indexed pack must exist with the size its index entries add up to; a pack file
    no index lists is reported as a hint. Returns pack id -> expected size."""
    expected = {pack_id: expected_pack_size(*indexed.totals(pack_id)) for pack_id in indexed}
    present = list_pack_sizes(repo)
    for pack_id in sorted(expected):
        size = present.pop(pack_id, None)
        if size is None:
            report(Problem("pack_missing", f"pack {pack_id}: does not exist", pack_id))
        elif size != expected[pack_id]:
            report(Problem("pack_size", f"pack {pack_id}: unexpected file size: got {size}, "
                            f"expected {expected[pack_id]}", pack_id))
    for pack_id in sorted(present):
        report(Problem("pack_orphaned", f"pack {pack_id}: not referenced in any index", pack_id, is_error=False))
    return expected


def check_snapshots(repo, options, snapshot_ids: List[str], report: Report, progress: Progress,
                    indexed: Optional[IndexedPacks] = None
                    ) -> Tuple[Optional[Set[Tuple[str, str]]], int]:
    """Walk the trees of the snapshots (all, or those options select), each tree once.
    Returns the (type, id) of every blob they use when options select snapshots (to know
    which packs to read), else None; and the number of snapshots walked. indexed (pack id
    -> its blobs, from load_indexes): the tree blobs of a pack are read in one piece."""
    roots = _snapshot_trees(repo, options, snapshot_ids, report)
    used: Optional[Set[Tuple[str, str]]] = set() if options.filtered else None
    walker = _TreeChecker(repo, report, used, _TreeSpans(repo, indexed or IndexedPacks()))
    progress(0, len(roots))
    with _tree_loaders(repo) as pool:
        for done, tree_id in enumerate(roots, 1):
            walker.walk(tree_id, pool)
            progress(done, len(roots))
    progress(len(roots), len(roots), True)
    return used, len(roots)


def _snapshot_trees(repo, options, snapshot_ids: List[str], report: Report) -> List[str]:
    """The root tree of each snapshot to check; a snapshot that cannot be loaded is reported."""
    from ..snapshot_lookup import find_filtered_snapshots, load_snapshot

    if options.filtered:
        def warn(message: str) -> None:
            report(Problem("snapshot_lookup", message, is_error=not message.startswith("Ignoring filters")))

        return [sn.tree for sn in find_filtered_snapshots(repo, options.snapshot_ids, options.filter, warn=warn)
                if sn.tree]
    roots = []
    for sid in sorted(snapshot_ids):
        try:
            sn = load_snapshot(repo, sid)
        except (RestiqueError, OSError, ValueError, KeyError, TypeError) as exc:
            report(Problem("snapshot", f"snapshot error {sid}: {exc}", sid))
            continue
        if not sn.tree:
            report(Problem("snapshot", f"snapshot error {sid}: snapshot has no tree", sid))
            continue
        roots.append(sn.tree)
    return roots


def _tree_loaders(repo):
    """Threads that load trees ahead, for a remote backend (each load waits a round trip).
    A local one answers in microseconds: there threads only add hand-offs of Python's
    interpreter lock, and loading in line is several times faster."""
    if remote_connections(repo.backend):
        return ThreadPoolExecutor(_LOADER_THREADS, thread_name_prefix="check-trees")
    return _InLine()


class _InLine(Executor):
    def submit(self, fn, *args, **kwargs) -> Future:
        future: Future = Future()
        future.set_result(fn(*args, **kwargs))
        return future


class _TreeChecker:
    """Loads trees ahead (in threads for a remote backend), reads the plain ones with the
    native scanner, decodes the others as plain JSON (no Node objects) and checks each entry
    as restic does."""

    def __init__(self, repo, report: Report, used: Optional[Set[Tuple[str, str]]],
                 spans: Optional["_TreeSpans"] = None):
        self.repo = repo
        self.report = report
        self.used = used
        self.seen: Set[str] = set()
        self.spans = spans

    def walk(self, root: str, pool: Executor) -> None:
        """Trees are loaded ahead (up to _TREES_IN_FLIGHT) while the ones already loaded are
        checked, so the loaders never wait for the checking and the other way round."""
        pending = [root]
        in_flight: Deque = deque()
        while pending or in_flight:
            while pending and len(in_flight) < _TREES_IN_FLIGHT:
                tree_id = pending.pop()
                if tree_id not in self.seen:
                    self.seen.add(tree_id)
                    in_flight.append(pool.submit(self._load, tree_id))
                    if self.used is not None:
                        self.used.add(("tree", tree_id))
            if in_flight:
                tree_id, raw, error = in_flight.popleft().result()
                errors = [error] if error else self._check_tree(tree_id, raw, pending)
                if errors:
                    self.report(Problem("tree", f"error for tree {tree_id[:8]}:", tree_id, details=errors))

    def _load(self, tree_id: str):
        loc = self.repo.index.lookup("tree", tree_id)
        if loc is None:
            return tree_id, None, f"id {tree_id} not found in repository"
        raw = self.spans.blob(tree_id, loc) if self.spans is not None else None
        if raw is not None:
            return tree_id, raw, None
        try:
            return tree_id, self.repo.blobs.load("tree", tree_id, loc), None
        except (RestiqueError, BackendNotFound, BackendShortRead, OSError) as exc:
            return tree_id, None, str(exc)

    def _check_tree(self, tree_id: str, raw: bytes, pending: List[str]) -> List[str]:
        if self._check_scanned(raw, pending):
            return []
        try:
            nodes = gojson.loads(raw)["nodes"] or []
            if not isinstance(nodes, list):
                raise ValueError("nodes is not a list")
        except (ValueError, KeyError, TypeError) as exc:
            return [f"tree {tree_id}: failed to decode tree {tree_id}: {exc}"]
        try:
            return self._check_nodes(tree_id, nodes, pending)
        except (TypeError, AttributeError) as exc:  # an entry that is not an object, an odd id
            return [f"tree {tree_id}: failed to decode tree {tree_id}: {exc}"]

    def _check_scanned(self, raw: bytes, pending: List[str]) -> bool:
        """The common case decided from the native scan of the tree's bytes: every node named,
        of a known type, each file with a content list whose blobs are all indexed, each
        directory with a subtree. False (nothing done) for anything else, which the JSON
        path then checks node by node, in restic's words."""
        scanned = scan(raw, False, True) if isinstance(raw, bytes) else None
        if scanned is None:
            return False
        subtrees, contents = scanned[0], scanned[1]
        if not all(map(functools.partial(self.repo.index.has, "data"), contents)):
            return False
        seen = self.seen
        pending += [subtree for subtree in subtrees if subtree not in seen]
        if self.used is not None:
            self.used.update(("data", blob_id) for blob_id in contents)
        return True

    def _check_nodes(self, tree_id: str, nodes: list, pending: List[str]) -> List[str]:
        """The common case (a named file whose blobs are all indexed, a named directory with
        a subtree) is decided inline; anything else goes to _check_node for restic's words."""
        has, seen, used = self.repo.index.has, self.seen, self.used
        errors: List[str] = []
        for node in nodes:
            kind = node.get("type")
            if kind == "file":
                content = node.get("content")
                if content is not None and node.get("name"):
                    for blob_id in content:
                        if not has("data", blob_id):
                            break
                    else:
                        if used is not None:
                            used.update(("data", blob_id) for blob_id in content)
                        continue
            elif kind == "dir":
                subtree = node.get("subtree")
                if subtree and subtree != _NULL_ID and node.get("name"):
                    if subtree not in seen:
                        pending.append(subtree)
                    continue
            elif kind in _OTHER_TYPES and node.get("name"):
                continue
            errors += [f"tree {tree_id}: {message}" for message in self._check_node(node, pending)]
        return errors

    def _check_node(self, node: dict, pending: List[str]) -> List[str]:
        kind = node.get("type")
        name = node.get("name") or ""
        errors: List[str] = []
        if kind == "file":
            content = node.get("content")
            if content is None:
                errors.append(f"file {_quoted(name)} has nil blob list")
            for n, blob_id in enumerate(content or ()):
                if blob_id == _NULL_ID:
                    errors.append(f"file {_quoted(name)} blob {n} has null ID")
                elif not self._has_data(blob_id):
                    errors.append(f"file {_quoted(name)} blob {blob_id} not found in index")
                elif self.used is not None:
                    self.used.add(("data", blob_id))
        elif kind == "dir":
            subtree = node.get("subtree")
            if subtree is None:
                return [f"dir node {_quoted(name)} has no subtree"]
            if subtree == _NULL_ID:
                return [f"dir node {_quoted(name)} subtree id is null"]
            if subtree not in self.seen:
                pending.append(subtree)
        elif kind not in _OTHER_TYPES:
            errors.append(f"node {_quoted(name)} with invalid type {go_quote(str(kind or ''))}")
        if not name:
            errors.append("node with empty name")
        return errors

    def _has_data(self, blob_id) -> bool:
        return isinstance(blob_id, str) and self.repo.index.has("data", blob_id)


class _TreeSpans:
    """Tree blobs decoded from the part of their pack that holds all its tree blobs, read
    once: a snapshot's trees lie side by side in a few packs, and reading them one by one
    opened and read a pack file per tree. Only the good case is served here: a part that
    cannot be read, or a blob that does not decode from it, returns None, and the caller's
    own load of that blob reports the problem in its usual words."""

    def __init__(self, repo, indexed: IndexedPacks):
        self.repo = repo
        self.indexed = indexed
        self._parts: "OrderedDict[str, Tuple[int, bytes]]" = OrderedDict()  # pack -> (offset, bytes)
        self._kept = 0
        self._unusable: Set[str] = set()
        self._lock = threading.Lock()  # loaders run in threads for a remote backend

    def blob(self, tree_id: str, loc) -> Optional[bytes]:
        with self._lock:
            part = self._part(loc.pack_id)
        if part is None:
            return None
        start, data = part
        at = loc.offset - start
        if at < 0 or at + loc.length > len(data):
            return None
        try:
            with memoryview(data) as view:
                return self.repo.blobs.decode(tree_id, view[at:at + loc.length], loc)
        except Exception:  # noqa: BLE001 - the blob's own load reports what is wrong
            return None

    def _part(self, pack_id: str) -> Optional[Tuple[int, bytes]]:
        part = self._parts.get(pack_id)
        if part is not None:
            self._parts.move_to_end(pack_id)
            return part
        if pack_id in self._unusable:
            return None
        trees = [e for e in self.indexed.entries(pack_id) if e.type == "tree"]
        start = min((e.offset for e in trees), default=0)
        end = max((e.offset + e.length for e in trees), default=0)
        try:
            if not trees or end - start > _MAX_SPAN:
                raise ValueError("no part to read")
            data = self.repo.load_pack(pack_id, start, end - start)
            if len(data) != end - start:
                raise ValueError("short read")
        except Exception:  # noqa: BLE001 - the blob's own load reports what is wrong
            self._unusable.add(pack_id)
            return None
        self._parts[pack_id] = part = (start, data)
        self._kept += len(data)
        while self._kept > _SPANS_KEPT and len(self._parts) > 1:
            _, (_, dropped) = self._parts.popitem(last=False)
            self._kept -= len(dropped)
        return part


def _quoted(name: str) -> str:
    """Go's %q of a node name as restic decoded it."""
    return go_quote(go_unquote(name) if "\\" in name else name)
