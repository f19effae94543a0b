"""One restore, composed from its steps: plan (first walk), content (packs into files),
finish (a replay of the first walk, while the last packs are written: special files,
links, metadata, --delete), and on request verify.

Per-entry failures are reported (``progress.error(location, message)``) and the restore goes
on; a file whose content could not be restored is removed rather than left with holes.
Locations are snapshot paths below the restored tree ("/srv/data/file"), as restic reports
them.
"""
import os
import sys
import time
from contextlib import contextmanager
from typing import List, Optional

from ...errors import RestiqueError, UsageError
from ..allocator import return_large_buffers
from ..collector import fewer_collections
from ..fs_io import error_message
from .file_writer import FilesWriter
from .finish import finish_restore
from .options import RestoreOptions
from .pack_reader import ContentRestorer, mapped_block_threshold
from .plan import PlannedFile, new_recording, plan_restore
from .report import RestoreProgress, RestoreReport, RestoreStats
from .traverse import TreeTraversal
from .verify import verify_files

# how long a thread may hold the GIL while another waits for it (Python's default: 5 ms). The
# planning thread runs Python for long stretches while the workers need it for a moment after
# each native call, and every system call of one thread let the others' Python in: at 5 ms a
# waiting thread sat out most of each wait, and the restore used little more than one core
GIL_SWITCH_SECONDS = 0.0005


class Restorer:
    """Restores tree_id (a snapshot's root tree, or a subfolder's) below options.target, as
    restic's Restorer does: restore() (RestoreTo), then, if wanted, verify() (VerifyFiles).
    The caller decides what the errors in the stats mean for its exit code."""

    def __init__(self, repo, tree_id: str, options: RestoreOptions,
                 progress: Optional[RestoreProgress] = None):
        options.validate()
        self.repo = repo
        self.tree_id = tree_id
        self.options = options
        self.report = RestoreReport(progress)
        self._index = None
        self._files: List[PlannedFile] = []  # whose content was written: what verify reads
        # (kept only for options.verify: a large restore's files are its largest part)

    @property
    def stats(self) -> RestoreStats:
        return self.report.stats

    def restore(self) -> RestoreStats:
        with fewer_collections():
            return self._restore()

    def _restore(self) -> RestoreStats:
        t0 = time.monotonic()
        options, report = self.options, self.report
        self._index = self.repo.load_index()
        target = os.path.abspath(options.target)
        if not options.dry_run:
            _create_target(target)
        traversal = TreeTraversal(self.repo, self.tree_id, target, options.selection(), report)
        if options.dry_run:
            plan = plan_restore(traversal, options, self._index, report)
            for f in plan.files:
                report.done(f.action, f.location, f.size, count_bytes=True)
            self._files = plan.files
            finish_restore(traversal, options, plan, report)
        else:
            self._restore_content_and_finish(traversal)
        report.stats.seconds = time.monotonic() - t0
        return report.stats

    def _restore_content_and_finish(self, traversal: TreeTraversal) -> None:
        """The plan walk, the content writers and the finish step, overlapped: files are
        written while the walk goes on, and the finish step sets metadata while the last
        packs are written (waiting for each file's content). With --delete the walk ends
        before any writing: it may find the snapshot's names off, and then no directory in
        a file's place may be removed."""
        options, report = self.options, self.report
        overlap = not options.delete
        return_large_buffers(mapped_block_threshold(self.repo.backend))
        with quick_gil_handoff():
            self._plan_write_and_finish(traversal, overlap)

    def _plan_write_and_finish(self, traversal: TreeTraversal, overlap: bool) -> None:
        options, report = self.options, self.report
        recording = new_recording(traversal, options)
        writer = FilesWriter(report, options.sparse, False, recording)
        content = ContentRestorer(self.repo, self._index, writer, options.worker_count(self.repo.backend))
        try:
            report.planning(overlap)
            plan = plan_restore(traversal, options, self._index, report, content.add if overlap else None,
                                keep_files=options.verify, recording=recording)
            report.planning(False)
            if not overlap:
                writer.replace_dirs = traversal.names_valid  # read after the whole walk
                content.add(plan.files)
            self._files = plan.files
            finish_restore(traversal, options, plan, report, content.stopped)
            content.wait()
        finally:
            content.close()

    def verify(self) -> int:
        """Re-read the files restore() wrote; how many hold the right content. Needs
        options.verify: other restores do not keep the list of files they wrote."""
        if not self.options.verify:
            raise UsageError("verify() needs a restore with RestoreOptions(verify=True)")
        return verify_files(self._index, self._files, self.options.worker_count(self.repo.backend), self.report)


def restore(repo, tree_id: str, options: RestoreOptions,
            progress: Optional[RestoreProgress] = None) -> RestoreStats:
    """Restore tree_id below options.target and, with options.verify and no errors, verify
    the restored files. Per-entry failures go to progress.error and RestoreStats.errors."""
    restorer = Restorer(repo, tree_id, options, progress)
    stats = restorer.restore()
    if options.verify and not stats.errors and not options.dry_run:
        restorer.verify()
    return stats


@contextmanager
def quick_gil_handoff():
    """While the restore's threads run: GIL_SWITCH_SECONDS, then the interval as it was."""
    before = sys.getswitchinterval()
    sys.setswitchinterval(GIL_SWITCH_SECONDS)
    try:
        yield
    finally:
        sys.setswitchinterval(before)


def _create_target(target: str) -> None:
    try:
        os.makedirs(target, 0o700, exist_ok=True)
    except OSError as exc:
        raise RestiqueError(f"cannot create target directory: {error_message(exc)}") from None
    if not os.path.isdir(target):
        raise RestiqueError(f"cannot create target directory: {target} is not a directory")
