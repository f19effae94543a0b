"""Index files and the in-memory master index.

An index file maps blobs to the packs holding them:
``{"supersedes": [...], "packs": [{"id": ..., "blobs": [{"id", "type", "offset", "length",
"uncompressed_length"}]}]}``; the oldest layout is just the "packs" array. The master index is
the union of all index files, answering "where is blob (type, id)?".
"""
import re
from contextlib import contextmanager
from dataclasses import dataclass, field
from itertools import repeat
from typing import Dict, Iterator, List, NamedTuple, Optional, Tuple

import orjson

from .._index import BlobTable, PackIds, add_packs, load_index
from ..errors import IntegrityError
from .crypto import OVERHEAD
from .pack import BLOB_TYPES, PackEntry

# restic starts a new index file after this many blobs; keeps each file well under 8 MiB
MAX_BLOBS_PER_INDEX_FILE = 50_000
ENCODE_STEP = 4096  # blobs turned into text at a time


@dataclass
class IndexFile:
    """The content of one index file."""

    packs: Dict[str, List[PackEntry]] = field(default_factory=dict)
    supersedes: List[str] = field(default_factory=list)

    @property
    def blob_count(self) -> int:
        return sum(len(v) for v in self.packs.values())

    def add_pack(self, pack_id: str, entries: List[PackEntry]) -> None:
        self.packs.setdefault(pack_id, []).extend(entries)

    def encode(self) -> bytearray:
        """The index file's JSON text plus newline, as restic writes it. Built as text, a few
        thousand blobs at a time into one buffer: an index lists tens of thousands of blobs
        (a pack of small files alone can), and joining them all as strings first held the
        text four times over (at the end of a backup of 200,000 small files, 100 MiB)."""
        out = bytearray(b"{")
        if self.supersedes:
            out += ('"supersedes":[%s],' % ",".join('"%s"' % i for i in self.supersedes)).encode()
        out += b'"packs":['
        for n, (pack_id, entries) in enumerate(self.packs.items()):
            out += b'%s{"id":"%s","blobs":[' % (b"," if n else b"", pack_id.encode())
            for start in range(0, len(entries), ENCODE_STEP):
                if start:
                    out += b","
                out += ",".join([_blob_text(e) for e in entries[start:start + ENCODE_STEP]]).encode()
            out += b"]}"
        out += b"]}\n"
        return out

    def to_json(self) -> dict:
        obj = {}
        if self.supersedes:
            obj["supersedes"] = list(self.supersedes)
        obj["packs"] = [
            {"id": pack_id, "blobs": [_blob_json(e) for e in entries]} for pack_id, entries in self.packs.items()
        ]
        return obj

    @classmethod
    def parse(cls, raw: bytes) -> "IndexFile":
        supersedes, packs = parse_index(raw)
        index = cls(supersedes=supersedes)
        for pack_id, entries in packs:
            index.add_pack(pack_id, [PackEntry(*e) for e in entries])
        return index


class IndexEntry(NamedTuple):
    """One blob as an index file places it (PackEntry's fields, as a cheap tuple: a large
    repository's index lists millions)."""
    type: str
    id: str
    offset: int
    length: int
    uncompressed_length: int


_HEX_ID = re.compile("[0-9a-f]{64}")
_BLOB_TYPE = {t: t for t in BLOB_TYPES}  # also makes every entry share one type string


def parse_index(raw: bytes) -> Tuple[List[str], List[Tuple[str, List[IndexEntry]]]]:
    """(supersedes, [(pack id, its blobs)]) of one index file, a pack as often as the file
    lists it; IntegrityError when it is malformed."""
    with _damaged_index():
        supersedes, packs = _index_json(raw)
        types = _BLOB_TYPE
        parsed = [(_checked_id(pack["id"]),
                   [IndexEntry(types[b["type"]], b["id"], int(b["offset"]), int(b["length"]),
                               int(b.get("uncompressed_length") or 0)) for b in pack.get("blobs") or ()])
                  for pack in packs]
        for _, entries in parsed:
            for e in entries:
                if type(e.id) is not str or len(e.id) != 64:
                    raise ValueError(f"invalid blob id {e.id!r}")
        return [_checked_id(i) for i in supersedes], parsed


def _index_json(raw: bytes):
    """(supersedes, packs) as JSON values, from either layout (an object with "packs", or
    the original bare packs array). Every reader of index files starts here. The checks are
    the cheap ones, as this runs at every start: no index holds a minus sign or a decimal point;
    the callers' type lookups reject unknown blob types."""
    if b"-" in raw or b"." in raw:
        raise ValueError("negative number or fraction")
    obj = orjson.loads(raw)  # refuses Infinity and NaN too
    if isinstance(obj, list):
        return (), obj
    return obj.get("supersedes") or (), obj.get("packs") or ()


@contextmanager
def _damaged_index():
    """Whatever a malformed index makes the parsing code raise, as one IntegrityError."""
    try:
        yield
    except KeyError as exc:
        raise IntegrityError(f"index is damaged: invalid or missing {exc}") from None
    except (ValueError, TypeError, AttributeError, RecursionError, OverflowError) as exc:
        raise IntegrityError(f"index is damaged: {exc}") from None


def _checked_id(value) -> str:
    """A pack or index id: 64 hex digits (pack ids become file names)."""
    if not isinstance(value, str) or len(value) != 64 or not _HEX_ID.fullmatch(value):
        raise ValueError(f"invalid id {value!r}")
    return value


def _blob_text(e: PackEntry) -> str:
    if e.uncompressed_length:
        return '{"id":"%s","type":"%s","offset":%d,"length":%d,"uncompressed_length":%d}' % (
            e.id, e.type, e.offset, e.length, e.uncompressed_length)
    return '{"id":"%s","type":"%s","offset":%d,"length":%d}' % (e.id, e.type, e.offset, e.length)


def _blob_json(e: PackEntry) -> dict:
    obj = {"id": e.id, "type": e.type, "offset": e.offset, "length": e.length}
    if e.uncompressed_length:
        obj["uncompressed_length"] = e.uncompressed_length
    return obj


class BlobLocation(NamedTuple):
    """Where a blob is stored. A tuple, immutable and built in a fraction of a frozen
    dataclass's microsecond: dump, restore and mount look up every data blob."""

    pack_id: str
    offset: int
    length: int
    uncompressed_length: int

    @property
    def size(self) -> int:
        """The blob's plaintext size."""
        return self.uncompressed_length or self.length - OVERHEAD


class MasterIndex:
    """(type, id) -> location, for every blob of every loaded index file.

    Each blob type is a native table (restique._index.BlobTable) of binary ids and bit-packed
    numbers, under 40 bytes a blob instead of the ~300 a dict of tuples took; the pack ids are
    a native array too (restique._index.PackIds). Ids stay hex strings at this class's
    boundary. The first location added for an id wins.

    changes counts the additions, each counted once it is made (also when it failed half
    way): who derives something from the index can tell whether it may be stale by reading
    changes before deriving and comparing it later, without counting the blobs."""

    def __init__(self):
        self._tables: Dict[str, BlobTable] = {t: BlobTable() for t in BLOB_TYPES}
        self._packs = PackIds()
        self._pack_number = self._packs.number  # hex pack id -> its number, numbering new ones
        self.index_ids: List[str] = []
        self.changes = 0

    def add_pack(self, pack_id: str, entries: List[PackEntry]) -> None:
        with self._change():
            n = self._pack_number(pack_id)
            for e in entries:
                self._tables[e.type].add(_blob_id_bytes(e.id), n, e.offset, e.length, e.uncompressed_length)

    def add_index_file(self, index_id: Optional[str], index: IndexFile) -> None:
        for pack_id, entries in index.packs.items():
            self.add_pack(pack_id, entries)
        if index_id:
            self.index_ids.append(index_id)

    def add_index_bytes(self, index_id: Optional[str], raw: bytes) -> None:
        """Add an index file straight from its JSON text: what every command does at start.
        Files of the shape restic writes are parsed natively into the tables; anything else
        goes through orjson and the Python loop, which raise what they always raised."""
        with self._change(), _damaged_index():
            if not self._load_native(raw):
                packs = _index_json(raw)[1]
                if not self._add_canonical_packs(packs):
                    self._add_packs(packs)
        if index_id:
            self.index_ids.append(index_id)

    @contextmanager
    def _change(self):
        try:
            yield
        finally:
            self.changes += 1

    def _load_native(self, raw: bytes) -> bool:
        return isinstance(raw, bytes) and load_index(self._tables["data"], self._tables["tree"], raw,
                                                     self._pack_number)

    def _add_canonical_packs(self, packs) -> bool:
        try:
            numbers = [self._pack_number(_checked_id(pack["id"])) for pack in packs]
        except Exception:  # the Python loop reports it, in its own order
            return False
        return isinstance(packs, list) and add_packs(self._tables["data"], self._tables["tree"], packs, numbers)

    def _add_packs(self, packs) -> None:
        for pack in packs:
            n = self._pack_number(_checked_id(pack["id"]))
            for b in pack.get("blobs") or ():
                table = self._tables[b["type"]]
                table.add(_blob_id_bytes(b["id"]), n, int(b["offset"]), int(b["length"]),
                          int(b.get("uncompressed_length") or 0))

    def has(self, blob_type: str, blob_id: str) -> bool:
        return self._tables[blob_type].has(blob_id)

    def lookup(self, blob_type: str, blob_id: str) -> Optional[BlobLocation]:
        hit = self._tables[blob_type].get(blob_id)
        if hit is None:
            return None
        n, offset, length, ulen = hit
        return _new_location(BlobLocation, (self._packs.hex(n), offset, length, ulen))

    def stored_sizes(self, blob_type: str, blob_id: str) -> Optional[Tuple[int, int]]:
        """(stored length, uncompressed length or 0) of a blob, without building a location:
        for commands that add up the sizes of many blobs."""
        return self._tables[blob_type].sizes(blob_id)

    def find_any_type(self, blob_id: str) -> Optional[Tuple[str, BlobLocation]]:
        for blob_type in BLOB_TYPES:
            loc = self.lookup(blob_type, blob_id)
            if loc:
                return blob_type, loc
        return None

    def blobs(self, only_type: Optional[str] = None) -> Iterator[Tuple[str, str]]:
        """(type, id) of every blob (of only_type if given), data first, each type in id order."""
        for blob_type in (only_type,) if only_type else BLOB_TYPES:
            table = self._tables[blob_type]
            for start in range(0, len(table), _IDS_PER_SLICE):
                yield from zip(repeat(blob_type), table.hex_slice(start, start + _IDS_PER_SLICE))

    def __len__(self):
        return sum(len(t) for t in self._tables.values())


_new_location = tuple.__new__  # BlobLocation._make without its checks: the fields are known
_IDS_PER_SLICE = 4096  # blobs() builds this many id strings at a time


def _blob_id_bytes(value) -> bytes:
    """A blob id as the tables store it; ValueError unless 64 hex digits."""
    if type(value) is not str or len(value) != 64:
        raise ValueError(f"invalid blob id {value!r}")
    raw = bytes.fromhex(value)
    if len(raw) != 32:  # fromhex skips whitespace
        raise ValueError(f"invalid blob id {value!r}")
    return raw
