"""Choosing the parent snapshot whose files need not be read again."""
from typing import List, Optional

from ...model.gotime import GoTime


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
