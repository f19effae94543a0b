"""Counting what a backup will read, for progress percentages and the ETA."""
import os
import stat
from typing import Callable, Optional


def scan(paths, reject: Optional[Callable], report: Callable[[int, int], None]):
    """(files, bytes) below paths, applying the same exclusions as the backup."""
    files = size = 0
    stack = [os.path.abspath(p) for p in paths]
    first = set(stack)
    while stack:
        path = stack.pop()
        try:
            st = os.lstat(path)
        except OSError:
            continue
        if reject is not None and path not in first and reject(path, path, st):
            continue
        if stat.S_ISDIR(st.st_mode):
            try:
                with os.scandir(path) as it:
                    stack.extend(e.path for e in it)
            except OSError:
                continue
        elif stat.S_ISREG(st.st_mode):
            files += 1
            size += st.st_size
            if files % 1000 == 0:
                report(files, size)
    return files, size
