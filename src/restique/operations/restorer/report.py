"""What a restore tells its caller: counts, one call per finished entry, per-entry errors.

Content workers report from several threads, so every change to the counts that can happen
while they run holds the report's lock.
"""
import threading
from dataclasses import dataclass, field, replace
from typing import Callable, List, Optional, Tuple

from ..fs_io import error_message

# what happened to an item (restic's restorer.ItemAction)
DIR_RESTORED = "dir restored"
FILE_RESTORED = "file restored"
FILE_UPDATED = "file updated"
FILE_UNCHANGED = "file unchanged"
OTHER_RESTORED = "other restored"
DELETED = "deleted"


@dataclass
class RestoreStats:
    """Counts as restic's restore progress keeps them (files/dirs/others together)."""

    files_total: int = 0
    files_restored: int = 0
    files_skipped: int = 0
    files_deleted: int = 0
    bytes_total: int = 0
    bytes_restored: int = 0
    bytes_skipped: int = 0
    files_verified: int = 0
    # the plan walk still counts the totals while the first files are written: they may grow,
    # and restored / total is no percentage yet (restic plans first: its totals never grow)
    planning: bool = False
    seconds: float = 0.0
    errors: List[Tuple[str, str]] = field(default_factory=list)

    @property
    def complete(self) -> bool:
        return self.files_restored == self.files_total and self.bytes_restored == self.bytes_total


class RestoreProgress:
    """Receives what happens during a restore. Calls come from several threads, one at a time."""

    def item(self, action: str, location: str, size: int) -> None:
        """An entry is done: action is one of DIR_RESTORED ... DELETED."""

    def error(self, location: str, message: str) -> None:
        """An entry failed; the restore goes on."""

    def watch(self, counts: Callable[[], RestoreStats]) -> None:
        """Called once, before the restore starts: counts() returns a copy of the counts so
        far (without the errors), safe to call from any thread, e.g. a status display's own."""


class RestoreReport:
    """The stats of one restore and the progress calls that go with them."""

    def __init__(self, progress: Optional[RestoreProgress] = None):
        self.stats = RestoreStats()
        self.progress = progress or RestoreProgress()
        self.lock = threading.Lock()
        self._reported: set = set()
        self.progress.watch(self.counts)

    def counts(self) -> RestoreStats:
        """A copy of the counts so far; the errors are left out (they only grow)."""
        with self.lock:
            return replace(self.stats, errors=[])

    def error(self, location: str, error) -> None:
        message = error if isinstance(error, str) else error_message(error)
        with self.lock:
            if (location, message) in self._reported:
                return  # e.g. a tree that fails to load in both walks
            self._reported.add((location, message))
            self.stats.errors.append((location, message))
            self.progress.error(location, message)

    def planning(self, walking: bool) -> None:
        """The totals are still growing (the plan walk overlaps the writing), or final."""
        with self.lock:
            self.stats.planning = walking

    def planned(self, size: int) -> None:
        """One more entry to restore. Only the walks call it, while no worker runs."""
        self.stats.files_total += 1
        self.stats.bytes_total += size

    def done(self, action: str, location: str, size: int = 0, count_bytes: bool = False) -> None:
        with self.lock:
            self.stats.files_restored += 1
            if count_bytes:
                self.stats.bytes_restored += size
            self.progress.item(action, location, size)

    def skipped(self, location: str, size: int, action: str = FILE_UNCHANGED) -> None:
        with self.lock:
            self.stats.files_skipped += 1
            self.stats.bytes_skipped += size
            self.progress.item(action, location, size)

    def bytes_restored(self, size: int) -> None:
        with self.lock:
            self.stats.bytes_restored += size

    def deleted(self, path: str) -> None:
        with self.lock:
            self.stats.files_deleted += 1
            self.progress.item(DELETED, path, 0)
