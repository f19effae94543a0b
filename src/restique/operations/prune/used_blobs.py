"""Which blobs the snapshots still use: every tree reachable from their root trees and the
data blobs of every file in them. Each tree is loaded once however many snapshots share it.

Only the ids matter here, so a tree in the plain form restic writes is not decoded as JSON:
the native scanner (restique._treescan) reads the `subtree` and `content` ids straight from
its bytes. The scanner answers only when the text is strict JSON with restic's keys, each
once, and ids of 64 lowercase hex digits; anything else is decoded as JSON.

The trees are walked level by level: the trees of one level are loaded together, pack by
pack (tree_packs), instead of opening a pack file per tree.
"""
from typing import Callable, Dict, Iterable, Iterator, List, Optional, Set, Tuple

from ..._treescan import scan
from ...errors import IntegrityError
from ...model import gojson
from .tree_packs import TreeBlobsUnavailable

UsedBlobs = Dict[str, Set[str]]  # blob type -> ids
LoadTree = Callable[[str], bytes]
LoadTrees = Callable[[List[str]], Iterable[Tuple[str, bytes]]]


def find_used_blobs(load_tree: LoadTree, root_trees: Iterable[str],
                    snapshot_done: Callable[[], None] = lambda: None,
                    load_trees: Optional[LoadTrees] = None) -> UsedBlobs:
    """{"tree": ids, "data": ids} used by the trees below root_trees; load_tree(id) gives a
    tree's plaintext, load_trees(ids) (optional) several at once in any order, raising
    TreeBlobsUnavailable for what only load_tree can tell about. A tree that cannot be
    loaded or decoded raises RestiqueError (prune must then delete nothing)."""
    trees: Set[str] = set()
    data: Set[str] = set()
    for root in root_trees:
        if root not in trees:
            trees.add(root)
            level = [root]
            while level:
                found: List[str] = []
                for tree_id, raw in load_level(level, load_tree, load_trees):
                    subtrees, contents = tree_references(tree_id, raw)
                    data.update(contents)
                    for subtree in subtrees:
                        if subtree not in trees:
                            trees.add(subtree)
                            found.append(subtree)
                level = found
        snapshot_done()
    return {"tree": trees, "data": data}


def load_level(tree_ids: List[str], load_tree: LoadTree, load_trees: Optional[LoadTrees]
               ) -> Iterator[Tuple[str, bytes]]:
    """(id, plaintext) of every tree of tree_ids: together when load_trees can, the rest
    one by one (whose errors are then the caller's usual ones)."""
    done: Set[str] = set()
    if load_trees is not None:
        try:
            for tree_id, raw in load_trees(tree_ids):
                done.add(tree_id)
                yield tree_id, raw
            return
        except TreeBlobsUnavailable:
            pass
    for tree_id in tree_ids:
        if tree_id not in done:
            yield tree_id, load_tree(tree_id)


def tree_references(tree_id: str, raw: bytes) -> Tuple[List[str], List[str]]:
    """(subtree ids of its directories, content ids of its files) of one tree blob."""
    scanned = _scanned_references(raw)
    return scanned if scanned is not None else _decode_references(tree_id, raw)


def _scanned_references(raw: bytes):
    scanned = scan(raw) if isinstance(raw, bytes) else None
    return None if scanned is None else (scanned[0], scanned[1])


def _decode_references(tree_id: str, raw: bytes) -> Tuple[List[str], List[str]]:
    try:
        nodes = gojson.loads(raw).get("nodes") or ()
        subtrees, data = [], []
        for node in nodes:
            kind = node.get("type")
            if kind == "file":
                data += node.get("content") or ()
            elif kind == "dir":
                if not node.get("subtree"):
                    raise IntegrityError(f"tree {tree_id[:8]}: dir node {node.get('name')!r} has no subtree")
                subtrees.append(node["subtree"])
    except (ValueError, AttributeError, TypeError) as exc:
        raise IntegrityError(f"tree {tree_id[:8]} is damaged: {exc}") from None
    if not all(isinstance(i, str) for i in data + subtrees):
        raise IntegrityError(f"tree {tree_id[:8]} is damaged: an id is not a string")
    return subtrees, data
