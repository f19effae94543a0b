"""Which blobs the snapshots still use: every tree reachable from their root trees and the
data blobs of every file in them. Each tree is loaded once however many snapshots share it.

Only the ids matter here, so a tree in the compact form restic writes is not decoded as
JSON: its `"subtree":"ID"` and `"content":[...]` members are picked out of the text, which
is several times faster than json.loads on a large repository. In JSON text those byte
sequences can only be object members (quotes inside strings are escaped), so the pick is
exact; it is used only when the number of members found agrees with the number of
`"subtree"`, `"content"` and `"type":"dir"` tokens, and when no node has nested objects
(generic attributes). Anything else is decoded as JSON.
"""
from ...model import gojson
import re
from typing import Callable, Dict, Iterable, List, Set, Tuple

from ...errors import IntegrityError

UsedBlobs = Dict[str, Set[str]]  # blob type -> ids

_SUBTREE = re.compile(rb'"subtree":"([0-9a-f]{64})"')
_CONTENT = re.compile(rb'"content":(null|\[[^\]]*\])')


def find_used_blobs(load_tree: Callable[[str], bytes], root_trees: Iterable[str],
                    snapshot_done: Callable[[], None] = lambda: None) -> UsedBlobs:
    """{"tree": ids, "data": ids} used by the trees below root_trees; load_tree(id) gives a
    tree's plaintext. A tree that cannot be loaded or decoded raises RestiqueError (prune
    must then delete nothing)."""
    trees: Set[str] = set()
    data: Set[str] = set()
    for root in root_trees:
        if root not in trees:
            trees.add(root)
            stack = [root]
            while stack:
                tree_id = stack.pop()
                subtrees, contents = tree_references(tree_id, load_tree(tree_id))
                data.update(contents)
                for subtree in subtrees:
                    if subtree not in trees:
                        trees.add(subtree)
                        stack.append(subtree)
        snapshot_done()
    return {"tree": trees, "data": data}


def tree_references(tree_id: str, raw: bytes) -> Tuple[List[str], List[str]]:
    """(subtree ids of its directories, content ids of its files) of one tree blob."""
    picked = _pick_references(raw)
    return picked if picked is not None else _decode_references(tree_id, raw)


def _pick_references(raw: bytes):
    if b'"generic_attributes"' in raw:
        return None
    subtrees = _SUBTREE.findall(raw)
    if len(subtrees) != raw.count(b'"subtree"') or len(subtrees) != raw.count(b'"type":"dir"'):
        return None
    contents = _CONTENT.findall(raw)
    if len(contents) != raw.count(b'"content"'):
        return None
    data: List[str] = []
    for listed in contents:
        if len(listed) > 2 and listed != b"null":
            ids = listed[2:-2].decode("ascii", "replace").split('","')
            if len(listed) != 67 * len(ids) + 1:  # ["<64 hex>","<64 hex>"] and nothing else
                return None
            data += ids
    return [s.decode() for s in subtrees], data


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
