"""What a backup reports while it runs, and the totals it ends with."""
import threading
from dataclasses import dataclass, field
from typing import Optional


@dataclass
class ItemCounts:
    new: int = 0
    changed: int = 0
    unmodified: int = 0


@dataclass
class BackupStats:
    """The numbers of restic's backup summary."""

    files: ItemCounts = field(default_factory=ItemCounts)
    dirs: ItemCounts = field(default_factory=ItemCounts)
    data_blobs: int = 0
    tree_blobs: int = 0
    data_added: int = 0  # plaintext bytes of new blobs
    data_added_packed: int = 0  # what they take in the repository
    files_processed: int = 0
    bytes_processed: int = 0
    errors: int = 0


@dataclass
class ItemResult:
    """One saved file or directory, for -vv and --json -v output."""

    action: str  # "new", "modified", "unchanged"
    data_size: int = 0
    data_size_in_repo: int = 0
    metadata_size: int = 0
    metadata_size_in_repo: int = 0
    duration: float = 0.0


class BackupProgress:
    """Receives events from the archiver's threads; the CLI subclasses it.

    Methods may be called from several threads at once; counters are updated under a lock.
    """

    def __init__(self):
        self.lock = threading.Lock()
        self.stats = BackupStats()
        self.current = set()
        self.scan_files = 0
        self.scan_bytes = 0
        self.scan_done = False

    # --- archiver events ---
    def start_file(self, path: str) -> None:
        with self.lock:
            self.current.add(path)

    def file_done(self, path: str, kind: str, result: ItemResult, size: int) -> None:
        """kind: 'file' or 'dir'."""
        with self.lock:
            self.current.discard(path)
            counts = self.stats.files if kind == "file" else self.stats.dirs
            if result.action == "new":
                counts.new += 1
            elif result.action == "unchanged":
                counts.unmodified += 1
            else:
                counts.changed += 1
            if kind == "file":
                self.stats.files_processed += 1
                self.stats.bytes_processed += size
        self.item(path, kind, result)

    def unchanged_items(self, files: int, dirs: int, size: int, items) -> None:
        """The files (of size bytes in all) and directories below a reused directory, counted
        at once (there may be millions); items: (path, kind, size) of each, for item(), when
        wants_items() asked for them."""
        with self.lock:
            self.stats.files.unmodified += files
            self.stats.dirs.unmodified += dirs
            self.stats.files_processed += files
            self.stats.bytes_processed += size
        unchanged = ItemResult("unchanged")
        for path, kind, _n in items:
            if kind != "other":
                self.item(path, kind, unchanged)

    def wants_items(self) -> bool:
        """Whether item() shows unchanged entries; when not, the entries below a reused
        directory are only counted. A subclass that shows items only at some verbosity
        should say so here."""
        return type(self).item is not BackupProgress.item

    def blob_added(self, blob_type: str, plain: int, stored: int) -> None:
        with self.lock:
            if blob_type == "data":
                self.stats.data_blobs += 1
            else:
                self.stats.tree_blobs += 1
            self.stats.data_added += plain
            self.stats.data_added_packed += stored

    def bytes_read(self, n: int) -> None:
        """Content bytes read so far (for live progress)."""

    def error(self, path: str, message: str, during: str = "archival") -> None:
        with self.lock:
            self.stats.errors += 1
            self.current.discard(path)

    def scan_finished(self, files: int, size: int, seconds: float) -> None:
        with self.lock:
            self.scan_files, self.scan_bytes, self.scan_done = files, size, True

    def scan_progress(self, files: int, size: int) -> None:
        with self.lock:
            self.scan_files, self.scan_bytes = files, size

    # --- for output subclasses ---
    def item(self, path: str, kind: str, result: ItemResult) -> None:
        pass


def report_error(progress: BackupProgress, path: str, exc: BaseException, during: str = "archival",
                 op: str = "") -> None:
    """Report a failed entry as restic words it: `open /x: permission denied`."""
    if isinstance(exc, OSError) and exc.strerror:
        message = f"{exc.filename or path}: {exc.strerror[:1].lower()}{exc.strerror[1:]}"
        if op:
            message = f"{op} {message}"
    else:
        message = str(exc)
    progress.error(path, message, during)


def item_action(old: Optional[dict], new) -> str:
    """How a saved node compares with the parent snapshot's node (JSON) of the same path."""
    if old is None:
        return "new"
    # the usual reasons for a difference are decided without encoding the whole node
    if (old.get("size") or 0) != new.size or old.get("mtime") != new.mtime.rfc3339() \
            or old.get("ctime") != new.ctime.rfc3339():
        return "modified"
    return "unchanged" if old == new.to_json() else "modified"
