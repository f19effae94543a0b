"""A directory's entries from one native scan (readdir, lstat, symlink targets and, when
asked, extended attributes) made without the GIL.

The reuse check and the walk share scans: a directory whose reuse check failed is walked
from the scan the check made, so no entry is listed or lstat'ed twice. Only the scans of
directories still to be walked are kept (those on the way to a failed check), so what is
held is bounded by the tree's depth. Scans made before the walk started (prescan.py) are taken
the same way, each once.
"""
from typing import Dict, List, Tuple

from ... import _scan

# (name, errno of lstat or 0, lstat fields, symlink target bytes or errno or None,
#  [(xattr name, value)] or None), sorted by name
Entry = Tuple[str, int, object, object, object]


class DirScans:
    def __init__(self, xattrs: bool):
        self._xattrs = xattrs
        self._kept: Dict[str, List[Entry]] = {}
        self._prescanned: Dict[str, _scan.HeldScan] = {}

    def use_prescanned(self, scans: Dict[str, "_scan.HeldScan"]) -> None:
        """Scans made ahead of the walk, by absolute path; each is used once."""
        self._prescanned = scans

    def peek(self, fs_path: str) -> List[Entry]:
        """The entries of fs_path, kept for the walk (OSError if it cannot be listed)."""
        entries = self._kept.get(fs_path)
        if entries is None:
            entries = self._kept[fs_path] = self._scan(fs_path)
        return entries

    def take(self, fs_path: str) -> List[Entry]:
        """The entries of fs_path for the walk, which no longer needs them kept."""
        entries = self._kept.pop(fs_path, None)
        return entries if entries is not None else self._scan(fs_path)

    def forget(self, fs_path: str) -> None:
        """A directory that will not be walked (its tree is reused)."""
        self._kept.pop(fs_path, None)

    def _scan(self, fs_path: str) -> List[Entry]:
        held = self._prescanned.pop(fs_path, None)
        entries = held.take() if held is not None else _scan.scan_dir(fs_path, self._xattrs)
        entries.sort()  # names are unique: the sort never compares further fields
        return entries
