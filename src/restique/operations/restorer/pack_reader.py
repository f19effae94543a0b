"""Step 2 of a restore: file contents, pack by pack (restic's filerestorer.go).

Every needed data blob is grouped by pack; each pack is read once (its needed byte range in
one or a few large reads), each blob checked, decrypted, decompressed and hashed once and
written to every (file, offset) that uses it. That per-blob work is one native call per batch
of blobs (restique._seal.restore_range) that never holds the GIL, so the workers run on every
core; Python only opens files and counts. Memory is bounded by the workers' reads.
"""
import os
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import wait as wait_for
from typing import Dict, List, Tuple

from ... import _seal
from ...backend.base import remote_connections
from ...errors import RestiqueError
from ...repository.index import BlobLocation
from ..allocator import LARGE_BLOCK
from ..fs_io import error_message
from .file_writer import FilesWriter, PackFiles
from .plan import PlannedFile

# largest single read from a remote pack: bounds memory per worker. Against 8 MiB reads (a
# tree restore over S3 or REST peaked at restic's memory), 6 MiB ones took 15-25 MiB less at
# the same speed, 4 MiB ones 25-35 MiB less but 5-15% more time and CPU (more requests)
MAX_READ = 6 * 1024 * 1024
# a local read costs a system call, not a round trip: smaller reads keep the workers' buffers
# (most of a restore's memory besides the plan) small at no cost in speed. Below the 1 MiB
# from which the allocator module has blocks mapped on their own, a freed read's memory serves the
# next one: 2 MiB reads were each a fresh mapping, four times the page faults (~0.3 s of
# system time per 650 MiB restored)
LOCAL_MAX_READ = 1000 * 1024


def largest_read(backend) -> int:
    return MAX_READ if remote_connections(backend) else LOCAL_MAX_READ


def mapped_block_threshold(backend) -> int:
    """The size from which freed blocks go back to the system (see the allocator module).
    Remote reads are larger than that for local ones: their buffers (MAX_READ) are kept in the
    heap and reused, as each fresh mapping page-faulted in every byte (about a fifth of a
    remote restore's CPU); memory stays below restic's."""
    if remote_connections(backend):
        return MAX_READ + LARGE_BLOCK
    return LARGE_BLOCK
MAX_GAP = 512 * 1024  # unneeded bytes between two blobs that are cheaper to read than to skip
BATCH_BLOBS = 128  # blobs per native call: bounds the descriptors a worker holds open at once
# blobs queued for the workers before the plan walk waits for them: the walk is faster than
# the writing, and every queued blob holds its record and its files' (~300 bytes a blob)
MAX_QUEUED_BLOBS = 8192

_ID_MISMATCH = "content does not match its id"
_BAD_LENGTH = "uncompressed length is impossible"


class _Blob:
    """A blob to restore: where it is, and every (file, offset) that needs it."""

    __slots__ = ("id", "raw_id", "offset", "length", "ulen", "size", "dests")

    def __init__(self, blob_id: str, raw_id: bytes, loc: BlobLocation):
        self.id = blob_id
        self.raw_id = raw_id
        self.offset = loc.offset
        self.length = loc.length
        self.ulen = loc.uncompressed_length
        self.size = loc.size
        self.dests: List[Tuple[PlannedFile, int]] = []


class ContentRestorer:
    """Writes the content of planned files with a pool of workers. Files come in batches
    (add) while the plan walk goes on, so writing overlaps planning; each batch's blobs are
    grouped by pack and its packs queued in order of first use. A pack that two batches
    need is read by each for its own blobs. Failures are marked on the files and reported.
    add() waits while more than MAX_QUEUED_BLOBS blobs (and two packs a worker) are queued,
    so that the plan's memory stays bounded however far ahead of the writing the walk is."""

    def __init__(self, repo, index, writer: FilesWriter, workers: int):
        self.repo = repo
        self.index = index
        self.writer = writer
        self.max_read = largest_read(repo.backend)
        self._pool = ThreadPoolExecutor(workers, thread_name_prefix="restore")
        self._futures: List[Future] = []
        self._queued: deque = deque()  # (future, blob count) of packs maybe not written yet
        self._queued_blobs = 0
        self._min_queued = 2 * workers  # packs: every worker has its next one ready

    def add(self, files: List[PlannedFile]) -> None:
        packs = _blobs_by_pack(self.index, files, self.writer)
        for pack_id, blobs in packs.items():
            future = self._pool.submit(_restore_pack, self.repo, self.writer, pack_id, blobs, self.max_read)
            self._futures.append(future)
            self._queued.append((future, len(blobs)))
            self._queued_blobs += len(blobs)
        del packs
        self._throttle()

    def _throttle(self) -> None:
        """Forget the packs written; wait for the oldest while too many blobs are queued.
        Errors are not raised here (wait() raises them), only waited for."""
        queued = self._queued
        while queued and (queued[0][0].done() or (self._queued_blobs > MAX_QUEUED_BLOBS
                                                   and len(queued) > self._min_queued)):
            future, count = queued.popleft()
            wait_for([future])
            self._queued_blobs -= count

    def stopped(self) -> bool:
        """For whoever waits for a file's content: raises the first unexpected error of the
        writers; True once every queued pack is written (nothing more will be)."""
        finished = True
        for fut in self._futures:
            if not fut.done():
                finished = False
            elif not fut.cancelled() and fut.exception() is not None:
                fut.result()
        return finished

    def wait(self) -> None:
        """Until every queued pack is written; the first unexpected error is raised."""
        try:
            for fut in self._futures:
                fut.result()
        finally:
            self.close()

    def close(self) -> None:
        """Stop: packs not started yet are dropped (after an error or an interrupt)."""
        self._pool.shutdown(wait=True, cancel_futures=True)


def _blobs_by_pack(index, files: List[PlannedFile], writer: FilesWriter) -> Dict[str, Dict[str, _Blob]]:
    """pack id -> blob id -> blob, packs in order of first use; the files are prepared."""
    packs: Dict[str, Dict[str, _Blob]] = {}
    lookup = index.lookup
    for f in files:
        offset = 0
        already = 0
        raw = f.raw_content
        for i, blob_id in enumerate(f.content):
            loc = lookup("data", blob_id)
            if loc is None:
                writer.fail(f, f"Unknown blob {blob_id}")
                break
            size = loc.size
            if f.matches is not None and f.matches[i]:
                already += size
            else:
                pack = packs.get(loc.pack_id)
                if pack is None:
                    pack = packs[loc.pack_id] = {}
                blob = pack.get(blob_id)
                if blob is None:
                    blob = pack[blob_id] = _Blob(blob_id, raw[32 * i:32 * i + 32], loc)
                blob.dests.append((f, offset))
                f.remaining += 1
            offset += size
        if not f.failed:
            writer.prepare(f, already)
    return packs


def _restore_pack(repo, writer: FilesWriter, pack_id: str, blobs: Dict[str, _Blob], max_read: int) -> None:
    ordered = sorted(blobs.values(), key=lambda blob: blob.offset)
    with PackFiles(writer, (blob.dests for blob in ordered)) as open_files:
        for start, end, group in _read_ranges(ordered, max_read):
            try:
                data = repo.load_pack_view(pack_id, start, end - start)
            except (OSError, EOFError, RestiqueError) as exc:
                message = _pack_error(pack_id, exc)
                for blob in group:
                    for f, _ in blob.dests:
                        writer.fail(f, message)
                continue
            for i in range(0, len(group), BATCH_BLOBS):
                _restore_batch(repo.key, writer, open_files, data, start, group[i:i + BATCH_BLOBS])
            del data


def _restore_batch(key, writer: FilesWriter, open_files: PackFiles, data: bytes, start: int,
                   batch: List[_Blob]) -> None:
    """Write the blobs of batch (which lie in data, read from start in their pack) to every
    file that needs them, in one native call; failures are marked on the files. The files
    it creates and those it completes get their system calls in a native call each too."""
    open_files.open_new([(blob.dests, blob.size) for blob in batch])
    calls = []
    for blob in batch:
        dests = [(open_files.descriptor(f, off, blob.size) if not f.failed else -1, off, f.sparse)
                 for f, off in blob.dests]
        calls.append((blob.offset - start, blob.length, blob.ulen, blob.raw_id, dests))
    failures = _seal.restore_range(key.encrypt, key.mac_k, key.mac_r, data, calls)
    failed = set()
    for i, j, err, what in failures:
        blob = batch[i]
        failed.add((i, j))
        if j >= 0:
            writer.fail(blob.dests[j][0], OSError(err, os.strerror(err)))
            continue
        message = _blob_error(blob, what)
        for f, _ in blob.dests:
            writer.fail(f, message)
    complete = writer.blobs_written([(f, blob.size) for i, blob in enumerate(batch) if (i, -1) not in failed
                                     for j, (f, _) in enumerate(blob.dests)
                                     if calls[i][4][j][0] >= 0 and (i, j) not in failed]) or ()
    metadata = [(f, open_files.fds[f], meta) for f, meta in complete]  # written here: still held
    closing = [fd for blob in batch for fd in open_files.release(blob.dests)]
    writer.set_metadata(metadata, closing)


def _blob_error(blob: _Blob, what: str) -> str:
    """The message BlobStore.decode gives for the same damage."""
    if what == _ID_MISMATCH:
        return f"blob {blob.id} is damaged: its content does not match its id"
    if what == _BAD_LENGTH:
        what = f"uncompressed length {blob.ulen} is impossible for {blob.length - 32} compressed bytes"
    return f"decrypting blob {blob.id} failed: {what}"


def _read_ranges(ordered: List[_Blob], max_read: int = MAX_READ):
    """Group blobs sorted by offset into (start, end, blobs) reads: neighbours closer than
    MAX_GAP share a read, no read is larger than max_read (unless one blob is)."""
    group: List[_Blob] = []
    start = end = 0
    for blob in ordered:
        b_end = blob.offset + blob.length
        if group and (blob.offset - end > MAX_GAP or b_end - start > max_read):
            yield start, end, group
            group = []
        if not group:
            start = blob.offset
        group.append(blob)
        end = max(end, b_end) if len(group) > 1 else b_end
    if group:
        yield start, end, group


def _pack_error(pack_id: str, exc: BaseException) -> str:
    if isinstance(exc, FileNotFoundError):
        return f"pack {pack_id[:10]} is missing: {error_message(exc)}"
    if isinstance(exc, EOFError):
        return f"pack {pack_id[:10]} is truncated: {exc}"
    return f"reading pack {pack_id[:10]}: {error_message(exc)}"

