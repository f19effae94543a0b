"""`find --blob/--tree/--pack`: where in the snapshots restic objects are used, and which
pack files hold them (--show-pack-id).

IDs are given whole or as prefixes of any length; a prefix stands for every object whose
id starts with it. Blobs are searched in the files' content lists and trees in the
directories' subtrees, not in the index, so a snapshot that refers to a lost blob still
shows where. A pack stands for the blobs and trees it holds: from the index, or from the
pack's own header when the index does not list it.
"""
import re
from dataclasses import dataclass
from typing import Dict, Iterable, Iterator, List, Optional, Set, Tuple

from ..errors import NotFound, UsageError
from ..model.snapshot import Snapshot
from ..repository.index import BlobLocation
from ..repository.pack import header_length_from_tail, parse_header

_HEX = re.compile(r"[0-9a-f]{1,64}\Z")


class IdSet:
    """Full ids and id prefixes; `id in ids` is true for an id that is or starts with one."""

    def __init__(self, ids: Iterable[str] = ()):
        self.full: Set[str] = set()
        self.prefixes: Dict[int, Set[str]] = {}  # by length, for one set lookup per length
        for text in ids:
            self.add(text)

    def add(self, text: str) -> None:
        if len(text) == 64:
            self.full.add(text)
        else:
            self.prefixes.setdefault(len(text), set()).add(text)

    def __contains__(self, object_id) -> bool:
        if object_id in self.full:
            return True
        return any(object_id[:n] in group for n, group in self.prefixes.items())

    def __bool__(self) -> bool:
        return bool(self.full or self.prefixes)

    def given(self) -> List[str]:
        return sorted(self.full) + sorted(p for group in self.prefixes.values() for p in group)


def parse_ids(args: Iterable[str]) -> List[str]:
    """The ids or id prefixes given on the command line, in lower case; a UsageError for
    anything that cannot be the start of an id."""
    out = []
    for arg in args:
        text = arg.strip().lower()
        if not _HEX.match(text):
            raise UsageError(f'invalid ID "{arg}": an ID or ID prefix is 1 to 64 hexadecimal digits')
        out.append(text)
    return out


@dataclass(frozen=True)
class FoundObject:
    """A searched object where a snapshot uses it: kind "blob" in the file at path (listed
    by parent_tree), or kind "tree" as the directory at path."""

    kind: str
    id: str
    path: str
    parent_tree: str
    snapshot: Snapshot


@dataclass(frozen=True)
class ObjectPack:
    """For --show-pack-id: the pack holding a searched object (blob_type "data" or "tree");
    location None when the index does not know the object (id may then be a prefix)."""

    blob_type: str
    id: str
    location: Optional[BlobLocation]


# --- packs to the objects they hold ---

def objects_of_packs(repo, pack_args: Iterable[str], warn) -> Tuple[IdSet, IdSet]:
    """(data blob ids, tree ids) held by the packs named by ids or prefixes. NotFound
    `unable to find pack(s): [...]` for names matching no pack; packs listed in the index
    but missing from the repository are warned about (restic's words) and taken from it."""
    wanted = IdSet(pack_args)
    stored = [p for p in repo.list_ids("pack") if p in wanted]
    indexed: Dict[str, List[Tuple[str, str]]] = {}
    index = repo.load_index()
    for blob_type, blob_id in index.blobs():
        pack_id = index.lookup(blob_type, blob_id).pack_id
        if pack_id in wanted:
            indexed.setdefault(pack_id, []).append((blob_type, blob_id))
    found = set(stored) | set(indexed)
    unknown = [arg for arg in wanted.given() if not any(p.startswith(arg) for p in found)]
    if unknown:
        raise NotFound(f"unable to find pack(s): [{' '.join(unknown)}]")
    missing = sorted(set(indexed) - set(stored))
    if missing:
        warn("some pack files are missing from the repository, getting their blobs from the "
             f"repository index: [{' '.join(missing)}]")
    data, trees = IdSet(), IdSet()
    for pack_id in sorted(found):
        entries = indexed.get(pack_id)
        if entries is None:  # a pack the index does not list: read its header
            entries = [(e.type, e.id) for e in _pack_header(repo, pack_id)]
        for blob_type, blob_id in entries:
            (trees if blob_type == "tree" else data).add(blob_id)
    return data, trees


def _pack_header(repo, pack_id: str):
    raw = repo.load_pack(pack_id)
    length = header_length_from_tail(raw[-4:], len(raw))
    return parse_header(repo.key, raw[len(raw) - 4 - length:len(raw) - 4], len(raw))


# --- the walk ---

class ObjectSearch:
    """What one snapshot walk looks for: data blobs in file contents, trees as subtrees.
    The ids found for prefixes are kept for --show-pack-id."""

    def __init__(self, data: IdSet, trees: IdSet):
        self.data = data
        self.trees = trees
        self.found_data: Set[str] = set()
        self.found_trees: Set[str] = set()

    def root(self, sn: Snapshot, tree_id: str) -> List[FoundObject]:
        if self.trees and tree_id in self.trees:
            self.found_trees.add(tree_id)
            return [FoundObject("tree", tree_id, "/", "", sn)]
        return []

    def visit(self, sn: Snapshot, path: str, node, parent_tree: str) -> Optional[List[FoundObject]]:
        if node.type == "dir":
            if self.trees and node.subtree and node.subtree in self.trees:
                self.found_trees.add(node.subtree)
                return [FoundObject("tree", node.subtree, path, "", sn)]
        elif node.type == "file" and node.content and self.data:
            data = self.data
            if data.prefixes or not data.full.isdisjoint(node.content):
                hits = [FoundObject("blob", blob_id, path, parent_tree, sn)
                        for blob_id in node.content if blob_id in data]
                self.found_data.update(hit.id for hit in hits)
                return hits or None
        return None


def object_packs(repo, search: ObjectSearch) -> Iterator[ObjectPack]:
    """Where the index puts each searched object: the full ids given or found, and for a
    prefix every indexed object of its type starting with it; data blobs first, by id."""
    index = repo.load_index()
    for blob_type, wanted, found in (("data", search.data, search.found_data),
                                     ("tree", search.trees, search.found_trees)):
        ids = set(wanted.full) | found
        if wanted.prefixes:
            ids.update(i for _, i in index.blobs(blob_type) if i in wanted)
        for prefix in wanted.given():
            if len(prefix) < 64 and not any(i.startswith(prefix) for i in ids):
                yield ObjectPack(blob_type, prefix, None)
        for object_id in sorted(ids):
            yield ObjectPack(blob_type, object_id, index.lookup(blob_type, object_id))
