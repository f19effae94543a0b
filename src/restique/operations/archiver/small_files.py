"""Batches of small files: files below the chunker's minimum size are one blob each; a
directory's small files are read and hashed in batches by one native call without the GIL,
on a reader thread, and their new blobs are stored together (FileSaver.save_blobs): a few
native calls per batch, not per file. Each file's node goes to its own slot in the
directory's job, and the directory waits for the batch task as a whole, not for each file."""
import os
import time
from typing import List, Optional, Tuple

from ... import _seal
from ...model.node import Node
from .file_reader import FileReader, PendingFile
from .file_saver import FileSaver
from .progress import BackupProgress, report_error
from .tasks import Gate, Slot, WorkerPool
from .tree_saver import DirJob, TreeSaver

BATCH_FILES = 64
BATCH_BYTES = 4 * 1024 * 1024

# What _seal.read_small_files reports for each file besides 0 (read whole) and an errno
# value (the call named by `op` failed).
REPLACED = -1  # no longer the regular file lstat saw
SIZE_CHANGED = -2  # not the size lstat saw: the file is read the general way


class SmallFileBatches:
    def __init__(self, reader: FileReader, saver: FileSaver, readers: WorkerPool, queued: Gate,
                 progress: BackupProgress, trees: TreeSaver):
        self.reader = reader  # reads a file the general way, and records what was read
        self.saver = saver
        self.readers = readers
        self.queued = queued
        self.progress = progress
        self.trees = trees
        self._batch: List[PendingFile] = []
        self._batch_bytes = 0
        self._job: Optional[DirJob] = None

    def start_dir(self, job: DirJob) -> Tuple[List[PendingFile], int, Optional[DirJob]]:
        """A directory (job) collects its own small files; its subdirectories theirs. Returns
        the enclosing directory's batch, for end_dir."""
        outer = (self._batch, self._batch_bytes, self._job)
        self._batch, self._batch_bytes, self._job = [], 0, job
        return outer

    def end_dir(self, outer: Tuple[List[PendingFile], int, Optional[DirJob]]) -> None:
        """Queue what the directory collected and go back to the enclosing batch; call it
        before the directory's job is released."""
        self._flush()
        self._batch, self._batch_bytes, self._job = outer

    def add(self, entry: PendingFile) -> None:
        """Collect a small file of the current directory: its node (or None) goes to a slot
        of the directory's job."""
        entry.done = Slot()
        self.trees.add_slot(self._job, entry.done)
        self.progress.start_file(entry.snap_path)
        self._batch.append(entry)
        self._batch_bytes += entry.st.st_size
        if len(self._batch) >= BATCH_FILES or self._batch_bytes >= BATCH_BYTES:
            self._flush()

    def _flush(self) -> None:
        if self._batch:
            batch, self._batch, self._batch_bytes = self._batch, [], 0
            # counted per file: queued files hold their nodes until read
            self.queued.enter(len(batch))
            # the directory waits for the batch; a batch that never runs (the backup was
            # cancelled) leaves it open, so that a checkpoint still sees it unfinished
            self.trees.hold(self._job)
            task = self.readers.submit(self._read_batch, batch, self._job)
            task.add_done_callback(lambda _t, n=len(batch): self.queued.leave(n))

    def _read_batch(self, batch: List[PendingFile], job: DirJob) -> None:
        """Read and hash a batch natively, then save what is new and fill in each file's slot;
        then the directory may finish."""
        try:
            self._fill_slots(batch)
        finally:
            self.trees.release(job)

    def _fill_slots(self, batch: List[PendingFile]) -> None:
        if self.saver.cancelled.is_set():
            for entry in batch:
                entry.done.complete(None)
            return
        started = time.monotonic()
        try:
            results = _seal.read_small_files([(e.fs_path, e.st.st_ino, e.st.st_size) for e in batch])
        except BaseException as exc:  # delivered to the directory waiting for them
            for entry in batch:
                entry.done.fail(exc)
            return
        contents = []  # (entry, content, blob id): saved together below
        for entry, result in zip(batch, results):
            try:
                status, _, data, digest = result
                if status or not data:
                    entry.done.complete(self._save_unread(entry, result, started))
                else:
                    self.progress.bytes_read(len(data))
                    contents.append((entry, data, digest.hex()))
            except BaseException as exc:
                entry.done.fail(exc)
        if contents:
            self._save_contents(contents, started)

    def _save_unread(self, entry: PendingFile, result: tuple, started: float) -> Optional[Node]:
        """Save a file of a batch whose content the native read did not give: it failed (the
        error is reported), the file changed (read the general way), or it is empty."""
        status, op, data, _ = result
        if status in (SIZE_CHANGED, REPLACED):
            # the general way saves a grown or replaced file, or names a changed type
            return self.reader.read_and_save_file(entry)
        if status:
            report_error(self.progress, entry.snap_path, OSError(status, os.strerror(status), entry.fs_path), op=op)
            return None
        return self.reader.record_file_content(entry, [], 0, 0, 0, started)

    def _save_contents(self, contents: List[Tuple[PendingFile, bytes, str]], started: float) -> None:
        """Save the blobs of files read whole (each one blob) together, then fill in their slots."""
        try:
            saved = self.saver.save_blobs([(blob_id, data) for _, data, blob_id in contents])
        except BaseException as exc:  # delivered to the directory waiting for them
            for entry, _, _ in contents:
                entry.done.fail(exc)
            return
        for (entry, data, blob_id), result in zip(contents, saved):
            if isinstance(result, BaseException):
                entry.done.fail(result)
                continue
            try:
                added, stored = result
                entry.done.complete(self.reader.record_file_content(entry, [blob_id], len(data), added, stored,
                                                                    started))
            except BaseException as exc:
                entry.done.fail(exc)
