"""--verify: re-read every file whose content was restored and check each blob's SHA-256."""
import hashlib
import os
import stat
from concurrent.futures import ThreadPoolExecutor
from typing import Dict, List, Optional

from ..fs_io import open_for_reading, os_message
from .plan import PlannedFile
from .report import RestoreReport


def verify_files(index, files: List[PlannedFile], workers: int, report: RestoreReport) -> int:
    """Check files (those whose content was written) on disk; problems are reported per
    file. Returns how many were right (also counted in report.stats.files_verified)."""
    files = [f for f in files if not f.failed]
    sizes: Dict[str, int] = {}
    for f in files:
        for blob_id in f.content:
            if blob_id not in sizes:
                loc = index.lookup("data", blob_id)
                sizes[blob_id] = loc.size if loc else -1
    with ThreadPoolExecutor(workers, thread_name_prefix="verify") as pool:
        for f, problem in zip(files, pool.map(lambda f: _verify_file(f, sizes), files)):
            if problem:
                report.error(f.location, problem)
            else:
                report.stats.files_verified += 1
    return report.stats.files_verified


def _verify_file(f: PlannedFile, sizes: Dict[str, int]) -> Optional[str]:
    """What is wrong with f on disk (restic's messages), or None."""
    try:
        fd = open_for_reading(f.target)
    except OSError as exc:
        return os_message("open", f.target, exc)
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            return f"Expected {f.target} to be a regular file"
        if st.st_size != f.size:
            return f"Invalid file size for {f.target}: expected {f.size}, got {st.st_size}"
        return _verify_blobs(fd, f, sizes)
    except OSError as exc:
        return os_message("read", f.target, exc)
    finally:
        os.close(fd)


def _verify_blobs(fd: int, f: PlannedFile, sizes: Dict[str, int]) -> Optional[str]:
    content = f.content
    buf = bytearray(max([sizes[b] for b in content] + [0]))  # one buffer for every blob
    view = memoryview(buf)
    offset = 0
    with os.fdopen(os.dup(fd), "rb", buffering=0) as stream:
        for blob_id in content:
            n = sizes[blob_id]
            if n < 0:
                return f"Unable to fetch blob {blob_id}"
            got = stream.readinto(view[:n])
            while got < n:
                more = stream.readinto(view[got:n])
                if not more:
                    return f"Invalid file size for {f.target}: expected {f.size}, got {offset + got}"
                got += more
            if hashlib.sha256(view[:n]).hexdigest() != blob_id:
                return f"Unexpected content in {f.target}, starting at offset {offset}"
            offset += n
    return None
