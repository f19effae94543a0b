"""The parent snapshot: choosing it, and reading its directories during the backup."""
from typing import Dict, List, Optional, Sequence

from ... import _treescan
from ...backend.base import BackendShortRead, FileType
from ...errors import RestiqueError
from ...model import gojson
from ...model.gotime import GoTime
from ...model.names import go_unquote
from ...model.snapshot_group import GroupBy

# Trees of directories whose reuse check failed, held for the walk that follows; normally as
# many as the failed directory is deep, the bound only guards against a walk that never asks
KEPT_TREES = 64
# Tree blobs are read from their pack in windows of this size: one read serves the trees a
# walk visits next (a backup writes a directory's subtrees just before its own tree), where
# a read per tree cost a file open each from the local cache
TREE_WINDOW = 1 << 20
# restic's default --group-by of a backup: the parent is of the same host and paths
PARENT_GROUP = GroupBy(host=True, paths=True)


def find_parent(repo, hostname: str, paths: List[str], before: GoTime, tags: Sequence[str] = (),
                group_by: GroupBy = PARENT_GROUP) -> Optional[str]:
    """The newest snapshot not newer than `before` in the backup's group (restic's --group-by):
    of this host, whose paths include all of ours, whose tags include all of ours, for each
    field group_by names."""
    wanted_paths, wanted_tags = set(paths), set(tags)
    best = None
    for sid in repo.list_ids("snapshot"):
        try:
            sn = repo.load_json("snapshot", sid)
            t = GoTime.parse(sn.get("time", ""))
        except Exception:
            continue  # a damaged snapshot cannot serve as parent
        if group_by.host and sn.get("hostname") != hostname:
            continue
        if group_by.paths and not wanted_paths.issubset(sn.get("paths") or ()):
            continue
        if group_by.tags and not wanted_tags.issubset(sn.get("tags") or ()):
            continue
        if t.unix_ns > before.unix_ns:
            continue
        if best is None or t.unix_ns > best[0]:
            best = (t.unix_ns, sid)
    return best[1] if best else None


class ParentEntries(dict):
    """The parent's nodes of one directory (parsed JSON by file name), with the tree blob
    they were read from."""

    __slots__ = ("raw",)


def entry_texts(children: Dict[str, dict]) -> Optional[Dict[str, str]]:
    """The JSON text of each of children's entries, by name, when their tree was written
    exactly as this program's encoder writes it; else None."""
    raw = getattr(children, "raw", None)
    return _treescan.entry_texts(raw) if raw is not None else None


class ParentTrees:
    """The parent's nodes of one directory, as parsed JSON by file name. Kept as JSON:
    comparing stored strings is much cheaper than building nodes."""

    def __init__(self, repo):
        self._repo = repo
        self._kept: Dict[str, Dict[str, dict]] = {}
        self._windows = TreeWindows(repo)

    def children(self, tree_id: Optional[str]) -> Dict[str, dict]:
        """The nodes of tree_id by name: the ones kept for it, else read again. Nothing else
        is held: a re-backup of a million unchanged files reads every tree once and must not
        keep them."""
        if not tree_id:
            return {}
        hit = self._kept.pop(tree_id, None)
        return hit if hit is not None else self._load(tree_id)

    def keep(self, tree_id: str, children: Dict[str, dict]) -> None:
        """Hold a tree that the walk asks for next (a directory whose reuse check failed is
        walked right after, from the same parent tree)."""
        self._kept[tree_id] = children
        while len(self._kept) > KEPT_TREES:
            self._kept.pop(next(iter(self._kept)))

    def _load(self, tree_id: str) -> Dict[str, dict]:
        try:
            raw = self._windows.load(tree_id)
            tree = gojson.loads(raw)
            children = ParentEntries({go_unquote(n.get("name", "")): n for n in tree.get("nodes") or []})
            children.raw = raw
            return children
        except (RestiqueError, ValueError, AttributeError):
            return {}  # a damaged parent only costs re-reading


class TreeWindows:
    """Tree blobs read through windows of their packs; the last window read is kept."""

    def __init__(self, repo):
        self._blobs = repo.blobs
        self._window = ("", 0, b"")  # pack id, offset, bytes

    def load(self, tree_id: str) -> bytes:
        loc = self._blobs.location("tree", tree_id)
        if not self._covers(loc):
            try:
                self._window = (loc.pack_id, *self._read(loc))
            except (OSError, EOFError, RestiqueError):
                self._window = ("", 0, b"")
            if not self._covers(loc):
                return self._blobs.load("tree", tree_id, loc)  # reports what is wrong
        _, start, data = self._window
        at = loc.offset - start
        return self._blobs.decode(tree_id, data[at:at + loc.length], loc)

    def _covers(self, loc) -> bool:
        pack_id, start, data = self._window
        return pack_id == loc.pack_id and start <= loc.offset and loc.offset + loc.length <= start + len(data)

    def _read(self, loc) -> tuple:
        """(offset, bytes) of a window around the blob at loc, cut short at the pack's end."""
        start = max(0, loc.offset - TREE_WINDOW // 2)
        length = max(TREE_WINDOW, loc.offset + loc.length - start)
        backend = self._blobs.backend
        try:
            return start, backend.load(FileType.PACK, loc.pack_id, start, length)
        except BackendShortRead:  # the pack ends within the window
            return start, backend.load(FileType.PACK, loc.pack_id, start, None)
