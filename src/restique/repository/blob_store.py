"""Saving blobs into packs and loading them back.

Saving: skip blobs the index (or a pack being filled) already has; compress (format 2);
seal; check that the sealed blob decodes to the same id; append to the open pack of the
blob's type (data and tree blobs never share a pack). `store` seals a blob straight into its
place in the pack (data packs are filled in reused buffers, see pack_buffers), `store_batch`
many small blobs so at once; `add_sealed` takes blobs sealed elsewhere (repacking). A pack is
written once it reaches the target size; its blobs go into the pending index file, which is
written when it is full or on flush. Write order is always: pack, then index.
"""
import queue
import threading
from typing import Callable, Dict, List, NamedTuple, Optional, Set, Tuple

from .. import _seal
from ..backend.base import (BackendError, BackendNotFound, BackendShortRead, FileType, pack_files_of,
                            remote_connections)
from ..backend.temp_pack_file import temporary_pack_files
from ..errors import IntegrityError, NotFound
from ..model.ids import hash_id
from .compression import blob_level
from .crypto import OVERHEAD, MasterKey
from .index import MAX_BLOBS_PER_INDEX_FILE, BlobLocation, IndexFile, MasterIndex
from .pack import BLOB_TYPES, DATA, TREE, PackParts, PackWriter
from .pack_buffers import PackBuffers

DEFAULT_PACK_SIZE = 16 * 1024 * 1024
MIN_PACK_SIZE = 4 * 1024 * 1024
MAX_PACK_SIZE = 128 * 1024 * 1024
# full packs a remote backup holds at once (queued or being sent), in bytes: 3 packs of 16 MiB
# keep 3 connections busy, enough on loopback. Data packs wait in temporary files (as restic's
# do: see temp_pack_file), tree packs and packs of the in-memory backend in memory.
UPLOAD_MEMORY = 48 * 1024 * 1024
# packs a local repository stores at once: each upload ends in an fsync that waits on the
# disk, so a second one writes (a kernel copy of 16 MiB) while the first waits (restic's
# local backend also has two connections)
LOCAL_UPLOADS = 2
# room past pack_size in a pack's buffer: the chunker's largest chunk (8 MiB) sealed, so that
# the blob that fills a pack still goes into its buffer (a larger one gets a buffer of its own)
BUFFER_SLACK = 8 * 1024 * 1024 + 4096


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
        self._upload_queue: "queue.Queue" = queue.Queue()
        # a remote backend stores as many packs at once as it has connections (each upload
        # mostly waits on the network); a local one, LOCAL_UPLOADS
        self._upload_count = remote_connections(backend) or LOCAL_UPLOADS
        # full packs not yet written, in bytes: one pack per uploader, but not past UPLOAD_MEMORY.
        # A pack is closed once past pack_size, by up to a blob: with room for exactly
        # pack_size each, the second of two uploads had to wait for the first.
        per_pack = pack_size + pack_size // 2
        self._upload_budget = _ByteBudget(min(self._upload_count * per_pack, max(UPLOAD_MEMORY, per_pack)))
        # Data packs are sealed into reused buffers (see pack_buffers): one per full pack the
        # budget admits (a pack is a little over pack_size) plus the open one; a saver that
        # closes a pack while the budget is full waits with it, and no other pack starts.
        # A backend that gives the parts back once written (before a local fsync) holds a buffer
        # only while it writes: one buffer less then keeps as many uploads going.
        uploads = max(1, min(self._upload_count, (self._upload_budget.limit - 1) // pack_size))
        if getattr(backend, "releases_written_parts", False) is True:
            uploads = max(1, uploads - 1)
        self._pack_buffers = PackBuffers(uploads + 1, pack_size + BUFFER_SLACK)
        # data packs go to disk as they fill: into the repository's data/ on a local disk,
        # else into temporary files, sent from there (not the in-memory backend of tests)
        self._start_pack_file = pack_files_of(backend) or (
            temporary_pack_files(backend) if remote_connections(backend) else None)
        self._unqueued = 0  # closed packs whose last blobs are still being sealed
        # every pack started and not yet queued, open or closed: close() discards their files
        # (a closed pack whose last saver was stopped by an error or a signal is in no list)
        self._not_queued: set = set()
        self._all_queued = threading.Condition(self._lock)
        self._uploaders: List[threading.Thread] = []
        self._upload_error: Optional[BaseException] = None
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
            if writer is None and (blob_type != DATA or buffer is not None):
                writer = self._packs[blob_type] = PackWriter(self.key, buffer, self._start_pack_file)
                self._not_queued.add(writer)
                buffer = None
            return writer

        try:
            while True:
                with self._lock:
                    self._raise_upload_error()
                    result = step(open_pack)
                    if result is not _NO_PACK:
                        return result
                buffer = self._pack_buffers.take()
        finally:
            if buffer is not None:  # another saver started the pack meanwhile
                self._pack_buffers.give_back(buffer)

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
            if sealed is not None and not writer.fits(length):  # no copy then
                index, region = len(writer), None
                writer.add(blob_type, blob_id, sealed, ulen)
            else:
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

    # Full packs are written by background threads (one, or one per connection of a remote
    # backend), so that savers keep sealing while packs are written. A saver waits for room in
    # the budget before it queues a pack: memory holds at most that many bytes of full packs.
    def _queue_pack(self, writer: PackWriter) -> None:
        with self._lock:
            if not self._uploaders:
                self._uploaders = [threading.Thread(target=self._upload_loop, name=f"pack-uploader-{i}",
                                                    daemon=True) for i in range(self._upload_count)]
                for thread in self._uploaders:
                    thread.start()
        size = writer.size
        self._upload_budget.take(size)
        with self._lock:
            self._not_queued.discard(writer)
        self._upload_queue.put((writer, size))

    def _upload_loop(self) -> None:
        while True:
            item = self._upload_queue.get()
            try:
                if item is not None:
                    self._write_pack(*item)
            except BaseException as exc:  # reported to the saving threads
                self._upload_error = exc
            finally:
                self._upload_queue.task_done()
            if item is None:
                return

    def _raise_upload_error(self) -> None:
        """A failed pack upload, raised to whoever stores next. A local disk's OSError (full,
        read-only) becomes a BackendError: the file whose blob was being stored is not to blame
        for it (a reader reports its own OSErrors as the file's and goes on), the backup is."""
        exc = self._upload_error
        if exc is None:
            return
        if isinstance(exc, OSError) and not isinstance(exc, BackendError):
            raise BackendError(exc.errno, exc.strerror, exc.filename) from exc
        raise exc

    def _write_pack(self, writer: PackWriter, budgeted: int) -> None:
        """Store a full pack, then index it. Its budget and buffer are given back once it is
        stored, or as soon as the backend says its bytes are written (PackParts.written)."""
        released = []

        def release():
            if not released:
                released.append(True)
                self._upload_budget.give_back(budgeted)
                buffer = writer.take_buffer()
                if buffer is not None:
                    self._pack_buffers.give_back(buffer)

        stored = False
        try:
            if self._upload_error is not None:
                return
            pack_id, parts, entries = writer.finish()
            if writer.buffer is not None:  # not tree packs: the cache keeps a copy of those
                parts = PackParts(parts, release)
            if writer.file is not None:  # most of it is in its file already
                writer.file.commit(pack_id, parts)
            else:
                self.backend.save(FileType.PACK, pack_id, parts)
            del parts
            stored = True
        finally:
            release()
            if not stored:
                writer.discard()
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
        self._upload_queue.join()
        self._raise_upload_error()
        with self._lock:
            self._write_index()

    def close(self) -> None:
        """Stop the uploaders without writing what is still open (an aborted run)."""
        with self._lock:
            unwritten, self._not_queued = self._not_queued, set()
        for writer in unwritten:
            writer.discard()
        uploaders, self._uploaders = self._uploaders, []
        for _ in uploaders:
            self._upload_queue.put(None)
        for thread in uploaders:
            thread.join(timeout=60)

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


class _ByteBudget:
    """Bytes held at most `limit` by its takers together; one taker always fits, however large."""

    def __init__(self, limit: int):
        self.limit = limit
        self._used = 0
        self._changed = threading.Condition()

    def take(self, size: int) -> None:
        with self._changed:
            self._changed.wait_for(lambda: not self._used or self._used + size <= self.limit)
            self._used += size

    def give_back(self, size: int) -> None:
        with self._changed:
            self._used -= size
            self._changed.notify_all()
