"""Which entries a backup leaves out: patterns, cache directories, marker files, size."""
import os
import stat
from typing import List, Optional, Tuple

CACHEDIR_TAG = ("CACHEDIR.TAG", b"Signature: 8a477f597d28d172789f06886806bc55")


def parse_size(text: str) -> int:
    """`--exclude-larger-than`: a number with an optional k/m/g/t suffix (1024-based)."""
    from ...errors import UsageError

    text = text.strip()
    units = {"k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}
    factor = units.get(text[-1:].lower(), 1)
    digits = text[:-1] if factor != 1 else text
    try:
        value = int(digits)
    except ValueError:
        raise UsageError(f'invalid size "{text}": use a number with an optional k, m, g or t suffix') from None
    return value * factor


def parse_marker(spec: str) -> Tuple[str, Optional[bytes]]:
    """`--exclude-if-present name[:header]`; an empty header only asks for the file."""
    from ...errors import UsageError

    if not spec:
        raise UsageError("name for exclusion tagfile is empty")
    name, _, header = spec.partition(":")
    if not name:
        raise UsageError("no name for exclusion tagfile provided")
    return name, header.encode() if header else None


class Selector:
    """Combines every exclusion rule into one `reject(snap_path, fs_path, lstat)` test."""

    def __init__(self, excludes=None, markers: List[Tuple[str, Optional[bytes]]] = (),
                 larger_than: Optional[int] = None):
        self.excludes = excludes  # a PatternList (or several, tested in turn)
        self.markers = list(markers)
        self.larger_than = larger_than  # None: no limit; 0 leaves out every non-empty file
        self._marked_dirs = {}

    def __bool__(self):
        return bool(self.excludes) or bool(self.markers) or self.larger_than is not None

    def _dir_marked(self, directory: str) -> Optional[str]:
        """The marker file name that excludes this directory's content, if any."""
        if directory in self._marked_dirs:
            return self._marked_dirs[directory]
        found = None
        for name, header in self.markers:
            marker = os.path.join(directory, name)
            try:
                if header is None:
                    if os.path.lexists(marker):
                        found = name
                else:
                    with open(marker, "rb") as f:
                        if f.read(len(header)) == header:
                            found = name
            except OSError:
                continue
            if found:
                break
        self._marked_dirs[directory] = found
        return found

    def __call__(self, snap_path: str, fs_path: str, st: os.stat_result) -> bool:
        if self.excludes is not None and any(p.matches(fs_path) for p in self.excludes):
            return True
        # as restic: anything but a directory, symlinks by the length of their target
        if self.larger_than is not None and not stat.S_ISDIR(st.st_mode) and st.st_size > self.larger_than:
            return True
        if self.markers:
            directory, name = os.path.split(fs_path)
            marker = self._dir_marked(directory)
            if marker is not None and name != marker:
                return True
        return False
