"""Snapshots: finding them by id prefix or `latest`, and reading their JSON."""
from typing import List, Optional, Tuple

from ..errors import NotFound
from .gotime import GoTime
from .ids import find_by_prefix


def load_snapshot(repo, snapshot_id: str) -> dict:
    return repo.load_json("snapshot", snapshot_id)


def snapshot_time(obj: dict) -> GoTime:
    try:
        return GoTime.parse(obj.get("time", ""))
    except ValueError:
        return GoTime(0)


def find_snapshot_id(repo, spec: str, allow_latest: bool = True) -> str:
    """Full id of the snapshot named by an id prefix or `latest`."""
    ids = repo.list_ids("snapshot")
    if spec == "latest" and allow_latest:
        newest: Optional[Tuple[GoTime, str]] = None
        for sid in ids:
            t = snapshot_time(load_snapshot(repo, sid))
            if newest is None or t > newest[0]:
                newest = (t, sid)
        if newest is None:
            raise NotFound("no snapshot found")
        return newest[1]
    try:
        return find_by_prefix(spec, ids)
    except NotFound as exc:
        raise NotFound(f"could not find snapshot: {exc}") from None


def split_snapshot_path(spec: str) -> Tuple[str, str]:
    """`ID:sub/folder` -> (ID, "sub/folder")."""
    snap, _, sub = spec.partition(":")
    return snap, sub.strip("/")


def tree_at_path(repo, tree_id: str, path: str) -> str:
    """Id of the tree of the folder at path (slash separated) below tree_id."""
    from .names import node_name

    for part in [p for p in path.split("/") if p]:
        tree = repo.load_json_blob("tree", tree_id)
        for node in tree.get("nodes") or []:
            if node_name(node) == part:
                if node.get("type") != "dir" or not node.get("subtree"):
                    raise NotFound(f"path {path!r}: {part!r} is not a directory")
                tree_id = node["subtree"]
                break
        else:
            raise NotFound(f"path {path!r} not found in snapshot")
    return tree_id


def snapshot_ids_sorted(repo) -> List[str]:
    return sorted(repo.list_ids("snapshot"))
