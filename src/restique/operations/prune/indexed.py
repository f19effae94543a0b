"""The index as prune reads it: every index file's packs with their blobs, a pack listed in
several files merged, and where each tree blob is. Kept as tuples (the PackEntry fields, so
IndexFile.encode writes them back): building dataclasses and the master index would be a
large part of prune's time on a big repository. Each file is read compactly first
(compact_index): orjson's objects for a file of 60,000 blobs were twice the tuples' size."""
from typing import Dict, List, NamedTuple, Tuple

from ...backend.base import FileType
from ...errors import IntegrityError
from ...repository import compact_index
from ...repository.index import BlobLocation, IndexEntry


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
        try:
            packs = [(pack_id, compact_index.entries(blobs))
                     for pack_id, blobs in compact_index.listed_packs(repo.load_unpacked(FileType.INDEX, index_id))]
        except IntegrityError as exc:
            raise IntegrityError(f"index {index_id[:8]}: {exc}") from None
        _add_index_file(loaded, packs)
    return loaded


def _add_index_file(loaded: LoadedIndex, packs: List[Tuple[str, List[IndexEntry]]]) -> None:
    for pack_id, entries in packs:
        for e in entries:
            if e.type == "tree":
                loaded.trees.setdefault(e.id, (pack_id, e))
        listed = loaded.packs.get(pack_id)
        if listed is None:
            loaded.packs[pack_id] = entries
        else:  # the same pack in two index files (an interrupted rewrite): each blob once
            known = {(e.type, e.id, e.offset) for e in listed}
            listed += [e for e in entries if (e.type, e.id, e.offset) not in known]
