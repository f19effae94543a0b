"""Setting a restored entry's owner, extended attributes, times and mode, in restic's order."""
import errno
import os
from typing import Callable, Optional

from ..fs_io import error_message, os_message
from .recording import EntryMeta

_IGNORABLE = (errno.ENOTSUP, errno.EOPNOTSUPP, errno.ENODATA)
_DENIED = (errno.EPERM, errno.EACCES)


def apply_metadata(node: EntryMeta, path: str, fresh: bool, by_name: bool, as_root: bool,
                   xattr_selected: Optional[Callable[[str], bool]] = None) -> Optional[str]:
    """Set node's metadata on path; the message of the first failure, or None. Without
    root (as_root False), permission errors are expected and ignored. fresh: path was
    created by this run (so it has no extended attributes to remove). by_name: owner by
    user and group name rather than the numeric ids. xattr_selected(name): whether an
    extended attribute is restored (and, if not in the snapshot, removed); None: all are."""
    first: Optional[str] = None
    is_link = node.type == "symlink"
    # chmod would follow a symlink, maybe out of the target; what this run created in a
    # directory it created is what it made, so only older entries need the look
    if not is_link and not fresh and os.path.islink(path):
        return f"{path} is a symlink where the snapshot has a {node.type}: metadata not restored"
    uid, gid = node.uid, node.gid
    if by_name:
        uid, gid = _uid_by_name(node.user), _gid_by_name(node.group)
    try:
        os.chown(path, uid, gid, follow_symlinks=False)
    except OSError as exc:
        if as_root or exc.errno not in _DENIED:
            first = os_message("lchown", path, exc)
    except OverflowError:  # an id no system has: a damaged or hostile tree
        first = os_message("lchown", path, OSError(errno.EINVAL, os.strerror(errno.EINVAL)))
    err = _xattrs(node, path, is_link, fresh, as_root, xattr_selected)
    first = first or err
    try:
        os.utime(path, ns=(node.atime_ns, node.mtime_ns), follow_symlinks=False)
    except OSError as exc:
        first = first or f"failed to restore timestamp of {path!r}: {error_message(exc)}"
    except OverflowError:  # a time far outside what the file system holds
        first = first or f"failed to restore timestamp of {path!r}: value too large"
    if not is_link:
        try:
            os.chmod(path, node.unix_mode)
        except OSError as exc:
            if as_root or exc.errno not in _DENIED:
                first = first or os_message("chmod", path, exc)
    return first


CHOWN, UTIME, CHMOD = range(3)  # the calls of a native metadata batch (restique._restore.finish_files)


def calls_problem(path: str, failures, as_root: bool) -> Optional[str]:
    """The message apply_metadata gives for the same failures, [(call, errno), ...] of a
    file's chown, utime and chmod made through its descriptor; None if none counts."""
    failed = dict(failures)
    first: Optional[str] = None
    for call in (CHOWN, UTIME, CHMOD):
        err = failed.get(call)
        if err is None:
            continue
        exc = OSError(err, os.strerror(err), path)
        if call == UTIME:
            first = first or f"failed to restore timestamp of {path!r}: {error_message(exc)}"
        elif as_root or err not in _DENIED:
            first = first or os_message("lchown" if call == CHOWN else "chmod", path, exc)
    return first


def _xattrs(node: EntryMeta, path: str, is_link: bool, fresh: bool, as_root: bool,
            selected: Optional[Callable[[str], bool]]) -> Optional[str]:
    expected = set()
    for name, value in node.xattrs:
        if selected is not None and not selected(name):
            continue  # as restic: neither set nor, below, removed
        expected.add(name)
        try:
            os.setxattr(path, name, value or b"", follow_symlinks=False)
        except OSError as exc:
            if exc.errno in _IGNORABLE or (is_link and exc.errno == errno.EPERM):
                continue
            if not as_root and exc.errno in _DENIED:
                continue
            return os_message(f"setxattr {name}", path, exc)
    if fresh:
        return None
    try:
        present = os.listxattr(path, follow_symlinks=False)
    except OSError:
        return None
    for name in present:
        if name in expected or not name.startswith(("user.", "trusted.")):
            continue  # security.* and system.* belong to the system, not the snapshot
        if selected is not None and not selected(name):
            continue
        try:
            os.removexattr(path, name, follow_symlinks=False)
        except OSError as exc:
            if exc.errno not in _IGNORABLE + _DENIED:
                return os_message(f"removexattr {name}", path, exc)
    return None


def _uid_by_name(name: str) -> int:
    import pwd

    try:
        return pwd.getpwnam(name).pw_uid if name else -1
    except KeyError:
        return -1


def _gid_by_name(name: str) -> int:
    import grp

    try:
        return grp.getgrnam(name).gr_gid if name else -1
    except KeyError:
        return -1
