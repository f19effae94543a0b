"""Tree entries as a restore reads them: the fields it uses, decoded from the tree's JSON
without building full nodes, times read at once into nanoseconds (natively).

A restore decodes every entry of the snapshot on one thread while the others write; a full
Node (model.node) makes three lazy times per entry that the restore then parses one by one
(and its change time, never). Here an entry keeps Node's names and values for what the
restore reads, with the same type checks, so a tree is refused exactly when Node refuses it.
"""
from typing import List

from ...model.gotime import GoTime, node_time_ns as time_ns
from ...model.names import go_unquote
from ...model.node import (MODE_PERM, MODE_SETGID, MODE_SETUID, MODE_STICKY, _is_id, _is_id_list, decode_entries,
                            decode_xattrs, raw_linktarget, unix_mode)
from ..walker import TreeLoader

_SPECIAL_BITS = MODE_SETUID | MODE_SETGID | MODE_STICKY


class RestoreEntry:
    """The fields of a tree entry that a restore reads, as Node has them; atime_ns and
    mtime_ns are the unix_ns of Node's atime and mtime."""

    __slots__ = ("name", "type", "mode", "unix_mode", "uid", "gid", "user", "group", "inode", "device_id",
                 "size", "links", "linktarget", "xattrs", "device", "content", "subtree", "atime_ns",
                 "mtime_ns")

    def __init__(self, obj: dict):
        get = obj.get
        name = get("name", "")
        self.name = name = name if type(name) is str and "\\" not in name else go_unquote(name)
        self.type = get("type", "")
        self.mode = mode = int(get("mode") or 0)
        self.unix_mode = mode & MODE_PERM if not mode & _SPECIAL_BITS else unix_mode(mode)
        self.uid = int(get("uid") or 0)
        self.gid = int(get("gid") or 0)
        self.user = get("user") or ""
        self.group = get("group") or ""
        self.inode = int(get("inode") or 0)
        self.device_id = int(get("device_id") or 0)
        self.size = int(get("size") or 0)
        self.links = int(get("links") or 0)
        linktarget = get("linktarget") or ""
        if get("linktarget_raw"):
            linktarget = raw_linktarget(obj)
        self.linktarget = linktarget
        xattrs = get("extended_attributes")
        self.xattrs = decode_xattrs(xattrs) if xattrs else []
        self.device = int(get("device") or 0)
        self.content = content = get("content")
        self.subtree = subtree = get("subtree")
        self.atime_ns = time_ns(get("atime"))
        self.mtime_ns = time_ns(get("mtime"))
        generic = get("generic_attributes")
        if not (type(name) is str and type(self.type) is str and type(self.user) is str
                and type(self.group) is str and type(linktarget) is str
                and type(get("error") or "") is str
                and (content is None or _is_id_list(content)) and (subtree is None or _is_id(subtree))
                and (not self.xattrs or all(type(n) is str for n, _ in self.xattrs))
                and (generic is None or type(generic) is dict)):
            raise TypeError(f"a field of tree entry {name!r} has the wrong type")

    @property
    def mtime(self) -> GoTime:
        return GoTime(self.mtime_ns)

    @property
    def atime(self) -> GoTime:
        return GoTime(self.atime_ns)


def decode_restore_tree(raw: bytes) -> List[RestoreEntry]:
    """The entries of a tree blob; TreeFormatError when it is not a tree."""
    return decode_entries(raw, RestoreEntry)


class RestoreTreeLoader(TreeLoader):
    """walker.TreeLoader with RestoreEntry entries."""

    decode = staticmethod(decode_restore_tree)
