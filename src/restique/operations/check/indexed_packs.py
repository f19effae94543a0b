"""What the index files say each pack holds, kept compact for `check` (see
repository/compact_index: with 200,000 small files, a tuple a blob was most of check's
memory); a pack's entries are rebuilt when a step asks for them (its trees' span, reading
it)."""
from typing import Dict, Iterator, List, Tuple

from ...repository import compact_index
from ...repository.compact_index import Compact
from ...repository.index import IndexEntry


class IndexedPacks:
    def __init__(self):
        self._packs: Dict[str, Compact] = {}

    def __len__(self) -> int:
        return len(self._packs)

    def __contains__(self, pack_id: str) -> bool:
        return pack_id in self._packs

    def __iter__(self) -> Iterator[str]:
        return iter(self._packs)

    def set(self, pack_id: str, entries: List[IndexEntry]) -> None:
        self._packs[pack_id] = compact_index.compact_form(entries)

    def put(self, pack_id: str, compact: Compact) -> None:
        self._packs[pack_id] = compact

    def entries(self, pack_id: str) -> List[IndexEntry]:
        """The pack's blobs as the index files place them (none for a pack they do not name)."""
        found = self._packs.get(pack_id)
        return compact_index.entries(found) if found is not None else []

    def mixed(self, pack_id: str) -> bool:
        """Does the pack hold both tree and data blobs?"""
        return len(set(self._packs[pack_id][0])) > 1

    def totals(self, pack_id: str) -> Tuple[int, int, int]:
        """(blobs, compressed blobs, their stored bytes together)."""
        types, _, numbers = self._packs[pack_id]
        uncompressed_lengths = numbers[2::3]
        return len(types), len(uncompressed_lengths) - uncompressed_lengths.count(0), sum(numbers[1::3])
