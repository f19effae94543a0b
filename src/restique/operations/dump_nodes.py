"""Tree entries as `dump` reads them: only the fields an archive writes, decoded from the
tree's JSON without building full nodes.

A dump decodes every entry of the folder it archives and formats each one's modification
time; a full Node (model.node) also decodes access and change times, inode, device and link
counts. Here an entry keeps what the tar and zip writers read, checked for the types
restic's decoder insists on, and its modification time is read by GoTime at once.
"""
from typing import List

from ..model.gotime import GoTime
from ..model.names import go_unquote
from ..model.node import _is_id, _is_id_list, decode_entries, decode_xattrs, raw_linktarget
from .walker import TreeLoader



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
            linktarget = raw_linktarget(obj)
        self.linktarget = linktarget
        xattrs = get("extended_attributes")
        self.xattrs = decode_xattrs(xattrs) if xattrs else []
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
    """The GoTime of a node's time field as Node.from_json reads it: GoTime(0) for anything
    that is not a time, as a lazy GoTime reads it; parsed at once."""
    if type(text) is not str or not text:
        return GoTime(0)
    try:
        return GoTime.parse(text)
    except (ValueError, TypeError, KeyError, IndexError):
        return GoTime(0)


def decode_archived_tree(raw: bytes) -> List[ArchivedNode]:
    """The entries of a tree blob; TreeFormatError when it is not a tree."""
    return decode_entries(raw, ArchivedNode)


class ArchivedTreeLoader(TreeLoader):
    """walker.TreeLoader with ArchivedNode entries."""

    decode = staticmethod(decode_archived_tree)
