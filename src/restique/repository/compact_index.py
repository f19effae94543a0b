"""Index files read compactly: each pack's blobs as three arrays (a type letter, 32 raw id
bytes and three uint64 -- offset, length, uncompressed length -- a blob: 57 bytes) instead of
a tuple of Python objects a blob (about 300 bytes). A file of the shape restic writes is read
natively (`_index.pack_entries`), without the JSON objects orjson would make of it (twice the
tuples' size for a moment); any other shape goes through the Python parser and its errors.
`check` keeps the compact form, `prune` expands it."""
from array import array
from itertools import chain
from operator import itemgetter
from typing import Dict, List, Tuple

from .. import _index
from ..errors import IntegrityError
from .index import IndexEntry, parse_index
from .pack import DATA, TREE

_TYPES = {ord(DATA[0]): DATA, ord(TREE[0]): TREE}
_TYPE_LENGTH = len(DATA)  # both names have 4 letters: every 4th letter of the joined names is a type's first
_NUMBERS = itemgetter(2, 3, 4)  # offset, length, uncompressed length
assert len(TREE) == _TYPE_LENGTH and len(_TYPES) == 2


Compact = Tuple[bytes, bytes, array]  # types, raw ids, (offset, length, ulen) of each blob


def listed_packs(raw: bytes) -> List[Tuple[str, Compact]]:
    """The packs an index file describes, in file order, a pack as often as the file lists
    it; IntegrityError when it is malformed. Blob ids come back in lowercase, as the master
    index and restic hold them."""
    found = _index.pack_entries(raw)
    if found is None:  # not the shape restic writes: the Python parser, and its errors
        try:
            listed = [(pack_id, compact_form(blobs)) for pack_id, blobs in parse_index(raw)[1]]
        except OverflowError:  # a number past uint64, as the master index refuses it
            raise IntegrityError("index is damaged: a number is out of range") from None
        except ValueError as exc:  # a blob id of 64 characters that are not all hex digits
            raise IntegrityError(f"index is damaged: {exc}") from None
    else:
        listed = [(pack_id, (types, ids, _numbers(numbers))) for pack_id, types, ids, numbers in found]
    return listed


def packs_of_index_file(raw: bytes) -> List[Tuple[str, Compact]]:
    """listed_packs, each pack once (one the file lists twice, merged)."""
    listed = listed_packs(raw)
    if len({pack_id for pack_id, _ in listed}) == len(listed):
        return listed
    merged: Dict[str, List[IndexEntry]] = {}
    for pack_id, compact in listed:
        merged.setdefault(pack_id, []).extend(entries(compact))
    return [(pack_id, compact_form(blobs)) for pack_id, blobs in merged.items()]


def _numbers(raw: bytes) -> array:
    numbers = array("Q")
    numbers.frombytes(raw)
    return numbers


def compact_form(blobs: List[IndexEntry]) -> Compact:
    types = "".join(map(itemgetter(0), blobs)).encode()[::_TYPE_LENGTH]
    ids = bytes.fromhex("".join(map(itemgetter(1), blobs)))
    return types, ids, array("Q", chain.from_iterable(map(_NUMBERS, blobs)))


def entries(compact: Compact) -> List[IndexEntry]:
    types, ids, numbers = compact
    hex_ids = ids.hex()
    return [IndexEntry(_TYPES[t], hex_ids[64 * i:64 * i + 64], *numbers[3 * i:3 * i + 3])
            for i, t in enumerate(types)]


class LazyEntries:
    """A pack's compact entries, expanded when iterated: prune keeps its new packs' entries
    this way until the index file listing them is written."""

    __slots__ = ("compact",)

    def __init__(self, compact: Compact):
        self.compact = compact

    def __len__(self) -> int:
        return len(self.compact[0])

    def __iter__(self):
        return iter(entries(self.compact))
