"""What a restore is asked to do: restic's restorer.Options, plus the selection and --verify."""
import os
from dataclasses import dataclass
from typing import Callable, Optional, Sequence

from ...backend.base import remote_connections
from ...errors import UsageError
from ...model.patterns import option_patterns
from ..restore_selection import Selection

OVERWRITE_MODES = ("always", "if-changed", "if-newer", "never")


@dataclass
class RestoreOptions:
    """One restore's settings, built by the CLI (or a library caller) and checked by validate().

    includes/excludes: pattern strings (restic's --include/--exclude syntax) or pattern
    matchers (e.g. model.patterns.PatternList, one per case sensitivity); only one of the two.
    overwrite: always | if-changed | if-newer | never. delete: remove what the snapshot
    doesn't have (only below selected paths). sparse: leave all-zero blobs as holes. verify:
    re-read the restored files afterwards. ownership_by_name: owners by user and group name
    instead of the numeric ids. workers: threads writing file contents (default: by CPUs and
    the backend's connections). xattr_includes/xattr_excludes: patterns of the extended
    attributes to restore, or not to (restic's --include-xattr/--exclude-xattr; default all,
    only one of the two).
    """

    target: str
    includes: Sequence = ()
    excludes: Sequence = ()
    overwrite: str = "always"
    delete: bool = False
    dry_run: bool = False
    sparse: bool = False
    verify: bool = False
    ownership_by_name: bool = False
    workers: Optional[int] = None
    xattr_includes: Sequence[str] = ()
    xattr_excludes: Sequence[str] = ()

    def validate(self) -> None:
        """Raise UsageError for settings restic refuses, in its words and order. The only
        place these are checked: the CLI calls it before opening the repository, and the
        Restorer again for library callers."""
        if not self.target:
            raise UsageError("please specify a directory to restore to (--target)")
        if self.excludes and self.includes:
            raise UsageError("exclude and include patterns are mutually exclusive")
        self.xattr_selection()
        if self.dry_run and self.verify:
            raise UsageError("--dry-run and --verify are mutually exclusive")
        if self.overwrite not in OVERWRITE_MODES:
            # restic checks the mode while parsing its flags, hence the flag parser's wording
            raise UsageError(f'invalid argument "{self.overwrite}" for "--overwrite" flag: invalid overwrite '
                             f'behavior "{self.overwrite}", must be one of (always|if-changed|if-newer|never)')
        if self.delete and os.path.normpath(self.target) == "/" and not (self.excludes or self.includes):
            raise UsageError("'--target / --delete' must be combined with an include or exclude filter")

    def xattr_selection(self) -> Optional[Callable[[str], bool]]:
        """Whether an extended attribute, by name, is restored; None when all are."""
        if self.xattr_excludes and self.xattr_includes:
            raise UsageError("exclude and include xattr patterns are mutually exclusive")
        if self.xattr_excludes:
            excluded = option_patterns("--exclude-xattr", list(self.xattr_excludes))
            return lambda name: not excluded.matches(name)
        if self.xattr_includes:
            return option_patterns("--include-xattr", list(self.xattr_includes)).matches
        return None

    def selection(self) -> Selection:
        return Selection(self.includes or None, self.excludes or None)

    def worker_count(self, backend=None) -> int:
        """2 workers, 3 on big machines: more only add GIL contention for small blobs. A remote
        backend answers each read after a round trip, so it gets as many workers as it has
        connections (`-o <scheme>.connections`), as restic's restorer does."""
        if self.workers:
            return self.workers
        by_cpus = min(3, max(2, (os.cpu_count() or 2) // 2))
        return max(by_cpus, remote_connections(backend))
