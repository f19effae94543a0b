"""Reading a changed file on a reader thread and recording its content in its node."""
import os
import stat
import time
from typing import List, Optional

from ...backend.base import BackendError
from ...errors import RestiqueError
from ...model.names import go_quote
from ...model.node import Node
from ..fs_io import open_for_reading
from ..fs_metadata import restat_file_node
from .file_saver import FileSaver
from .progress import BackupProgress, ItemResult, item_action, report_error
from .tasks import Completion


class PendingFile:
    """A regular file whose content is to be read: where it is, what lstat saw, its node,
    the parent snapshot's node of the same path, and (in a batch of small files) the
    completion its node is delivered to."""

    __slots__ = ("fs_path", "st", "node", "snap_path", "old", "done")

    def __init__(self, fs_path: str, st: os.stat_result, node: Node, snap_path: str, old: Optional[dict],
                 done: Optional[Completion] = None):
        self.fs_path = fs_path
        self.st = st
        self.node = node
        self.snap_path = snap_path
        self.old = old
        self.done = done

    def changed_type_error(self) -> RestiqueError:
        """Current restic's words for a path that is no longer a regular file when opened."""
        return RestiqueError(f'file "{go_quote(self.fs_path)}" changed type, refusing to archive')


class FileReader:
    def __init__(self, saver: FileSaver, progress: BackupProgress):
        self.saver = saver
        self.progress = progress

    def read_and_save_file(self, entry: PendingFile) -> Optional[Node]:
        """Open, check it is still a regular file, chunk and save: the file's node, or None
        when it is left out (the error is reported)."""
        if self.saver.cancelled.is_set():
            return None
        started = time.monotonic()
        try:
            fd = open_for_reading(entry.fs_path, nonblocking=True)
        except OSError as exc:
            report_error(self.progress, entry.snap_path, exc, op="open")
            return None
        try:
            now = os.fstat(fd)
            if not stat.S_ISREG(now.st_mode):
                report_error(self.progress, entry.snap_path, entry.changed_type_error())
                return None
            if (now.st_ino, now.st_dev) != (entry.st.st_ino, entry.st.st_dev):
                # another file was put in its place (an editor's save by rename): as restic,
                # save the file that is read, described by its own metadata
                restat_file_node(entry.node, entry.fs_path, now)
            ids, total, added, stored = self.saver.read_content(fd, now.st_size)
        except BackendError:
            raise  # the repository failed, not this file: the backup stops
        except OSError as exc:
            exc.filename = exc.filename or entry.fs_path
            report_error(self.progress, entry.snap_path, exc, op="read")
            return None
        finally:
            os.close(fd)
        return self.record_file_content(entry, ids, total, added, stored, started)

    def record_file_content(self, entry: PendingFile, ids: List[str], size: int, added: int, stored: int,
                            started: float) -> Node:
        """Store the content read (blob ids, bytes) in the node and report the file done;
        added and stored count the bytes of new blobs."""
        node = entry.node
        node.content = ids
        node.size = size
        self.progress.file_done(entry.snap_path, "file",
                                ItemResult(item_action(entry.old, node), added, stored, 0, 0,
                                           time.monotonic() - started), size)
        return node
