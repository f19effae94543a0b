"""Reading file system metadata into tree nodes, as restic records it."""
import grp
import os
import pwd
import stat
import threading
import time
from typing import Dict, Optional

from .. import _scan
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

_IFMT = 0o170000
_IRREGULAR = ("irregular", 0)
ScanStat = _scan.Stat  # what a native directory scan gives for each entry

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


def _user(uid: int) -> str:
    return pwd.getpwuid(uid).pw_name


def _group(gid: int) -> str:
    return grp.getgrgid(gid).gr_name


def user_name(uid: int) -> str:
    name = _users.get(uid)  # asked for every entry a walk or a reuse check sees
    return name if name is not None else _cached_name(_users, uid, _user)


def group_name(gid: int) -> str:
    name = _groups.get(gid)
    return name if name is not None else _cached_name(_groups, gid, _group)


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


class _ScannedTime(GoTime):
    """A local time whose text a native directory scan made; its offset is looked up only
    if asked for (encoding a tree uses the text alone)."""

    __slots__ = ()

    def __getattr__(self, name: str):
        if name != "offset":
            raise AttributeError(name)
        offset = self.offset = local_time(self.unix_ns).offset
        return offset


_new = object.__new__


def scanned_time(ns: int, text: Optional[str]) -> GoTime:
    """local_time(ns) whose rfc3339() is text (a scan's; None: formatted here)."""
    if text is None:
        return formatted_local_time(ns)
    t = _new(_ScannedTime)
    t.unix_ns = ns
    t._text = text
    return t


_GO_MODES: Dict[int, int] = {}


def go_mode(st_mode: int) -> int:
    """os.FileMode bits for a Unix st_mode (entries share a few modes: cached)."""
    mode = _GO_MODES.get(st_mode)
    if mode is None:
        mode = _GO_MODES[st_mode] = _go_mode(st_mode)
    return mode


def _go_mode(st_mode: int) -> int:
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
    Stat, whose times come formatted), a symlink's target and the extended attributes
    (None: not read)."""
    st_mode = st.st_mode
    node_type, _ = _TYPES.get(st_mode & _IFMT, _IRREGULAR)
    if type(st) is ScanStat:
        mtime = scanned_time(st.st_mtime_ns, st.mtime_text)
        atime = scanned_time(st.st_atime_ns, st.atime_text) if with_atime else mtime
        ctime = scanned_time(st.st_ctime_ns, st.ctime_text)
    else:
        mtime = formatted_local_time(st.st_mtime_ns)
        atime = formatted_local_time(st.st_atime_ns) if with_atime else mtime
        ctime = formatted_local_time(st.st_ctime_ns)
    uid, gid = st.st_uid, st.st_gid
    user = _users.get(uid)
    group = _groups.get(gid)
    if node_type == "file":
        # positional: the dataclass's keyword handling is a measurable part of a walk
        return Node(name, node_type, go_mode(st_mode), mtime, atime, ctime, uid, gid,
                    user_name(uid) if user is None else user, group_name(gid) if group is None else group,
                    st.st_ino, st.st_dev, st.st_size, st.st_nlink, "", xattrs or [], None, 0, [])
    node = Node(name, node_type, go_mode(st_mode), mtime, atime, ctime, uid, gid,
                user_name(uid) if user is None else user, group_name(gid) if group is None else group,
                st.st_ino, st.st_dev)
    if node_type == "symlink":
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
