"""The index as prune reads it: every index file's packs with their blobs, a pack listed in
several files merged, and where each tree blob is. Read straight from the JSON into tuples
(the PackEntry fields, so IndexFile.encode writes them back): building dataclasses and the
master index would be a large part of prune's time on a big repository."""
import json
from typing import Dict, List, NamedTuple, Tuple

from ...backend.base import FileType
from ...errors import IntegrityError
from ...repository.index import BlobLocation
from ...repository.pack import BLOB_TYPES


class IndexEntry(NamedTuple):
    """One blob of a pack, as an index file lists it (PackEntry's fields)."""
    type: str
    id: str
    offset: int
    length: int
    uncompressed_length: int


class LoadedIndex(NamedTuple):
    index_ids: List[str]
    packs: Dict[str, List[IndexEntry]]
    trees: Dict[str, Tuple[str, IndexEntry]]  # tree id -> (pack id, entry) of one copy

    def tree_location(self, tree_id: str) -> BlobLocation:
        pack_id, e = self.trees[tree_id]
        return BlobLocation(pack_id, e.offset, e.length, e.uncompressed_length)


def load_index(repo) -> LoadedIndex:
    """Every index file of the repository; IntegrityError naming a damaged one."""
    loaded = LoadedIndex(sorted(repo.list_ids(FileType.INDEX)), {}, {})
    for index_id in loaded.index_ids:
        raw = repo.load_unpacked(FileType.INDEX, index_id)
        try:
            _add_index_file(loaded, json.loads(raw))
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise IntegrityError(f"index {index_id[:8]} is damaged: {exc}") from None
    return loaded


def _add_index_file(loaded: LoadedIndex, obj) -> None:
    packs = obj if isinstance(obj, list) else obj.get("packs") or ()  # the oldest layout is a list
    for pack in packs:
        pack_id = pack["id"]
        entries = [IndexEntry(b["type"], b["id"], int(b["offset"]), int(b["length"]),
                              int(b.get("uncompressed_length") or 0)) for b in pack.get("blobs") or ()]
        for e in entries:
            if e.type not in BLOB_TYPES:
                raise ValueError(f"invalid blob type {e.type!r}")
            if e.type == "tree":
                loaded.trees.setdefault(e.id, (pack_id, e))
        listed = loaded.packs.get(pack_id)
        if listed is None:
            loaded.packs[pack_id] = entries
        else:  # the same pack in two index files (an interrupted rewrite): each blob once
            known = {(e.type, e.id, e.offset) for e in listed}
            listed += [e for e in entries if (e.type, e.id, e.offset) not in known]
