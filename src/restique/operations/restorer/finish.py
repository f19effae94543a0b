"""Step 3 of a restore, the second pass (a replay of the plan walk): create symlinks, fifos, devices and hard links, then
set ownership, extended attributes, times and modes. A directory's metadata is set when its
walk ends, after everything inside it, so its mtime sticks. With --delete, what the snapshot
doesn't have in a directory is removed at that moment.

It runs while the content writers finish the last packs: the replay waits for each file's
content before handing it on. A file whose content failed is removed then (before its
directory's mtime is set), so no half-restored file looks like the real one."""
import errno
import os
import stat
from typing import Callable, List, Optional

from ...errors import RestiqueError
from ..fs_io import os_message, remove_path
from ..walker import join
from .metadata import apply_metadata
from .options import RestoreOptions
from .plan import RestorePlan
from .recording import CONTENT_DONE, CONTENT_FAILED, CONTENT_FAILED_UNTOUCHED, EntryMeta
from .report import DIR_RESTORED, OTHER_RESTORED, RestoreReport
from .traverse import TreeTraversal


def finish_restore(traversal: TreeTraversal, options: RestoreOptions, plan: RestorePlan,
                   report: RestoreReport, writers_stopped: Callable[[], bool] = lambda: True) -> set:
    """Returns the locations of the files whose content could not be restored.
    writers_stopped(): asked while the replay waits for a file's content (see
    ContentRestorer.stopped)."""
    finisher = _Finisher(traversal, options, plan, report)
    plan.recording.replay(finisher.visit_node, finisher.leave_dir, report.error, traversal.guard, writers_stopped)
    return finisher.failed


class _Finisher:
    def __init__(self, traversal: TreeTraversal, options: RestoreOptions, plan: RestorePlan,
                 report: RestoreReport):
        self.traversal = traversal
        self.dry_run = options.dry_run
        self.by_name = options.ownership_by_name
        self.xattr_selected = options.xattr_selection()
        self.as_root = os.geteuid() == 0
        self._delete = options.delete
        self.plan = plan
        self.failed: set = set()  # locations of the files whose content failed
        self.report = report

    @property
    def delete(self) -> bool:
        # read at each use: the walk may find the snapshot's names off and turn it off
        return self._delete and self.traversal.names_valid

    def visit_node(self, node: EntryMeta, target: str, location: str, parent: str) -> None:
        plan = self.plan
        if location in plan.skipped:
            return
        fresh = parent in plan.fresh_dirs
        if node.type == "file":
            if node.links > 1 and node.inode:
                first_location, first_target = plan.hardlinks.get((node.device_id, node.inode), (location, target))
                if first_location != location:
                    self._link(node, first_location, first_target, target, location, fresh)
                    return
            if node.content == CONTENT_DONE:
                self._metadata(node, target, location, fresh)
            elif node.content in (CONTENT_FAILED, CONTENT_FAILED_UNTOUCHED):
                self.failed.add(location)
                if node.content == CONTENT_FAILED:
                    try:
                        os.unlink(target)
                    except OSError:
                        pass
            return
        if not self.dry_run:
            if not fresh:
                try:
                    remove_path(target, self.delete)  # --delete may replace a non-empty directory
                except OSError as exc:
                    raise RestiqueError(os_message("remove", target, exc)) from None
            _create_special(node, target)
        self.report.done(OTHER_RESTORED, location)
        self._metadata(node, target, location, fresh)

    def leave_dir(self, node: Optional[EntryMeta], target: str, location: str, names, selected=True) -> None:
        if self.delete and names is not None:
            self._remove_unexpected(target, location, names)
        if node is None:
            return
        if not selected:  # a parent of restored entries: restored, though not selected itself
            self.report.planned(0)
        if self._metadata(node, target, location, target in self.plan.fresh_dirs):
            self.report.done(DIR_RESTORED, location)

    def _link(self, node: EntryMeta, source_location: str, source: str, target: str, location: str,
              fresh: bool) -> None:
        if source_location in self.failed:
            raise RestiqueError(f"cannot create hard link to {source_location}: it was not restored")
        if not self.dry_run:
            try:
                if not stat.S_ISREG(os.lstat(source).st_mode):
                    # left in place by --overwrite: maybe a symlink to a file outside the target
                    raise RestiqueError(f"cannot create hard link to {source_location}: not a regular file")
                if not fresh:
                    remove_path(target, self.delete)
                os.link(source, target, follow_symlinks=False)
            except OSError as exc:
                raise RestiqueError(os_message(f"link {source}", target, exc)) from None
        self.report.done(OTHER_RESTORED, location)
        self._metadata(node, target, location, fresh)

    def _remove_unexpected(self, target: str, location: str, names: List[str]) -> None:
        try:
            entries = os.listdir(target)
        except FileNotFoundError:
            return
        keep = set(names)
        select = self.traversal.select
        for entry in sorted(entries):
            if entry in keep:
                continue
            if not select(join(location, entry), False)[0]:
                continue
            path = os.path.join(target, entry)
            doomed = [path]
            if os.path.isdir(path) and not os.path.islink(path):
                for dirpath, dirnames, filenames in os.walk(path):
                    doomed += [os.path.join(dirpath, n) for n in dirnames + filenames]
            if not self.dry_run:
                remove_path(path, True)
            for p in reversed(doomed):
                self.report.deleted(p)

    def _metadata(self, node: EntryMeta, path: str, location: str, fresh: bool = False) -> bool:
        """Set node's metadata on path; False (and the first failure reported) if it failed."""
        if self.dry_run:
            return True
        problem = apply_metadata(node, path, fresh, self.by_name, self.as_root, self.xattr_selected)
        if problem:
            self.report.error(location, problem)
            return False
        return True


def _create_special(node: EntryMeta, target: str) -> None:
    try:
        if node.type == "symlink":
            os.symlink(node.linktarget, target)
        elif node.type == "fifo":
            os.mkfifo(target, 0o600)
        elif node.type == "dev":
            os.mknod(target, stat.S_IFBLK | 0o600, node.device)
        elif node.type == "chardev":
            os.mknod(target, stat.S_IFCHR | 0o600, node.device)
        else:
            raise RestiqueError(f"filetype {node.type!r} not implemented")
    except (OSError, OverflowError) as exc:  # OverflowError: a device number no system has
        op = {"symlink": f"symlink {node.linktarget}", "fifo": "mkfifo"}.get(node.type, "mknod")
        if isinstance(exc, OverflowError):
            exc = OSError(errno.EINVAL, os.strerror(errno.EINVAL))
        raise RestiqueError(os_message(op, target, exc)) from None
