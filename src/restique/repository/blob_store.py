"""Saving blobs into packs and loading them back.

Saving: skip blobs the index (or a pack being filled) already has; compress (format 2);
seal; check that the sealed blob decodes to the same id; append to the open pack of the
blob's type (data and tree blobs never share a pack). `store` seals a blob straight into its
place in the pack (data packs are filled in reused buffers, see pack_buffers), `store_batch`
many small blobs so at once; `add_sealed` takes blobs sealed elsewhere (repacking). A pack is
written (see pack_uploads) once it reaches the target size; its blobs go into the pending
index file, which is written when it is full or on flush. Write order is always: pack, then
index.
"""
import threading
from typing import Callable, Dict, List, NamedTuple, Optional, Set, Tuple

from .. import _seal
from ..backend.base import BackendNotFound, BackendShortRead, FileType, pack_files_of, remote_connections
from ..backend.temp_pack_file import temporary_pack_files
from ..errors import IntegrityError, NotFound
from ..model.ids import hash_id
from .compression import blob_level
from .crypto import OVERHEAD, MasterKey
from .index import MAX_BLOBS_PER_INDEX_FILE, BlobLocation, IndexFile, MasterIndex
from .pack import BLOB_TYPES, DATA, TREE, PackWriter
from .pack_uploads import PackUploads

DEFAULT_PACK_SIZE = 16 * 1024 * 1024
MIN_PACK_SIZE = 4 * 1024 * 1024
MAX_PACK_SIZE = 128 * 1024 * 1024

class BlobStore:
    def __init__(self, backend, key: MasterKey, index: MasterIndex, level: Optional[int],
                 save_file: Callable[[FileType, bytes], str], pack_size: int = DEFAULT_PACK_SIZE,
                 tree_level: Optional[int] = None):
        self.backend = backend
        self.key = key
        self.index = index
        self.level = level  # zstd level for blobs; None: store uncompressed
        self.tree_level = tree_level  # zstd level for tree blobs, always applied; None: format 1
        self._save_file = save_file
        self.pack_size = pack_size
        self._packs: Dict[str, PackWriter] = {}
        # ids of the blobs in unwritten packs, by type (no (type, id) tuple for each of the
        # tens of thousands of small files a pack can hold)
        self._pending: Dict[str, Set[str]] = {DATA: set(), TREE: set()}
        self._index_file = IndexFile()
        self._lock = threading.RLock()
        self.uploads = PackUploads(backend, pack_size, self._stored)
        self._pack_buffers = self.uploads.buffers
        # data packs go to disk as they fill: into the repository's data/ on a local disk,
        # else into temporary files, sent from there (not the in-memory backend of tests)
        self._start_pack_file = pack_files_of(backend) or (
            temporary_pack_files(backend) if remote_connections(backend) else None)
        self._latest_buffer = None  # of the latest data pack started (see _share_latest_buffer)
        self._unqueued = 0  # closed packs whose last blobs are still being sealed
        # every pack started and not yet queued, open or closed: close() discards their files
        # (a closed pack whose last saver was stopped by an error or a signal is in no list)
        self._not_queued: set = set()
        self._all_queued = threading.Condition(self._lock)
        self.dry_run = False  # seal and count, but write nothing

    # --- saving ---
    def seal_blob(self, blob_type: str, data, blob_id: str) -> Tuple[bytes, int]:
        """(sealed bytes, uncompressed length or 0). Compression is kept only when it saves
        space; the sealed blob is decoded again and compared with data before it is used."""
        if blob_type == "tree" and self.tree_level:
            # restic compresses every tree of format 2 (even with --compression off), and its
            # prune repacks packs holding an uncompressed tree
            return self.key.seal_blob(data, self.tree_level, always=True)
        return self.key.seal_blob(data, blob_level(self.level, len(data)) if len(data) else None)

    def known(self, blob_type: str, blob_id: str) -> bool:
        return self.index.has(blob_type, blob_id) or blob_id in self._pending[blob_type]

    def save(self, blob_type: str, data, blob_id: Optional[str] = None) -> Tuple[str, bool, int]:
        """(id, newly stored?, stored size) of a blob."""
        if blob_type not in BLOB_TYPES:
            raise ValueError(f"invalid blob type {blob_type!r}")
        blob_id = blob_id or hash_id(data)
        if self.known(blob_type, blob_id):
            return blob_id, False, 0
        sealed, ulen = self.seal_blob(blob_type, data, blob_id)
        return blob_id, *self.add_sealed(blob_type, blob_id, sealed, ulen)

    def store(self, blob_type: str, blob_id: str, data) -> Tuple[bool, int]:
        """Seal a blob straight into its pack (no sealed copy of its own): (newly stored?,
        stored size). The caller knows blob_id to be data's id."""
        always = blob_type == "tree" and bool(self.tree_level)
        level = self.tree_level if always else (blob_level(self.level, len(data)) if len(data) else None)
        try:
            payload, ulen = _seal.prepare(data, level or 0, always)
        except _seal.SealError as exc:
            raise IntegrityError(f"sealing failed: {exc}") from None
        length = payload + OVERHEAD
        reserved = self._place(blob_type, blob_id, length, ulen)
        if reserved is None:
            return False, 0
        if self.dry_run:
            return True, length
        writer, index, region = reserved
        ok = False
        try:
            key = self.key
            _seal.seal_into(key.encrypt, key.mac_k, key.mac_r, data, region)
            ok = True
        except _seal.SealError as exc:
            raise IntegrityError(f"sealing failed: {exc}") from None
        finally:
            last = writer.filled(index, ok)
            if ok:
                writer.hash_added()
            if last:
                self._queue_closed(writer)
        return True, length

    def store_batch(self, blobs: List[Tuple[str, bytes]]) -> List:
        """Store many data blobs (id, content), a directory's small files, each as store would:
        for each, (newly stored?, stored size) or the IntegrityError that kept it out. One
        native call compresses them all, one lock taken per pack places them, one native call
        per pack seals them: the threads storing batches spend little time in Python between
        calls that release the GIL, so they do not wait for each other's. The caller knows
        each id to be its content's id; an id may repeat (the blob is stored once)."""
        results: List = [(False, 0)] * len(blobs)
        first: Dict[str, int] = {}
        fresh = []
        for at, (blob_id, _) in enumerate(blobs):
            if blob_id not in first:
                first[blob_id] = at
                if not self.known(DATA, blob_id):
                    fresh.append(at)
        if fresh and self._store_fresh(blobs, fresh, results):
            for at, (blob_id, _) in enumerate(blobs):  # a repeat fails as its first would again
                if isinstance(results[first[blob_id]], IntegrityError):
                    results[at] = results[first[blob_id]]
        return results

    def _store_fresh(self, blobs: List[Tuple[str, bytes]], fresh: List[int], results: List) -> bool:
        """store_batch's blobs at positions fresh (none known when looked at, no id twice):
        fill in their results; True when one of them failed."""
        datas = [blobs[at][1] for at in fresh]
        prepared, failures = _seal.prepare_batch(datas, [blob_level(self.level, len(data)) or 0 for data in datas])
        for i, what in failures:
            results[fresh[i]] = IntegrityError(f"sealing failed: {what}")
        todo = []
        for at, data, blob in zip(fresh, datas, prepared):
            if blob is not None:
                payload, ulen, packed = blob
                todo.append(_BatchBlob(blobs[at][0], payload + OVERHEAD, ulen, at, data if packed is None else packed))
        failed = bool(failures)
        while todo:
            writer, placed, todo = self._place_batch(todo)
            for blob, _, _ in placed:
                results[blob.position] = (True, blob.length)
            if writer is not None:
                for i in self._seal_placed(writer, placed):
                    results[placed[i][0].position] = IntegrityError("sealing failed: encryption failed")
                    failed = True
        return failed

    def _place_batch(self, todo: List["_BatchBlob"]):
        """Take places in the open data pack for store_batch's blobs, in order, until the pack is
        full: (its writer, [(blob, part index, region to seal it into)], the blobs left for the
        next pack). Blobs known by now are left out; in a dry run, blobs are only marked pending
        (no writer). A pack is started with a buffer from the pool, waited for outside the lock.
        Blobs are sealed before the next pack's buffer is waited for: a saver waiting for a
        buffer while it holds a closed pack unsealed could wait for the buffer that pack holds."""
        def step(open_pack):
            nonlocal todo
            todo = self._unknown(todo)
            if self.dry_run or not todo:
                self._pending[DATA].update(blob.id for blob in todo)
                return None, [(blob, None, None) for blob in todo], []
            writer = open_pack()
            return _NO_PACK if writer is None else (writer, *self._reserve_until_full(writer, todo))

        return self._with_open_pack(DATA, step)

    def _with_open_pack(self, blob_type: str, step):
        """step(open_pack) under the lock, until it returns something else than _NO_PACK:
        open_pack() is the open pack of blob_type, or None when there is none and a data pack
        waits for a buffer from the pool (taken outside the lock: uploads give them back)."""
        buffer = None

        def open_pack() -> Optional[PackWriter]:
            nonlocal buffer
            writer = self._packs.get(blob_type)
            if writer is None and blob_type == DATA and buffer is None:
                buffer = self._share_latest_buffer()
            if writer is None and (blob_type != DATA or buffer is not None):
                places = self._pack_buffers.places(buffer) if buffer is not None else None
                writer = self._packs[blob_type] = PackWriter(
                    self.key, buffer, self._start_pack_file, self.uploads.file_steps, places)
                self._not_queued.add(writer)
                if buffer is not None:
                    self._latest_buffer = buffer
                buffer = None
            return writer

        try:
            while True:
                with self._lock:
                    self.uploads.raise_error()
                    result = step(open_pack)
                    if result is not _NO_PACK:
                        return result
                buffer = self._pack_buffers.take()
        finally:
            if buffer is not None:  # another saver started the pack meanwhile
                self._pack_buffers.give_back(buffer)

    def _share_latest_buffer(self):
        """The buffer of the latest data pack, held for the next one too, when that pack's
        parts go to its file as they fill and it still holds the buffer: the next pack takes
        the places its written parts left, instead of touching another buffer's memory
        (None: the next pack takes a buffer from the pool). Under the lock."""
        latest, self._latest_buffer = self._latest_buffer, None
        if latest is None or self._start_pack_file is None or not self._pack_buffers.share(latest):
            return None
        return latest

    def _reserve_until_full(self, writer: PackWriter, todo: List["_BatchBlob"]):
        """Reserve places for blobs in writer until it reaches the pack size, then close it
        (the saver that seals its last blob queues it): (placed, left). Under the lock."""
        reserved = writer.reserve_many(DATA, todo, self.pack_size)
        placed = [(blob, index, region) for blob, (index, region) in zip(todo, reserved)]
        self._pending[DATA].update(blob.id for blob, _, _ in placed)
        if writer.size >= self.pack_size:
            del self._packs[DATA]
            self._unqueued += 1
            writer.close()  # False: the blobs just placed are still to be sealed
        return placed, todo[len(placed):]

    def _unknown(self, todo: List["_BatchBlob"]) -> List["_BatchBlob"]:
        """The blobs of todo that neither the index nor a pack being filled has."""
        has, pending = self.index.has, self._pending[DATA]
        return [blob for blob in todo if blob.id not in pending and not has(DATA, blob.id)]

    def _seal_placed(self, writer: PackWriter, placed: List[tuple]) -> List[int]:
        """Seal placed blobs into their regions of writer: the positions (in placed) of those
        that could not be (their pack is never stored)."""
        failed = None
        key = self.key
        try:
            failed = _seal.seal_batch(key.encrypt, key.mac_k, key.mac_r,
                                      [(blob.payload, region) for blob, _, region in placed])
        finally:
            ok = failed == []
            last = writer.filled_all([index for _, index, _ in placed], ok)
            if ok:
                writer.hash_added()  # outside the lock: the other savers add meanwhile
            if last:
                self._queue_closed(writer)
        return failed

    def add_sealed(self, blob_type: str, blob_id: str, sealed: bytes, ulen: int) -> Tuple[bool, int]:
        placed = self._place(blob_type, blob_id, len(sealed), ulen, sealed)
        if placed is None:
            return False, 0
        if not self.dry_run:
            writer, index, region = placed
            if region is not None:  # copied into the pack's buffer: the bytes object can go
                region[:] = sealed
                last = writer.filled(index)
            else:
                last = False
            writer.hash_added()  # outside the lock: the other savers add meanwhile
            if last:
                self._queue_closed(writer)
        return True, len(sealed)

    def _place(self, blob_type: str, blob_id: str, length: int, ulen: int, sealed: Optional[bytes] = None):
        """Take the blob's place in the open pack of its type: None when it is known already;
        else (writer, part index, region to write it into, or None when sealed was added as
        is). A data pack is started with a buffer from the pool, waited for outside the lock."""
        def step(open_pack):
            if self.known(blob_type, blob_id):
                return None
            if self.dry_run:
                self._pending[blob_type].add(blob_id)
                return ()
            writer = open_pack()
            if writer is None:
                return _NO_PACK
            if sealed is not None and writer.buffer is None:  # no copy then
                index, region = len(writer), None
                writer.add(blob_type, blob_id, sealed, ulen)
            else:  # copied into the buffer (or memory laid out as the file is)
                index, region = writer.reserve(blob_type, blob_id, length, ulen)
            self._pending[blob_type].add(blob_id)
            ready = None
            if writer.size >= self.pack_size:
                del self._packs[blob_type]
                self._unqueued += 1
                if writer.close():  # nothing being sealed into it: queue it now
                    self._unqueued -= 1
                    ready = writer
            return writer, index, region, ready

        placed = self._with_open_pack(blob_type, step)
        if not placed:
            return placed
        writer, index, region, ready = placed
        if ready is not None:
            self._queue_pack(ready)  # outside the lock: may wait for an uploader
        return writer, index, region

    def _queue_closed(self, writer: PackWriter) -> None:
        """A closed pack whose last blob was just sealed: queue it."""
        self._queue_pack(writer)
        with self._lock:
            self._unqueued -= 1
            self._all_queued.notify_all()

    def _queue_pack(self, writer: PackWriter) -> None:
        """Hand a closed pack to the uploaders, once the budget has room (may wait)."""
        size = writer.size
        self.uploads.take_room(size)
        with self._lock:
            self._not_queued.discard(writer)
        self.uploads.put(writer, size)

    def _stored(self, pack_id: str, entries) -> None:
        """An uploader stored a pack: index it."""
        with self._lock:
            self.index.add_pack(pack_id, entries)
            self._index_file.add_pack(pack_id, entries)
            for e in entries:
                self._pending[e.type].discard(e.id)
            if self._index_file.blob_count >= MAX_BLOBS_PER_INDEX_FILE:
                self._write_index()

    def _write_index(self) -> Optional[str]:
        if not self._index_file.packs:
            return None
        index_id = self._save_file(FileType.INDEX, self._index_file.encode())
        self.index.index_ids.append(index_id)
        self._index_file = IndexFile()
        return index_id

    def flush(self) -> None:
        """Write every open pack, wait for the uploads, then write the pending index file."""
        if self.dry_run:
            return
        with self._lock:
            writers = [w for w in self._packs.values() if len(w)]
            for writer in self._packs.values():
                if not len(writer):
                    self._not_queued.discard(writer)
                    if writer.buffer is not None:
                        self._pack_buffers.give_back(writer.take_buffer())
            self._packs.clear()
            ready = []
            for writer in writers:
                if writer.close():
                    ready.append(writer)
                else:
                    self._unqueued += 1  # its last saver queues it
        for writer in ready:
            self._queue_pack(writer)
        with self._lock:  # packs whose blobs were still being sealed: queued by their savers
            self._all_queued.wait_for(lambda: not self._unqueued)
        self.uploads.wait()
        with self._lock:
            self._write_index()

    def close(self) -> None:
        """Stop the uploaders without writing what is still open (an aborted run)."""
        with self._lock:
            unwritten, self._not_queued = self._not_queued, set()
        for writer in unwritten:
            writer.discard()
        self.uploads.stop()

    # --- loading ---
    def location(self, blob_type: str, blob_id: str) -> BlobLocation:
        loc = self.index.lookup(blob_type, blob_id)
        if loc is None:
            raise NotFound(f"{blob_type} blob {blob_id[:8]} not found in the index")
        return loc

    def load(self, blob_type: str, blob_id: str, loc: Optional[BlobLocation] = None) -> bytes:
        loc = loc or self.location(blob_type, blob_id)
        try:
            sealed = self.backend.load(FileType.PACK, loc.pack_id, loc.offset, loc.length)
        except BackendNotFound:
            raise IntegrityError(f"pack {loc.pack_id[:8]} holding blob {blob_id[:8]} is missing") from None
        except BackendShortRead:
            raise IntegrityError(f"pack {loc.pack_id[:8]} is truncated: blob {blob_id[:8]} is cut off") from None
        return self.decode(blob_id, sealed, loc)

    def decode(self, blob_id: str, sealed, loc: BlobLocation) -> bytes:
        try:
            plain = self.key.open(sealed, loc.uncompressed_length)
        except IntegrityError as exc:
            raise IntegrityError(f"decrypting blob {blob_id} failed: {exc}") from None
        if hash_id(plain) != blob_id:
            raise IntegrityError(f"blob {blob_id} is damaged: its content does not match its id")
        return plain


_NO_PACK = object()  # what a step of _with_open_pack returns to wait for a pack buffer


class _BatchBlob(NamedTuple):
    """A blob of store_batch on its way into a pack (id, lengths first: see reserve_many)."""

    id: str
    length: int  # sealed
    ulen: int  # uncompressed length, or 0: stored as is
    position: int  # in the batch
    payload: bytes  # what is sealed: the content or its compressed copy
