"""Tree entries as `dump` reads them: only the fields an archive writes, decoded from the
tree's JSON without building full nodes.

A dump decodes every entry of the folder it archives and formats each one's modification
time; a full Node (model.node) also makes lazy access and change times. Here an entry keeps
the fields but the times (model.light_entry, refusing what Node refuses) and the modification
time's text, read by GoTime when a writer asks for it.
"""
from typing import List

from ..model.gotime import GoTime
from ..model.light_entry import LightEntry
from ..model.node import decode_entries
from .walker import TreeLoader


class ArchivedNode(LightEntry):
    """The fields of a tree entry that dump's walk and writers read, with Node's names and
    values (mtime: the GoTime Node.from_json would give)."""

    __slots__ = ("_mtime",)

    def __init__(self, obj: dict):
        LightEntry.__init__(self, obj)
        self._mtime = obj.get("mtime")

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
