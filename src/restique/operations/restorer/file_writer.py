"""Writing restored content into files (restic's fileswriter.go): create each file at its
final size, hand out descriptors for the native writer (which writes blobs at their offsets
and leaves holes for all-zero blobs when sparse), count what was written, and tell the finish
recording when a file's content is done or failed (the finish step then sets its metadata,
or removes it rather than leave it with holes)."""
import os
import stat
from typing import Dict, Iterable, List, Sequence, Tuple

from ... import _restore
from ..fs_io import remove_path
from .metadata import calls_problem
from .plan import PlannedFile
from .recording import CONTENT_DONE, CONTENT_FAILED, CONTENT_FAILED_UNTOUCHED, CONTENT_SET, FinishRecording
from .report import RestoreReport

_WRITE_FLAGS = os.O_WRONLY | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0)

Destinations = Sequence[Tuple[PlannedFile, int]]  # (file, offset) that need one blob
Written = Sequence[Tuple[PlannedFile, int]]  # (file, size): a blob of size written into file
# (file, its descriptor, (uid, gid, atime_ns, mtime_ns, mode)): a complete file's metadata to set
MetadataCalls = Sequence[Tuple[PlannedFile, int, tuple]]


class FilesWriter:
    """Creates and writes the planned files. sparse: leave all-zero blobs as holes;
    replace_dirs: a directory in a file's place may be removed with its contents (--delete);
    recording: told when each file's content is done or failed."""

    def __init__(self, report: RestoreReport, sparse: bool, replace_dirs: bool, recording: FinishRecording):
        self.report = report
        self.sparse = sparse
        self.replace_dirs = replace_dirs
        self.recording = recording
        self.as_root = os.geteuid() == 0

    def prepare(self, f: PlannedFile, already: int) -> None:
        """Before the workers run: f needs f.remaining blobs, already bytes of it are right."""
        f.sparse = self.sparse and f.matches is None  # holes only in files written from scratch
        if f.remaining != 1:
            # a file with one blob to write is created by the worker that writes it; the
            # others now, so that workers writing different parts never race to create it
            try:
                os.close(self.open(f))
            except OSError as exc:
                self.fail(f, exc)
                return
        if already:
            self.report.bytes_restored(already)
        if f.remaining == 0:
            self.report.done(f.action, f.location, f.size)
            self.recording.content_finished(f.record, CONTENT_DONE)

    def open(self, f: PlannedFile, written: int = 0) -> int:
        """Create (or, to update it in place, open) f's target at its final size; returns a
        descriptor open for writing. written: how many bytes from the start the caller
        writes right away (no need to set the size first if that is all of it)."""
        flags = _WRITE_FLAGS
        if f.matches is None:
            flags |= os.O_CREAT | os.O_TRUNC
            if not f.fresh:
                try:
                    st = os.lstat(f.target)
                    if not stat.S_ISREG(st.st_mode) or st.st_nlink > 1:
                        remove_path(f.target, self.replace_dirs)
                except FileNotFoundError:
                    pass
        try:
            fd = os.open(f.target, flags, 0o600)
        except PermissionError:  # a read-only file: its mode is set again later
            os.chmod(f.target, 0o600)
            fd = os.open(f.target, flags, 0o600)
        f.created = True
        try:
            if f.matches is not None:
                if os.fstat(fd).st_size != f.size:
                    os.ftruncate(fd, f.size)
            elif f.size and (f.size != written or f.sparse):
                os.ftruncate(fd, f.size)
                if not f.sparse and f.size >= 1 << 20:
                    try:
                        os.posix_fallocate(fd, 0, f.size)
                    except OSError:
                        pass  # not supported here: the writes allocate
        except BaseException:
            os.close(fd)
            raise
        return fd

    def fail(self, f: PlannedFile, error) -> None:
        """f's content cannot be restored. No worker creates f after this (a file that more
        than one blob goes into is created before any is written), so whether it was
        created, and must be removed, is settled."""
        with self.report.lock:
            if f.failed:
                return
            f.failed = True
        self.report.error(f.location, error)
        self.recording.content_finished(f.record, CONTENT_FAILED if f.created else CONTENT_FAILED_UNTOUCHED)

    def blobs_written(self, written: Written) -> List[Tuple[PlannedFile, tuple]]:
        """Count blobs written: one lock for a whole batch of them. Returns the files now
        complete whose metadata the caller sets through their descriptors (set_metadata):
        those this run created whose metadata is only owner, times and mode; the finish
        step sets the others'."""
        report = self.report
        stats, progress = report.stats, report.progress
        done, plain = [], []
        plain_metadata = self.recording.plain_metadata
        with report.lock:  # f.remaining and the counts change together
            for f, size in written:
                stats.bytes_restored += size
                f.remaining -= 1
                if f.remaining or f.failed:
                    continue
                stats.files_restored += 1
                progress.item(f.action, f.location, f.size)
                meta = plain_metadata(f.record) if f.fresh else None
                if meta is None:
                    done.append(f.record)
                else:
                    plain.append((f, meta))
        if done:
            self.recording.contents_finished(done, CONTENT_DONE)
        return plain

    def set_metadata(self, calls: MetadataCalls, closing: Sequence[int]) -> None:
        """Set owner, times and mode of complete files through their descriptors, then close
        the descriptors closing, in one native call (the finish step would make three calls
        by path a file, each letting the other threads' Python in)."""
        failures = _restore.finish_files([(fd, *meta) for _, fd, meta in calls], closing)
        by_file: Dict[int, list] = {}
        for i, call, err in failures:
            by_file.setdefault(i, []).append((call, err))
        for i, problems in by_file.items():
            f = calls[i][0]
            problem = calls_problem(f.target, problems, self.as_root)
            if problem:
                self.report.error(f.location, problem)
        if calls:
            self.recording.contents_finished([f.record for f, _, _ in calls], CONTENT_SET)

    def open_new(self, files: Sequence[PlannedFile]) -> List[int]:
        """Create files, each with one blob to write at offset 0 that sets its size, in one
        native call: their descriptors, or -errno where that failed (open() then tells why)."""
        flags = _WRITE_FLAGS | os.O_CREAT | os.O_TRUNC
        return _restore.open_files([(f.target, flags, 0o600) for f in files])

    @staticmethod
    def opens_new(f: PlannedFile, offset: int, size: int) -> bool:
        """Whether open_new may create f for a blob of size at offset: a new file in a
        directory this run created, which that blob fills."""
        return f.fresh and not f.created and f.matches is None and not f.sparse and offset == 0 and size == f.size


class PackFiles:
    """The descriptors one worker holds while it writes the blobs of one pack: a file's is
    opened at its first blob from the pack and closed after its last."""

    def __init__(self, writer: FilesWriter, blob_destinations: Iterable[Destinations]):
        self.writer = writer
        self.fds: Dict[PlannedFile, int] = {}
        self.uses: Dict[PlannedFile, int] = {}  # blobs each file still gets from this pack
        uses = self.uses
        for dests in blob_destinations:
            for f, _ in dests:
                uses[f] = uses.get(f, 0) + 1

    def __enter__(self) -> "PackFiles":
        return self

    def __exit__(self, *exc_info) -> None:
        for fd in self.fds.values():
            os.close(fd)
        self.fds.clear()

    def open_new(self, blob_dests: Iterable[Tuple[Destinations, int]]) -> None:
        """Before the descriptors of a batch of (blob destinations, blob size) are asked for:
        create the new files among them in one native call."""
        fds, opens_new = self.fds, self.writer.opens_new
        new = list(dict.fromkeys(f for dests, size in blob_dests for f, off in dests
                                 if not f.failed and f not in fds and opens_new(f, off, size)))
        if not new:
            return
        for f, fd in zip(new, self.writer.open_new(new)):
            if fd >= 0:
                f.created = True
                fds[f] = fd
            # else descriptor() tries again, and fails the file with the reason

    def descriptor(self, f: PlannedFile, offset: int, size: int) -> int:
        """f's descriptor, open for writing a blob of size at offset; -1 if f cannot be
        opened (then f is failed)."""
        fd = self.fds.get(f)
        if fd is None:
            try:
                if f.created:
                    fd = os.open(f.target, _WRITE_FLAGS)
                else:  # its only blob: the write sets the size
                    fd = self.writer.open(f, size if offset == 0 else 0)
            except OSError as exc:
                self.writer.fail(f, exc)
                return -1
            self.fds[f] = fd
        return fd

    def release(self, dests: Destinations) -> List[int]:
        """A blob is done: the descriptors of files that need nothing more from the pack,
        for the caller to close (they are no longer held here)."""
        uses, closing = self.uses, []
        for f, _ in dests:
            uses[f] -= 1
            if uses[f] == 0:
                fd = self.fds.pop(f, None)
                if fd is not None:
                    closing.append(fd)
        return closing
