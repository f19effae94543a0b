"""Tree entries as a restore reads them: the fields it uses, decoded from the tree's JSON
without building full nodes, times read at once into nanoseconds (natively).

A restore decodes every entry of the snapshot on one thread while the others write; a full
Node (model.node) makes three lazy times per entry that the restore then parses one by one
(and its change time, never). Here an entry keeps Node's names and values for what the
restore reads, with the same type checks, so a tree is refused exactly when Node refuses it.
"""
from typing import List

from ...model.gotime import GoTime, node_time_ns as time_ns
from ...model.light_entry import LightEntry
from ...model.node import MODE_PERM, MODE_SETGID, MODE_SETUID, MODE_STICKY, decode_entries, unix_mode
from ..walker import TreeLoader

_SPECIAL_BITS = MODE_SETUID | MODE_SETGID | MODE_STICKY


class RestoreEntry(LightEntry):
    """The fields of a tree entry that a restore reads, as Node has them; atime_ns and
    mtime_ns are the unix_ns of Node's atime and mtime."""

    __slots__ = ("unix_mode", "atime_ns", "mtime_ns")

    def __init__(self, obj: dict):
        LightEntry.__init__(self, obj)
        mode = self.mode
        self.unix_mode = mode & MODE_PERM if not mode & _SPECIAL_BITS else unix_mode(mode)
        get = obj.get
        self.atime_ns = time_ns(get("atime"))
        self.mtime_ns = time_ns(get("mtime"))

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
