"""Rewriting a snapshot's tree: a per-node function keeps, drops or replaces each entry, and
only the trees that change are encoded and saved again; an unchanged subtree keeps its id.

`rewrite` (excludes) and `repair snapshots` (missing contents and trees) share this. The
node function must not modify the node it is given (trees are cached and shared): it returns
that same object to keep it, a new Node (dataclasses.replace) to change it, or None to drop
it. The walk uses an explicit stack, so a deep directory hierarchy cannot exhaust Python's
recursion limit.
"""
import hashlib
from dataclasses import dataclass, field, replace
from typing import Callable, Dict, Iterator, List, Optional

from ..errors import IntegrityError, RestiqueError
from ..model.node import Node, check_node_name, encode_node
from .walker import TreeLoader, join

# (node, path) -> the node itself, a replacement, or None to drop it
RewriteNode = Callable[[Node, str], Optional[Node]]
# (tree id, path, error) -> the entries of a replacement tree, or None to drop the directory;
# raising fails the rewrite
RewriteFailedTree = Callable[[Optional[str], str, Exception], Optional[List[Node]]]
KeepEmptyDirectory = Callable[[str], bool]


class TreeEncodingError(RestiqueError):
    """A tree whose entries would not encode back to the same bytes: rewriting it would lose
    information (fields this version does not know)."""


@dataclass
class RewrittenTree:
    """The result for one tree: its new id (None: the directory is dropped) and the number
    and total size of the files kept below it (restic's SnapshotSize)."""
    tree_id: Optional[str]
    files: int = 0
    bytes: int = 0


@dataclass
class _Frame:
    """A directory being rewritten: its entries so far and the subdirectory entered."""
    path: str
    tree_id: str
    nodes: List[Node]
    entries: Iterator[Node]
    kept: List[Node] = field(default_factory=list)
    changed: bool = False
    files: int = 0
    bytes: int = 0
    entered: Optional[Node] = None  # the dir entry whose subtree is on top of the stack


class TreeRewriter:
    """Rewrites trees with one node function; reused across the snapshots of one command.

    path_independent: the node function depends only on the node, so every result is
    cached by tree id (repair snapshots). Otherwise results are cached by (path, tree id)
    and only for subtrees that did not change, which no node function has anything to say
    about (so messages it emits are the same as without the cache).
    check_encoding: refuse to re-encode a changed tree whose original entries do not encode
    back to its id (restic's "cannot encode tree ... without losing information").
    normalize: save every tree as this version encodes it, even when no entry changed
    (repair snapshots converts trees with fields it does not know, as restic's does).
    dry_run: compute the new trees' ids without saving them.
    """

    def __init__(self, repo, rewrite_node: Optional[RewriteNode] = None,
                 rewrite_failed_tree: Optional[RewriteFailedTree] = None,
                 keep_empty_directory: Optional[KeepEmptyDirectory] = None,
                 path_independent: bool = False, check_encoding: bool = True, normalize: bool = False,
                 dry_run: bool = False,
                 loader=None):
        self.repo = repo
        self.rewrite_node = rewrite_node or (lambda node, path: node)
        self.rewrite_failed_tree = rewrite_failed_tree
        self.keep_empty_directory = keep_empty_directory or (lambda path: True)
        self.path_independent = path_independent
        self.check_encoding = check_encoding
        self.normalize = normalize
        self.dry_run = dry_run
        self.load = loader or TreeLoader(repo)
        self._done: Dict[object, RewrittenTree] = {}
        self.trees_saved = 0

    def rewrite(self, tree_id: Optional[str], path: str = "/") -> RewrittenTree:
        """The rewritten tree for tree_id at path (the snapshot root by default)."""
        start = self._enter(path, tree_id)
        if isinstance(start, RewrittenTree):
            return start
        stack = [start]
        while True:
            frame = stack[-1]
            node = next(frame.entries, None)
            if node is None:
                done = self._finish(stack.pop())
                if not stack:
                    return done
                self._attach(stack[-1], done)
                continue
            node_path = join(frame.path, node.name)
            new = self.rewrite_node(node, node_path)
            if new is None:
                frame.changed = True
                continue
            if new is not node:
                frame.changed = True
            if new.type != "dir":
                self._keep(frame, new)
                continue
            sub = self._enter(node_path, new.subtree)
            frame.entered = new
            if isinstance(sub, RewrittenTree):
                self._attach(frame, sub)
            else:
                stack.append(sub)

    # --- steps ---
    def _key(self, path: str, tree_id: Optional[str]):
        return tree_id if self.path_independent else (path, tree_id)

    def _enter(self, path: str, tree_id: Optional[str]):
        """A frame for the tree, or its result when it is cached or could not be loaded."""
        cached = self._done.get(self._key(path, tree_id))
        if cached is not None:
            return cached
        try:
            if not tree_id:
                raise IntegrityError(f"directory {path} has no subtree")
            nodes = self.load(tree_id)
        except (RestiqueError, OSError, EOFError) as exc:
            return self._replace_failed(path, tree_id, exc)
        return _Frame(path, tree_id, nodes, iter(nodes))

    def _replace_failed(self, path: str, tree_id: Optional[str], exc: Exception) -> RewrittenTree:
        if self.rewrite_failed_tree is None:
            raise exc
        replacement = self.rewrite_failed_tree(tree_id, path, exc)
        if replacement is None:
            result = RewrittenTree(None)
        else:
            result = RewrittenTree(self._save(replacement, {}))
        if self.path_independent and tree_id:
            self._done[tree_id] = result
        return result

    def _keep(self, frame: _Frame, node: Node) -> None:
        frame.kept.append(node)
        if node.type == "file":
            frame.files += 1
            frame.bytes += node.size

    def _attach(self, frame: _Frame, sub: RewrittenTree) -> None:
        """Put the rewritten subtree of the entered directory into its parent."""
        node, frame.entered = frame.entered, None
        if sub.tree_id is None:
            frame.changed = True
            return
        if sub.tree_id != node.subtree:
            node = replace(node, subtree=sub.tree_id)
            frame.changed = True
        frame.kept.append(node)
        frame.files += sub.files
        frame.bytes += sub.bytes

    def _finish(self, frame: _Frame) -> RewrittenTree:
        encoded: Dict[int, str] = {}  # id(node) -> its JSON, for the nodes of the original tree
        if not frame.kept and not self.keep_empty_directory(frame.path):
            result = RewrittenTree(None, frame.files, frame.bytes)
        elif not frame.changed and not (self.normalize and not self._encodes_stably(frame, encoded)):
            result = RewrittenTree(frame.tree_id, frame.files, frame.bytes)
        else:
            if self.check_encoding and not self.normalize and not self._encodes_stably(frame, encoded):
                raise TreeEncodingError(f'cannot encode tree at "{frame.path}" without losing information')
            result = RewrittenTree(self._save(frame.kept, encoded), frame.files, frame.bytes)
        if self.path_independent or result.tree_id == frame.tree_id:
            self._done[self._key(frame.path, frame.tree_id)] = result
        return result

    def _encodes_stably(self, frame: _Frame, encoded: Dict[int, str]) -> bool:
        """Do the original entries encode back to the tree's id? Keeps each entry's JSON in
        encoded, so that the entries kept unchanged are not encoded a second time."""
        try:
            parts = [encode_node(node) for node in frame.nodes]
        except (RestiqueError, ValueError, TypeError):
            return False
        encoded.update(zip(map(id, frame.nodes), parts))
        return hashlib.sha256(_tree_bytes(parts)).hexdigest() == frame.tree_id

    def _save(self, nodes: List[Node], encoded: Dict[int, str]) -> str:
        nodes = sorted(nodes, key=_name_bytes)
        parts = []
        for node in nodes:
            text = encoded.get(id(node))
            if text is None:
                check_node_name(node.name)
                text = encode_node(node)
            parts.append(text)
        raw = _tree_bytes(parts)
        if self.dry_run:
            return hashlib.sha256(raw).hexdigest()
        tree_id, new = self.repo.save_blob("tree", raw)
        self.trees_saved += new
        return tree_id


def _name_bytes(node: Node) -> bytes:
    return node.name.encode("utf-8", "surrogateescape")


def _tree_bytes(encoded_nodes: List[str]) -> bytes:
    """The tree blob of encoded entries (in name order), as model.node.encode_tree writes it."""
    return ('{"nodes":[' + ",".join(encoded_nodes) + "]}\n").encode("utf-8", "surrogateescape")
