"""Pack files: sealed blobs back to back, then a sealed header listing them, then the
header's length as 4 little-endian bytes.

Header entries: type (0 data, 1 tree; 2 and 3 the compressed variants in format 2),
sealed length (u32 LE), [uncompressed length (u32 LE) for compressed types], id (32 bytes).
"""
import functools
import hashlib
import struct
import threading
from array import array
from dataclasses import dataclass
from typing import List, Optional, Tuple

from .. import _seal
from ..errors import IntegrityError
from ..interrupts import Latch
from . import buffer_places
from .crypto import OVERHEAD, MasterKey

DATA = "data"
TREE = "tree"
BLOB_TYPES = (DATA, TREE)

_TYPE_CODE = {(DATA, False): 0, (TREE, False): 1, (DATA, True): 2, (TREE, True): 3}
_CODE_TYPE = {code: kind for kind, code in _TYPE_CODE.items()}
_PLAIN_ENTRY = struct.Struct("<BI32s")
_COMPRESSED_ENTRY = struct.Struct("<BII32s")
_HEADER_LEN = struct.Struct("<I")
# restic reads at most this much from a pack's end when it looks for the header
MAX_HEADER_ENTRIES = 1 << 20
# A pack with a file (see PackWriter) is written to it in steps of this many bytes
WRITE_STEP = 2 * 1024 * 1024
# ... and the places of the parts written are taken again by the next blobs, the first free
# place first (a blob that finds no room gets memory of its own), also by the next pack's
# (buffer_places): a buffer touches as much memory as the parts not yet written ever took at
# once. Pages given back as their parts were written, then faulted in and zeroed for the next
# ones, cost ~0.1 s of CPU per 512 MiB of new data (5% of its backup). RING: at most this much
# of a buffer is used so (None: all of it; the tests make the room small).
RING = None
# A part's place in memory is at the same offset modulo this as its place in the file: a local
# disk's pack file is written straight from that memory in whole blocks (direct writes), which
# need the memory and the file laid out alike
ALIGN = 4096


@dataclass(frozen=True, slots=True)  # a pack of small files holds tens of thousands
class PackEntry:
    """One blob inside a pack: where it is and what it is."""

    type: str
    id: str
    offset: int
    length: int  # sealed (stored) length
    uncompressed_length: int = 0  # 0: stored uncompressed

    @property
    def compressed(self) -> bool:
        return self.uncompressed_length != 0


class PackWriter:
    """Collects sealed blobs in memory; `finish` returns the pack file's bytes.

    Blobs come in two ways: `add` takes sealed bytes; `reserve` gives a saver the place of a
    blob of known sealed length to seal into (in the pack's buffer when it has one and the
    blob fits, else in a buffer of its own), and `filled` says it is done. The pack's order
    is the order of `add` and `reserve` calls.

    The pack's id (the SHA-256 of the file) is computed as blobs arrive: the savers call
    `hash_added` after `add` or `filled`, outside any store-wide lock, so hashing a pack
    overlaps with sealing the next blobs instead of being done by the uploader once the
    pack is full. Only parts up to the first one still being sealed are hashed.

    A pack in a buffer may also have a file (start_file: the backend's start_pack): the
    hashed parts are appended to it every WRITE_STEP bytes and their place in the buffer taken
    again, so that a pack being filled or stored holds little memory (restic writes its
    packs to temporary files too); the pack is then stored by committing its file. With steps
    (a FileSteps), those appends run in its thread while the savers go on."""

    def __init__(self, key: MasterKey, buffer=None, start_file=None, steps=None, places=None):
        self._key = key
        # the parts in pack order: the bytes of a part in memory of its own, None for a part in
        # the buffer, which ends at _ends[i] (-1 for the others) and is entries[i].length long.
        # A small file's blob costs a few dozen bytes here: a pack holds tens of thousands
        self._parts: List = []
        self._ends = array("q")
        self.entries: List[PackEntry] = []
        self.size = 0
        self.buffer = buffer  # a writable buffer (a PackBuffers map) that blobs are sealed into
        self._buffer_view = memoryview(buffer) if buffer is not None else None
        # the places in the buffer of parts not in the file yet: this pack's, and those of every
        # pack that shares the buffer (places, a BufferPlaces: the next pack goes on in it)
        self._mine: List[List[int]] = []
        self._places = places if places is not None else buffer_places.BufferPlaces()
        self._unfilled = set()  # indexes of reserved parts still being sealed
        self._failed = False
        self._closed = False
        self._state = threading.Lock()  # _unfilled, _failed, _closed
        self._digest = hashlib.sha256()
        self._hashed = 0  # parts already in the digest
        self._hash_lock = threading.Lock()  # also orders the writes to the file
        self._start_file = start_file if buffer is not None else None
        self.file = None  # the pack's file, once its first bytes are written
        self._file_error: Optional[BaseException] = None
        self._written = 0  # parts in the file
        self._unwritten = 0  # bytes of hashed parts not yet in it
        self._room = 0 if buffer is None else len(buffer) if self._start_file is None or RING is None \
            else min(RING, len(buffer))
        self._steps = steps if self._start_file is not None else None  # a FileSteps, or None: at once
        self._last_step: Optional[Latch] = None  # opens once the last step queued is written

    def __len__(self):
        return len(self.entries)

    def add(self, blob_type: str, blob_id: str, sealed: bytes, uncompressed_length: int = 0) -> PackEntry:
        entry = PackEntry(blob_type, blob_id, self.size, len(sealed), uncompressed_length)
        self._append_own(sealed)
        self.entries.append(entry)
        self.size += len(sealed)
        return entry

    def reserve(self, blob_type: str, blob_id: str, length: int, uncompressed_length: int = 0):
        """(part index, writable memoryview of exactly length bytes) for a blob to be sealed
        into; call filled(index) once it is written (not thread-safe itself, as add)."""
        return self.reserve_many(blob_type, ((blob_id, length, uncompressed_length),), self.size + length)[0]

    def reserve_many(self, blob_type: str, blobs, limit: int) -> List[Tuple[int, memoryview]]:
        """reserve() for blobs, (id, sealed length, uncompressed length, anything else) in
        order, until the pack reaches limit bytes: [(part index, region)] of the first ones."""
        reserved = []
        parts, entries, ends, view = self._parts, self.entries, self._ends, self._buffer_view
        places = self._places
        at = room_end = -1  # a blob placed goes on right after the one before while there is room
        with self._state, places.lock:
            for blob in blobs:
                blob_id, length, ulen = blob[0], blob[1], blob[2]
                index = len(parts)
                if at < 0 or at + length > room_end:
                    # the first free place (the fewer pages a pack touches, the less memory it
                    # holds), laid out as in the file
                    at, room_end = places.first_free(length, self.size % ALIGN, ALIGN, self._room)
                if at >= 0:
                    region = view[at:at + length]
                    places.take(at, at + length)
                    buffer_places.take(self._mine, at, at + length)
                    at += length
                    ends.append(at)
                    parts.append(None)
                else:
                    region = _own_memory(length, self.size % ALIGN)
                    ends.append(-1)
                    parts.append(region)
                self._unfilled.add(index)
                entries.append(PackEntry(blob_type, blob_id, self.size, length, ulen))
                self.size += length
                reserved.append((index, region))
                if self.size >= limit:
                    break
        return reserved

    def filled(self, index: int, ok: bool = True) -> bool:
        """A reserved part is written (or, not ok, could not be: the pack is never stored).
        True when the pack was closed and this was its last part: the caller queues it."""
        return self.filled_all((index,), ok)

    def filled_all(self, indexes, ok: bool = True) -> bool:
        """filled() for many reserved parts at once (not ok: one of them could not be written)."""
        with self._state:
            self._unfilled.difference_update(indexes)
            self._failed = self._failed or not ok
            return self._closed and not self._unfilled

    def close(self) -> bool:
        """No more blobs come; True when none is being sealed either: the caller queues it.
        Otherwise the saver of its last reserved part does (filled returns True)."""
        with self._state:
            self._closed = True
            return not self._unfilled

    def hash_added(self) -> None:
        """Fold the blobs added so far into the pack's hash, in pack order (thread-safe).
        A saver that finds another one hashing does not wait: that one, a later call, or
        finish() hashes its blob."""
        while self._hash_lock.acquire(blocking=False):
            try:
                self._hash_parts()
                if self._start_file is not None and self._unwritten >= WRITE_STEP:
                    self._write_hashed()
            finally:
                self._hash_lock.release()
            if not self._hashable():  # a part filled while the lock was taken is left for nobody
                return

    def _hashable(self) -> bool:
        with self._state:
            return self._hashed < len(self._parts) and self._hashed not in self._unfilled

    def _hash_parts(self) -> None:
        while True:
            with self._state:
                start = end = self._hashed
                while end < len(self._parts) and end not in self._unfilled:
                    end += 1
            if end == start:
                return
            update = self._digest.update
            for view in self._views(start, end):  # neighbours in the buffer with one update:
                update(view)  # each small file's blob on its own gave up and retook the GIL
                self._unwritten += len(view)
            self._hashed = end

    def _append_own(self, data) -> None:
        # the end first: add() runs outside _state, and a saver hashing meanwhile must find
        # the end of every part it can see
        self._ends.append(-1)
        self._parts.append(data)

    def _views(self, start: int, end: int):
        """Parts [start, end), neighbours in the buffer as one view."""
        for part, first, stop in self._runs(start, end):
            yield self._buffer_view[first:stop] if part is None else part

    def _runs(self, start: int, end: int):
        """Parts [start, end) as (None, start, end) of a run of neighbours in the buffer, or
        (the part, -1, -1) for a part in memory of its own."""
        parts, ends, entries = self._parts, self._ends, self.entries
        i = start
        while i < end:
            stop = ends[i]
            if stop < 0:
                yield parts[i], -1, -1
                i += 1
                continue
            first = stop - entries[i].length
            i += 1
            while i < end and ends[i] >= 0 and ends[i] - entries[i].length == stop:
                stop = ends[i]
                i += 1
            yield None, first, stop

    def _write_hashed(self) -> None:
        """Append the hashed parts to the pack's file, after which their place in the buffer
        is free again: as a step in the steps thread when there is one (queued under the hash
        lock, so in pack order), else at once."""
        start, end = self._written, self._hashed
        runs = list(self._runs(start, end))
        views = [self._buffer_view[first:stop] if part is None else part for part, first, stop in runs]
        places = [(first, stop) for part, first, stop in runs if part is None]  # free once written
        for i in range(start, end):
            if self._ends[i] < 0:
                self._parts[i] = b""  # a blob with its own memory: the step holds it now
        self._written, self._unwritten = end, 0
        if self._steps is None:
            self._write_step(views, places, self._start_file)
            return
        # the steps run in order: the last one's written says all are
        done = self._last_step = Latch()
        self._steps.run(functools.partial(self._step_in_background, views, places, self._start_file, done))

    def _write_step(self, views, places, start_file) -> None:
        """Write views, whose places in the buffer are free then. A failure is kept for
        finish() to raise: the savers calling hash_added must go on to queue the pack, whose
        upload then reports it (and the parts keep their places)."""
        if self._file_error is not None:
            return
        try:
            if self.file is None:
                self.file = start_file()
            self.file.write(views)
        except Exception as exc:
            self._file_error = exc
            return
        self._free(places)

    def _free(self, places) -> None:
        """Parts in the file (or the pack given up): their places in the buffer are free."""
        with self._places.lock:
            for start, end in places:
                self._places.free(start, end)
                buffer_places.free(self._mine, start, end)

    def _step_in_background(self, views, places, start_file, done) -> None:
        try:
            self._write_step(views, places, start_file)
        except BaseException as exc:  # kept for finish(): an error ending the steps' thread
            if self._file_error is None:  # would leave whoever waits for a later step waiting
                self._file_error = exc
        finally:
            done.open()

    def _no_more_steps(self) -> None:
        """Queue no step from now on, and wait for those queued (the file is the caller's then)."""
        with self._hash_lock:
            self._start_file = None
            last = self._last_step
        if last is not None:
            last.wait()

    def finish(self):
        """(pack id, the pack file's bytes as a list of byte strings, entries): for a pack
        with a file, only what is not in it yet (commit the file with them). The parts are not
        joined: a pack is written with one gathered write, without a 16 MiB copy."""
        with self._state:
            if self._failed or self._unfilled:
                raise IntegrityError("a blob of this pack could not be sealed: the pack is not stored")
        header = b"".join([_encode_entry(e) for e in self.entries])
        sealed_header = self._key.seal(header)
        with self._hash_lock:
            self._append_own(sealed_header)
            self._append_own(_HEADER_LEN.pack(len(sealed_header)))
            self._hash_parts()
            # what no step took (all of it when no step was queued)
            parts = list(self._views(self._written, len(self._parts)))
            self._parts, self._ends, self._hashed = [], array("q"), 0
            # a saver still in hash_added finds nothing to hash, and must write nothing either:
            # the file is the uploader's from here on, once the steps queued are written
            self._start_file = None
        self._no_more_steps()
        if self._file_error is not None:
            raise self._file_error
        return self._digest.hexdigest(), parts, self.entries

    def discard(self) -> None:
        """The pack will not be stored: remove its file, if it has one."""
        self._no_more_steps()
        with self._hash_lock:
            # a saver still in hash_added finds nothing to hash (the buffer goes back next)
            self._parts, self._ends, self._hashed = [], array("q"), 0
            if self.file is not None:
                self.file.abort()

    def take_buffer(self):
        """The pack's buffer, to give back to its pool once the pack is stored or discarded
        (its parts are views of it: nothing may use them afterwards, its file's steps included,
        which finish() and discard() wait for; their places are free for a pack that shares
        the buffer)."""
        self._free([tuple(place) for place in self._mine])
        buffer, self.buffer = self.buffer, None
        if self._buffer_view is not None:
            self._buffer_view.release()
            self._buffer_view = None
        return buffer


class PackParts(list):
    """A pack file's parts, as handed to a backend's save. A backend that is done reading
    them before its save returns (a local disk, before its fsync) calls `written()`: the
    parts' memory goes back to its owner then, and the list is emptied so that nothing can
    read reused memory through it."""

    def __init__(self, parts, on_written):
        super().__init__(parts)
        self._on_written = on_written

    def written(self) -> None:
        on_written, self._on_written = self._on_written, None
        self.clear()
        if on_written is not None:
            on_written()


def _own_memory(length: int, lead: int) -> memoryview:
    """length writable bytes whose address is lead past a multiple of ALIGN (laid out as in
    the file)."""
    memory = bytearray(length + ALIGN)
    skip = (lead - _seal.buffer_address(memory)) % ALIGN
    return memoryview(memory)[skip:skip + length]


def _encode_entry(e: PackEntry) -> bytes:
    ulen = e.uncompressed_length
    code = _TYPE_CODE[(e.type, ulen != 0)]
    if ulen:
        return _COMPRESSED_ENTRY.pack(code, e.length, ulen, bytes.fromhex(e.id))
    return _PLAIN_ENTRY.pack(code, e.length, bytes.fromhex(e.id))


def header_length_from_tail(tail: bytes, pack_size: int) -> int:
    """The sealed header's length, from the pack's last 4 bytes, checked against its size."""
    if pack_size < _HEADER_LEN.size + OVERHEAD or len(tail) < _HEADER_LEN.size:
        raise IntegrityError("pack file is too short to hold a header")
    (length,) = _HEADER_LEN.unpack(tail[-4:])
    if length < OVERHEAD or length > pack_size - _HEADER_LEN.size:
        raise IntegrityError(f"pack header length {length} is invalid for a pack of {pack_size} bytes")
    return length


def parse_header(key: MasterKey, sealed_header: bytes, pack_size: int) -> List[PackEntry]:
    """Decrypt a pack header and list its blobs with their offsets."""
    header = key.open(sealed_header)
    entries = []
    pos = offset = 0
    data_end = pack_size - len(sealed_header) - _HEADER_LEN.size
    while pos < len(header):
        code = header[pos]
        kind = _CODE_TYPE.get(code)
        if kind is None:
            raise IntegrityError(f"pack header has an invalid blob type {code}")
        blob_type, compressed = kind
        fmt = _COMPRESSED_ENTRY if compressed else _PLAIN_ENTRY
        if pos + fmt.size > len(header):
            raise IntegrityError("pack header is truncated")
        if compressed:
            _, length, ulen, raw_id = fmt.unpack_from(header, pos)
        else:
            _, length, raw_id = fmt.unpack_from(header, pos)
            ulen = 0
        pos += fmt.size
        entries.append(PackEntry(blob_type, raw_id.hex(), offset, length, ulen))
        offset += length
    if offset > data_end:
        raise IntegrityError("pack header lists more data than the pack holds")
    return entries
