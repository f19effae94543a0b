"""File system calls shared by backup and restore, with Go's error wording."""
import os
import shutil
import stat

READ_FLAGS = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)
NOATIME = getattr(os, "O_NOATIME", 0)


def open_for_reading(path, nonblocking: bool = False) -> int:
    """A read-only descriptor that does not follow symlinks and, where allowed, does not
    update the access time. nonblocking: a FIFO put where a file was opens at once instead
    of waiting for a writer (reads of regular files ignore the flag)."""
    flags = READ_FLAGS | (os.O_NONBLOCK if nonblocking else 0)
    if NOATIME:
        try:
            return os.open(path, flags | NOATIME)
        except PermissionError:
            pass  # O_NOATIME needs the file's owner or root
    return os.open(path, flags)


def os_message(op: str, path: str, exc: OSError) -> str:
    """Go's *PathError text: "op path: no such file or directory"."""
    text = exc.strerror or str(exc)
    text = text[:1].lower() + text[1:]
    return f"{op} {path}: {text}" if path else f"{op}: {text}"


def error_message(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.strerror:
        text = exc.strerror[:1].lower() + exc.strerror[1:]
        return f"{exc.filename}: {text}" if exc.filename else text
    return str(exc)


def remove_path(path: str, recursive: bool) -> None:
    """Go's os.Remove (a file or an empty directory) or os.RemoveAll."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return
    if stat.S_ISDIR(st.st_mode):
        if recursive:
            shutil.rmtree(path)
        else:
            os.rmdir(path)
    else:
        os.unlink(path)


def pwrite_all(fd: int, data, offset: int) -> None:
    n = os.pwrite(fd, data, offset)
    if n == len(data):
        return
    view = memoryview(data)[n:]
    offset += n
    while view:
        n = os.pwrite(fd, view, offset)
        view = view[n:]
        offset += n
