"""What the index files say each pack holds, kept compact for `check`: a repository of small
files indexes hundreds of thousands of blobs, and a tuple of Python objects per blob (about
300 bytes) was most of check's memory there, and parsing an index file into them held twice
that for a moment. Here a blob takes 57 bytes (its type, raw id, offset, length, uncompressed
length), read from the file natively; a pack's entries are rebuilt when a step asks for them
(its trees' span, reading it)."""
from array import array
from itertools import chain
from operator import itemgetter
from typing import Dict, Iterator, List, Tuple

from ... import _index
from ...errors import IntegrityError
from ...repository.index import IndexEntry, parse_index
from ...repository.pack import DATA, TREE

_TYPES = {ord(DATA[0]): DATA, ord(TREE[0]): TREE}
_TYPE_LENGTH = len(DATA)  # both names have 4 letters: every 4th letter of the joined names is a type's first
_NUMBERS = itemgetter(2, 3, 4)  # offset, length, uncompressed length
assert len(TREE) == _TYPE_LENGTH and len(_TYPES) == 2


Compact = Tuple[bytes, bytes, array]  # types, raw ids, (offset, length, ulen) of each blob


def packs_of_index_file(raw: bytes) -> List[Tuple[str, Compact]]:
    """The packs an index file describes, in file order, each once (a pack the file lists
    twice, merged); IntegrityError when it is malformed."""
    found = _index.pack_entries(raw)
    if found is None:  # not the shape restic writes: the Python parser, and its errors
        try:
            listed = [(pack_id, _compact(entries)) for pack_id, entries in parse_index(raw)[1]]
        except OverflowError:  # a number past uint64, as the master index refuses it
            raise IntegrityError("index is damaged: a number is out of range") from None
        except ValueError as exc:  # a blob id of 64 characters that are not all hex digits
            raise IntegrityError(f"index is damaged: {exc}") from None
    else:
        listed = [(pack_id, (types, ids, _numbers(numbers))) for pack_id, types, ids, numbers in found]
    if len({pack_id for pack_id, _ in listed}) == len(listed):
        return listed
    merged: Dict[str, List[IndexEntry]] = {}
    for pack_id, compact in listed:
        merged.setdefault(pack_id, []).extend(_entries(compact))
    return [(pack_id, _compact(entries)) for pack_id, entries in merged.items()]


def _numbers(raw: bytes) -> array:
    numbers = array("Q")
    numbers.frombytes(raw)
    return numbers


def _compact(entries: List[IndexEntry]) -> Compact:
    types = "".join(map(itemgetter(0), entries)).encode()[::_TYPE_LENGTH]
    ids = bytes.fromhex("".join(map(itemgetter(1), entries)))
    return types, ids, array("Q", chain.from_iterable(map(_NUMBERS, entries)))


def _entries(compact: Compact) -> List[IndexEntry]:
    types, ids, numbers = compact
    hex_ids = ids.hex()
    return [IndexEntry(_TYPES[t], hex_ids[64 * i:64 * i + 64], *numbers[3 * i:3 * i + 3])
            for i, t in enumerate(types)]


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
        self._packs[pack_id] = _compact(entries)

    def put(self, pack_id: str, compact: Compact) -> None:
        self._packs[pack_id] = compact

    def entries(self, pack_id: str) -> List[IndexEntry]:
        """The pack's blobs as the index files place them (none for a pack they do not name)."""
        found = self._packs.get(pack_id)
        return _entries(found) if found is not None else []

    def mixed(self, pack_id: str) -> bool:
        """Does the pack hold both tree and data blobs?"""
        return len(set(self._packs[pack_id][0])) > 1

    def totals(self, pack_id: str) -> Tuple[int, int, int]:
        """(blobs, compressed blobs, their stored bytes together)."""
        types, _, numbers = self._packs[pack_id]
        uncompressed_lengths = numbers[2::3]
        return len(types), len(uncompressed_lengths) - uncompressed_lengths.count(0), sum(numbers[1::3])
