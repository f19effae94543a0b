"""The parent snapshot: choosing it, and reading its directories during the backup."""
from typing import Dict, List, Optional

from ...errors import RestiqueError
from ...model import gojson
from ...model.gotime import GoTime
from ...model.names import go_unquote

RECENT_TREES = 256


def find_parent(repo, hostname: str, paths: List[str], before: GoTime) -> Optional[str]:
    """The newest snapshot of this host whose paths include all of ours, not newer than `before`."""
    wanted = set(paths)
    best = None
    for sid in repo.list_ids("snapshot"):
        try:
            sn = repo.load_json("snapshot", sid)
            t = GoTime.parse(sn.get("time", ""))
        except Exception:
            continue  # a damaged snapshot cannot serve as parent
        if sn.get("hostname") != hostname or not wanted.issubset(set(sn.get("paths") or [])):
            continue
        if t.unix_ns > before.unix_ns:
            continue
        if best is None or t.unix_ns > best[0]:
            best = (t.unix_ns, sid)
    return best[1] if best else None


class ParentTrees:
    """The parent's nodes of one directory, as parsed JSON by file name. Kept as JSON:
    comparing stored strings is much cheaper than building nodes."""

    def __init__(self, repo):
        self._repo = repo
        self._recent: Dict[str, Dict[str, dict]] = {}

    def children(self, tree_id: Optional[str]) -> Dict[str, dict]:
        """A directory whose reuse check failed asks again right after: that answer comes
        from a small cache."""
        if not tree_id:
            return {}
        hit = self._recent.pop(tree_id, None)
        if hit is not None:
            return hit
        children = self._load(tree_id)
        self._recent[tree_id] = children
        while len(self._recent) > RECENT_TREES:
            self._recent.pop(next(iter(self._recent)))
        return children

    def _load(self, tree_id: str) -> Dict[str, dict]:
        try:
            tree = gojson.loads(self._repo.load_blob("tree", tree_id))
            return {go_unquote(n.get("name", "")): n for n in tree.get("nodes") or []}
        except (RestiqueError, ValueError, AttributeError):
            return {}  # a damaged parent only costs re-reading
