"""Scanning the first folders of a backup while the repository is being opened.

Opening derives the key from the password: a few tenths of a second of scrypt on one core,
with the other core idle. The walk's folder scans (readdir, lstat, symlink targets, extended
attributes: native, without the GIL) need no key, so they are made meanwhile, in the walk's own
order, and the walk takes them instead of scanning again (DirScans). What is scanned is held
until walked, in its C form (_scan.HeldScan, ~270 bytes an entry), so the scan stops after a
bounded number of entries, or when the walk starts.
"""
import os
import stat
import threading
from typing import Callable, Dict, List, Optional

from ... import _scan

# entries held at most, ~270 bytes each until walked: the bench's tree (31,500 entries) is
# scanned whole during the derivation, and its re-backup after a few changes took 1.76 s
# against 1.89 with 8,192 (medians of 4). Its peak memory stays at 62-65 MiB: the walk, no
# longer scanning, runs further ahead of the reads, and what it holds meanwhile is mostly the
# unchanged entries of folders not written yet, kept as their text (model.node.EncodedNode).
PRESCAN_ENTRIES = 40000


class Prescan:
    def __init__(self, targets: List[str], xattrs: bool, one_file_system: bool = False,
                 limit: int = PRESCAN_ENTRIES, when_done: "Optional[Callable[[Prescan], None]]" = None):
        """when_done(prescan): called in the scanning thread once it ends (its core is free
        then), to read folders_scanned and largest_file."""
        self._when_done = when_done
        self.folders_scanned = 0
        self.largest_file = 0  # the size of the largest regular file among the targets
        self._xattrs = xattrs
        self._one_file_system = one_file_system
        self._limit = limit
        self._stop = threading.Event()
        self._scans: Dict[str, _scan.HeldScan] = {}
        self._thread = threading.Thread(target=self._run, args=(targets[:limit],), name="prescan", daemon=True)
        self._thread.start()

    def wait(self) -> None:
        """Until everything within the bound is scanned."""
        self._thread.join()

    def finish(self) -> Dict[str, _scan.HeldScan]:
        """Stop after the folder being scanned; the scans made so far, by absolute path.
        Only the first call hands them over."""
        self._stop.set()
        self._thread.join()
        scans, self._scans = self._scans, {}
        return scans

    def _run(self, targets: List[str]) -> None:
        try:
            self._scan(targets)
        finally:
            if self._when_done is not None:
                self._when_done(self)

    def _scan(self, targets: List[str]) -> None:
        # depth first, names sorted: the order in which the walk asks for the folders
        stack = [(os.path.abspath(t), None) for t in reversed(targets)]  # (path, device or None)
        held = 0
        while stack and held < self._limit and not self._stop.is_set():
            path, dev = stack.pop()
            try:
                if dev is None:  # a target
                    held += 1
                    st = os.lstat(path)
                    if not stat.S_ISDIR(st.st_mode):
                        if stat.S_ISREG(st.st_mode):
                            self.largest_file = max(self.largest_file, st.st_size)
                        continue  # a target is taken as it is: a symlink is not followed
                    dev = st.st_dev
                scan = _scan.hold_dir(path, self._xattrs)
            except OSError:
                continue  # the walk meets it again and reports it
            self._scans[path] = scan
            self.folders_scanned += 1
            held += len(scan)
            prefix = path if path.endswith("/") else path + "/"
            stack.extend((prefix + name, dev) for name, folder_dev in sorted(scan.folders(), reverse=True)
                         if not (self._one_file_system and folder_dev != dev))  # -x does not go there
