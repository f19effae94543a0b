"""Which blobs the snapshots still use: every tree reachable from their root trees and the
data blobs of every file in them. Each tree is loaded once however many snapshots share
it, and only the fields that name blobs (type, content, subtree) are read from its JSON:
decoding whole nodes would cost most of prune's time on a large repository."""
import json
from typing import Callable, Dict, Iterable, Set

from ...errors import IntegrityError, RestiqueError

UsedBlobs = Dict[str, Set[str]]  # blob type -> ids


def find_used_blobs(repo, root_trees: Iterable[str], snapshot_done: Callable[[], None] = lambda: None) -> UsedBlobs:
    """{"tree": ids, "data": ids} used by the trees below root_trees. A tree that cannot be
    loaded or decoded raises RestiqueError naming it (prune must then delete nothing)."""
    trees: Set[str] = set()
    data: Set[str] = set()
    for root in root_trees:
        if root not in trees:
            trees.add(root)
            stack = [root]
            while stack:
                tree_id = stack.pop()
                for kind, content, subtree, name in _entries(repo, tree_id):
                    if kind == "file":
                        if content:
                            data.update(content)
                    elif kind == "dir":
                        if not subtree:
                            raise IntegrityError(f"tree {tree_id[:8]}: dir node {name!r} has no subtree")
                        if subtree not in trees:
                            trees.add(subtree)
                            stack.append(subtree)
        snapshot_done()
    return {"tree": trees, "data": data}


def _entries(repo, tree_id: str):
    """(type, content, subtree, name) of each node of a tree."""
    try:
        raw = repo.load_blob("tree", tree_id)
    except RestiqueError as exc:
        raise RestiqueError(f"unable to load tree {tree_id[:8]}: {exc}") from None
    try:
        nodes = json.loads(raw).get("nodes") or ()
        return [(n.get("type"), n.get("content"), n.get("subtree"), n.get("name")) for n in nodes]
    except (ValueError, AttributeError, TypeError) as exc:
        raise IntegrityError(f"tree {tree_id[:8]} is damaged: {exc}") from None
