"""Depth-first traversal of a snapshot's tree, in restic's order.

Entries come out as ``(path, node)``: a directory before its contents, the entries of a
directory sorted by name (bytewise, as restic stores them), subtrees loaded only when the
walk reaches them. Paths are absolute within the snapshot ("/srv/data/file"), built from
names that keep undecodable bytes as surrogate escapes (``os.fsencode`` gives the bytes back).

ls, find, diff, stats, dump and restore share this; each decides which subtrees to enter
with a ``descend(path, node)`` predicate instead of filtering afterwards, so pruned subtrees
are never loaded.
"""
from collections import OrderedDict
from typing import Callable, Iterator, List, NamedTuple, Optional, Tuple

from ..errors import IntegrityError, RestiqueError
from ..model.node import Node, decode_tree, decode_tree_lazy

Descend = Callable[[str, Node], bool]
OnError = Callable[[str, Exception], None]


def _sort_key(node: Node) -> bytes:
    return node.name.encode("utf-8", "surrogateescape")


def _in_order(nodes: List[Node]) -> bool:
    """Whether nodes are already sorted as restic stores them (always, unless another program
    wrote the tree). Checked on ASCII names only, where text order is byte order: any other
    name leaves the decision to the exact byte-wise sort."""
    previous = ""
    for node in nodes:
        name = node.name
        if not name.isascii() or name < previous:
            return False
        previous = name
    return True


def join(parent: str, name: str) -> str:
    """Snapshot path of name inside the directory parent ("/" for the root)."""
    return parent + name if parent.endswith("/") else parent + "/" + name


class TreeLoader:
    """Loads and decodes tree blobs, keeping the most recently used ones.

    The cache is bounded by the plaintext size of the trees it holds (decoded trees take
    about 3.5 times that). It evicts the least recently used tree; with evict=False it keeps
    the first trees that fit instead, which suits walking the same snapshot twice in the
    same order (restore does that): an LRU cache smaller than the snapshot would miss on
    every tree of the second walk, this one hits on the part it holds.
    """

    decode = staticmethod(decode_tree)

    def __init__(self, repo, cache_bytes: int = 32 * 1024 * 1024, evict: bool = True):
        self.repo = repo
        self.cache_bytes = cache_bytes
        self.evict = evict
        self._cache: "OrderedDict[str, Tuple[List[Node], int]]" = OrderedDict()
        self._cached = 0

    def __call__(self, tree_id: str) -> List[Node]:
        hit = self._cache.get(tree_id)
        if hit is not None:
            self._cache.move_to_end(tree_id)
            return hit[0]
        raw = self.repo.load_blob("tree", tree_id)
        try:
            nodes = self.decode(raw)
        except (ValueError, TypeError, AttributeError, KeyError) as exc:
            raise IntegrityError(f"tree {tree_id[:8]} is damaged: {exc}") from None
        if not _in_order(nodes):
            nodes.sort(key=_sort_key)
        if self.cache_bytes and len(raw) <= self.cache_bytes // 4:
            if self.evict:
                self._cache[tree_id] = (nodes, len(raw))
                self._cached += len(raw)
                while self._cached > self.cache_bytes:
                    _, (_, size) = self._cache.popitem(last=False)
                    self._cached -= size
            elif self._cached + len(raw) <= self.cache_bytes:
                self._cache[tree_id] = (nodes, len(raw))
                self._cached += len(raw)
        return nodes


def _entries(load, path: str, tree_id: str, on_error: Optional[OnError]):
    """An iterator over the entries of tree_id, or None when it cannot be loaded and
    on_error (given) was told."""
    try:
        return iter(load(tree_id))
    except (RestiqueError, OSError, EOFError) as exc:
        if on_error is None:
            raise
        on_error(path, exc)
        return None


def _subtree_entries(load, path: str, node: Node, on_error: Optional[OnError]):
    """The entries of directory node's subtree, as _entries; a directory without a subtree
    is an error of its own."""
    if not node.subtree:
        exc = IntegrityError(f"directory {path} has no subtree")
        if on_error is None:
            raise exc
        on_error(path, exc)
        return None
    return _entries(load, path, node.subtree, on_error)


class WalkEvent(NamedTuple):
    """One step of a walk: an entry (leaving=False), or the end of a directory whose
    subtree was entered (leaving=True, same path and node as when it was entered)."""

    path: str
    node: Node
    leaving: bool = False


def walk_events(repo, tree_id: str, base: str = "/", descend: Optional[Descend] = None,
                on_error: Optional[OnError] = None, loader: Optional[Callable[[str], List[Node]]] = None
                ) -> Iterator[WalkEvent]:
    """Every entry below tree_id, plus a leaving event after each directory entered.

    descend(path, node) decides for each directory whether its subtree is loaded and walked
    (default: always). It is called when the consumer asks for the next event after the
    directory's own, so the consumer can make the decision while handling that event. A subtree that cannot be loaded is passed to on_error(path, exc) and
    skipped; without on_error the exception propagates. The root tree's errors are reported
    under base.
    """
    load = loader or TreeLoader(repo, cache_bytes=0)
    root = _entries(load, base, tree_id, on_error)
    if root is None:
        return
    # stack of (directory path, directory node or None for the root, iterator over entries)
    stack: List[Tuple[str, Optional[Node], Iterator[Node]]] = [(base, None, root)]
    while stack:
        dir_path, dir_node, entries = stack[-1]
        node = next(entries, None)
        if node is None:
            stack.pop()
            if dir_node is not None:
                yield WalkEvent(dir_path, dir_node, True)
            continue
        path = join(dir_path, node.name)
        yield WalkEvent(path, node)
        if node.type == "dir" and (descend is None or descend(path, node)):
            sub = _subtree_entries(load, path, node, on_error)
            if sub is not None:
                stack.append((path, node, sub))


def walk(repo, tree_id: str, base: str = "/", descend: Optional[Descend] = None,
         on_error: Optional[OnError] = None, loader: Optional[Callable[[str], List[Node]]] = None
         ) -> Iterator[Tuple[str, Node]]:
    """(path, node) for every entry below tree_id, depth-first in name order; descend and
    on_error as for walk_events. The same walk without leaving events, in a tighter loop:
    ls, dump and stats spend most of their Python time here."""
    load = loader or TreeLoader(repo, cache_bytes=0)
    root = _entries(load, base, tree_id, on_error)
    if root is None:
        return
    stack = [(base if base.endswith("/") else base + "/", root)]  # (path prefix, entries left)
    while stack:
        prefix, entries = stack[-1]
        for node in entries:
            path = prefix + node.name
            yield path, node
            if node.type == "dir" and (descend is None or descend(path, node)):
                sub = _subtree_entries(load, path, node, on_error)
                if sub is not None:
                    stack.append((path + "/", sub))
                    break  # continue with the subtree; this level resumes afterwards
        else:
            stack.pop()


def find_tree_directory(repo, tree_id: str, path: str,
                        loader: Optional[Callable[[str], List[Node]]] = None) -> str:
    """Tree id of the directory at path ("srv/data" or "/srv/data") below tree_id; restic's
    errors: `path srv/x: not found`, `path srv/file: not a directory`."""
    from ..errors import NotFound

    load = loader or TreeLoader(repo, cache_bytes=0)
    walked = ""
    for name in path.split("/"):
        if name in ("", "."):
            continue
        walked = f"{walked}/{name}" if walked else name
        try:
            nodes = load(tree_id)
        except RestiqueError as exc:
            raise RestiqueError(f"path {walked}: {exc}") from None
        node = next((n for n in nodes if n.name == name), None)
        if node is None:
            raise NotFound(f"path {walked}: not found")
        if node.type != "dir" or not node.subtree:
            raise NotFound(f"path {walked}: not a directory")
        tree_id = node.subtree
    return tree_id


class LazyTreeLoader(TreeLoader):
    """A TreeLoader (same cache) whose entries are model.node.LazyNode: name, type and subtree
    decoded at once, the other fields on first use. For walks that look closely at only a few
    entries, such as find by name; a walk that reads every entry's fields is better served by
    TreeLoader."""

    decode = staticmethod(decode_tree_lazy)
