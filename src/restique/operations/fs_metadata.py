"""Reading file system metadata into tree nodes, as restic records it."""
import grp
import os
import pwd
import stat
import threading
import time
from typing import Dict, Optional

from ..model.gotime import GoTime
from ..model.node import (
    MODE_CHAR_DEVICE,
    MODE_DEVICE,
    MODE_DIR,
    MODE_NAMED_PIPE,
    MODE_SETGID,
    MODE_SETUID,
    MODE_SOCKET,
    MODE_STICKY,
    MODE_SYMLINK,
    Node,
)

_TYPES = {
    stat.S_IFREG: ("file", 0),
    stat.S_IFDIR: ("dir", MODE_DIR),
    stat.S_IFLNK: ("symlink", MODE_SYMLINK),
    stat.S_IFBLK: ("dev", MODE_DEVICE),
    stat.S_IFCHR: ("chardev", MODE_DEVICE | MODE_CHAR_DEVICE),
    stat.S_IFIFO: ("fifo", MODE_NAMED_PIPE),
    stat.S_IFSOCK: ("socket", MODE_SOCKET),
}

_names_lock = threading.Lock()


def _cached_name(cache: Dict[int, str], key: int, lookup) -> str:
    """A user or group name by id, looked up once; "" when the id has no name."""
    name = cache.get(key)
    if name is None:
        try:
            name = lookup(key)
        except KeyError:
            name = ""
        with _names_lock:
            cache[key] = name
    return name


_users: Dict[int, str] = {}
_groups: Dict[int, str] = {}


def user_name(uid: int) -> str:
    return _cached_name(_users, uid, lambda i: pwd.getpwuid(i).pw_name)


def group_name(gid: int) -> str:
    return _cached_name(_groups, gid, lambda i: grp.getgrgid(i).gr_name)


class LocalTime:
    """GoTime in the local zone, with the zone offset looked up once per quarter hour
    (offsets only change on quarter-hour boundaries)."""

    def __init__(self):
        self._offsets: Dict[int, int] = {}
        # in UTC every offset is 0: files' times spread over years would each ask localtime
        self.utc = time.tzname == ("UTC", "UTC") and time.timezone == 0 and time.altzone == 0

    def __call__(self, ns: int) -> GoTime:
        if self.utc:
            return GoTime(ns, 0)
        bucket = ns // 900_000_000_000
        offset = self._offsets.get(bucket)
        if offset is None:
            offset = self._offsets[bucket] = time.localtime(bucket * 900).tm_gmtoff
        return GoTime(ns, offset)


local_time = LocalTime()

_DAY_TEXTS: Dict[int, str] = {}  # days since the epoch -> 'YYYY-MM-DDT'
_ZONE_TEXTS: Dict[int, str] = {}  # UTC offset -> 'Z' or '+hh:mm'
_LAST_DAY = 2932896  # 9999-12-31: later (and earlier than 1970) dates take GoTime's path


def local_time_text(ns: int) -> str:
    """local_time(ns).rfc3339() without building a GoTime: the reuse check compares two
    times for every entry, and entries rarely share a second but often share a day."""
    return _local_time_parts(ns)[1]


def _local_time_parts(ns: int) -> tuple:
    """(UTC offset, RFC 3339 text) of ns in the local zone."""
    seconds, nanos = divmod(ns, 1_000_000_000)
    offset = 0 if local_time.utc else local_time._offsets.get(seconds // 900)
    if offset is None:
        offset = local_time(ns).offset
    day, clock = divmod(seconds + offset, 86400)
    date = _DAY_TEXTS.get(day)
    if date is None:
        if not 0 <= day <= _LAST_DAY:
            return offset, local_time(ns).rfc3339()
        date = _DAY_TEXTS[day] = GoTime(day * 86400 * 1_000_000_000).rfc3339()[:11]
    zone = _ZONE_TEXTS.get(offset)
    if zone is None:
        zone = _ZONE_TEXTS[offset] = GoTime(0, offset).rfc3339()[19:]
    hours, rest = divmod(clock, 3600)
    text = "%s%02d:%02d:%02d" % (date, hours, rest // 60, rest % 60)
    if nanos:
        return offset, text + "." + ("%09d" % nanos).rstrip("0") + zone
    return offset, text + zone


class _FormattedTime(GoTime):
    """A local time whose text was built with it, by the day-cached formatting above: the
    times of a backup's entries rarely share the second GoTime's own formatting caches."""

    __slots__ = ("_formatted",)

    def rfc3339(self) -> str:
        return self._formatted


def formatted_local_time(ns: int) -> GoTime:
    """local_time(ns), its rfc3339() text built already."""
    offset, text = _local_time_parts(ns)
    t = _FormattedTime(ns, offset)
    t._formatted = text
    return t


def go_mode(st_mode: int) -> int:
    """os.FileMode bits for a Unix st_mode."""
    _, type_bits = _TYPES.get(stat.S_IFMT(st_mode), ("irregular", 1 << 19))
    mode = (st_mode & 0o777) | type_bits
    if st_mode & stat.S_ISUID:
        mode |= MODE_SETUID
    if st_mode & stat.S_ISGID:
        mode |= MODE_SETGID
    if st_mode & stat.S_ISVTX:
        mode |= MODE_STICKY
    return mode


def read_xattrs(path) -> list:
    try:
        names = os.listxattr(path, follow_symlinks=False)
    except OSError:
        return []
    result = []
    for name in names:
        try:
            result.append((name, os.getxattr(path, name, follow_symlinks=False)))
        except OSError:
            continue
    return result


def node_from_stat(name: str, path, st: os.stat_result, with_atime: bool = False, xattrs: bool = True) -> Node:
    """A node for a directory entry, from its lstat result. File content and a
    directory's subtree are filled in by the archiver."""
    linktarget = None
    if stat.S_ISLNK(st.st_mode):
        linktarget = os.readlink(path) if isinstance(path, str) else os.fsdecode(os.readlink(path))
    return node_from_fields(name, st, linktarget, read_xattrs(path) if xattrs else None, with_atime)


def node_from_fields(name: str, st, linktarget: Optional[str], xattrs: Optional[list],
                     with_atime: bool = False) -> Node:
    """A node from what was read already: lstat fields (os.stat_result or a native scan's
    Stat), a symlink's target and the extended attributes (None: not read)."""
    node_type, _ = _TYPES.get(stat.S_IFMT(st.st_mode), ("irregular", 0))
    mtime = formatted_local_time(st.st_mtime_ns)
    node = Node(
        name=name,
        type=node_type,
        mode=go_mode(st.st_mode),
        mtime=mtime,
        atime=formatted_local_time(st.st_atime_ns) if with_atime else mtime,
        ctime=formatted_local_time(st.st_ctime_ns),
        uid=st.st_uid,
        gid=st.st_gid,
        user=user_name(st.st_uid),
        group=group_name(st.st_gid),
        inode=st.st_ino,
        device_id=st.st_dev,
    )
    if node_type == "file":
        node.size = st.st_size
        node.links = st.st_nlink
        node.content = []
    elif node_type == "symlink":
        node.links = st.st_nlink
        node.linktarget = linktarget
    elif node_type in ("dev", "chardev"):
        node.links = st.st_nlink
        node.device = st.st_rdev
    if xattrs:
        node.xattrs = xattrs
    return node


_STAT_FIELDS = ("mode", "mtime", "atime", "ctime", "uid", "gid", "user", "group", "inode", "device_id",
                "size", "links", "xattrs")


def restat_file_node(node: Node, path, st: os.stat_result) -> None:
    """Make a file's node describe the file now at its path (st, from fstat of the open
    file), for a file replaced after the directory was read: what is saved is the file that
    was read, with its own metadata. atime follows the node's choice (mtime unless
    --with-atime); xattrs are read again when the node had any."""
    fresh = node_from_stat(node.name, path, st, with_atime=node.atime != node.mtime, xattrs=bool(node.xattrs))
    for name in _STAT_FIELDS:
        setattr(node, name, getattr(fresh, name))
