"""Tree entries as `dump` reads them: only the fields an archive writes, decoded from the
tree's JSON without building full nodes.

A dump decodes every entry of the folder it archives and formats each one's modification
time; a full Node (model.node) also decodes access and change times, inode, device and link
counts, and GoTime's general parser takes several microseconds a time. Here an entry keeps
what the tar and zip writers read, checked for the types restic's decoder insists on, and its
modification time is read with one regular expression for the common RFC 3339 shape, with the days and zones
seen cached; anything else goes to GoTime's parser, so both read the same instant.
"""
import base64
import re
from typing import Dict, List, Optional, Tuple

from ..model import gojson
from ..model.gotime import GoTime
from ..model.names import go_unquote
from ..model.node import TreeFormatError, _is_id, _is_id_list
from .walker import TreeLoader

_DAYS: Dict[str, int] = {}  # 'YYYY-MM-DD' (1970 or later, checked) -> its midnight, Unix seconds
_ZONES: Dict[str, int] = {"Z": 0, "z": 0}  # '+hh:mm' (checked) -> seconds east of UTC
_CACHED = 4096
_COMMON_TIME = re.compile(r"([0-9]{4}-[0-9]{2}-[0-9]{2})[Tt]([01][0-9]|2[0-3]):([0-5][0-9]):([0-5][0-9])"
                          r"(?:\.([0-9]+))?([Zz]|[+-][0-9]{2}:[0-9]{2})").fullmatch


class ArchivedNode:
    """The fields of a tree entry that dump's walk and writers read, with Node's names and
    values (mtime: the GoTime Node.from_json would give)."""

    __slots__ = ("name", "type", "mode", "uid", "gid", "user", "group", "size", "linktarget", "xattrs",
                 "content", "subtree", "_mtime")

    def __init__(self, obj: dict):
        get = obj.get
        name = get("name", "")
        self.name = name if type(name) is str and "\\" not in name else go_unquote(name)
        self.type = get("type", "")
        self.mode = int(get("mode") or 0)
        self.uid = int(get("uid") or 0)
        self.gid = int(get("gid") or 0)
        self.user = get("user") or ""
        self.group = get("group") or ""
        self.size = int(get("size") or 0)
        linktarget = get("linktarget") or ""
        if get("linktarget_raw"):
            linktarget = base64.b64decode(obj["linktarget_raw"]).decode("utf-8", "surrogateescape")
        self.linktarget = linktarget
        xattrs = get("extended_attributes")
        self.xattrs = [
            (a.get("name", ""), base64.b64decode(a["value"]) if a.get("value") else b"") for a in xattrs
        ] if xattrs else []
        self.content = content = get("content")
        self.subtree = subtree = get("subtree")
        self._mtime = get("mtime")
        if not (type(self.name) is str and type(self.type) is str and type(self.user) is str
                and type(self.group) is str and type(linktarget) is str
                and (content is None or _is_id_list(content)) and (subtree is None or _is_id(subtree))
                and all(type(name) is str for name, _ in self.xattrs)):
            raise TypeError(f"a field of tree entry {self.name!r} has the wrong type")

    @property
    def mtime(self) -> GoTime:
        return parse_time(self._mtime)


def parse_time(text) -> GoTime:
    """The GoTime of a node's time field as Node.from_json reads it (GoTime(0) for anything
    that is not a time), parsed at once."""
    if type(text) is not str or not text:
        return GoTime(0)
    parsed = _parse_common(text)
    if parsed is None:
        return GoTime.lazy(text)
    return GoTime(*parsed)


def _parse_common(text: str) -> Optional[Tuple[int, int]]:
    """(unix_ns, offset) of 'YYYY-MM-DDTHH:MM:SS[.fraction](Z|+hh:mm)' from 1970 on, or None
    for any other text (GoTime decides)."""
    match = _COMMON_TIME(text)
    if match is None:
        return None
    date, hour, minute, second, fraction, zone = match.groups()
    day = _DAYS.get(date)
    if day is None:
        day = _day(date)
        if day is None:
            return None
    offset = _ZONES.get(zone)
    if offset is None:
        offset = _zone(zone)
        if offset is None:
            return None
    nanos = int(fraction[:9].ljust(9, "0")) if fraction else 0
    return (day + int(hour) * 3600 + int(minute) * 60 + int(second) - offset) * 1_000_000_000 + nanos, offset


def _day(date: str) -> Optional[int]:
    """Midnight (UTC) of 'YYYY-MM-DD' as GoTime reads it, cached; None for dates GoTime
    refuses and for those before 1970 (left to GoTime)."""
    try:
        day = GoTime.parse(date + "T00:00:00Z").unix_ns // 1_000_000_000
    except ValueError:
        return None
    if day < 0:
        return None
    if len(_DAYS) >= _CACHED:
        _DAYS.clear()
    _DAYS[date] = day
    return day


def _zone(zone: str) -> Optional[int]:
    """Seconds east of UTC of '+hh:mm' as GoTime reads it, cached; None when it refuses it."""
    try:
        offset = GoTime.parse("2000-01-01T00:00:00" + zone).offset
    except ValueError:
        return None
    if len(_ZONES) >= _CACHED:
        _ZONES.clear()
        _ZONES.update(Z=0, z=0)
    _ZONES[zone] = offset
    return offset


def decode_archived_tree(raw: bytes) -> List[ArchivedNode]:
    """The entries of a tree blob; TreeFormatError when it is not a tree."""
    try:
        nodes = gojson.loads(raw).get("nodes") or []
        if type(nodes) is not list:
            raise TypeError("nodes is not a list")
        return [ArchivedNode(obj) for obj in nodes]
    except gojson.DECODING_ERRORS as exc:
        raise TreeFormatError(f"invalid tree: {exc}") from None


class ArchivedTreeLoader(TreeLoader):
    """walker.TreeLoader with ArchivedNode entries."""

    decode = staticmethod(decode_archived_tree)
