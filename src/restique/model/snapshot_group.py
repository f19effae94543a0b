"""restic's --group-by and --latest N: grouping snapshots by host, paths and tags."""
from __future__ import annotations

from typing import Dict, Iterable, List, NamedTuple, Optional, Tuple, Union

from ..errors import UsageError
from .snapshot import Snapshot


class GroupBy(NamedTuple):
    """Which fields group snapshots (NamedTuples here: cheaper to define than frozen
    dataclasses, and `snapshots` loads this module on every run)."""

    host: bool = False
    paths: bool = False
    tags: bool = False

    @classmethod
    def parse(cls, text: str) -> "GroupBy":
        """`host,paths,tags` (singular forms too, '' = no grouping)."""
        host = paths = tags = False
        for option in (text or "").split(","):
            if option in ("host", "hosts"):
                host = True
            elif option in ("path", "paths"):
                paths = True
            elif option in ("tag", "tags"):
                tags = True
            elif option != "":
                raise UsageError(f"unknown grouping option: '{option}'")
        return cls(host, paths, tags)

    @property
    def grouped(self) -> bool:
        return self.host or self.paths or self.tags

    def __str__(self) -> str:
        return ",".join(n for n, on in (("host", self.host), ("paths", self.paths), ("tags", self.tags)) if on)


class SnapshotGroupKey(NamedTuple):
    hostname: str = ""
    paths: Optional[Tuple[str, ...]] = None
    tags: Optional[Tuple[str, ...]] = None

    def to_json(self) -> dict:
        return {
            "hostname": self.hostname,
            "paths": None if self.paths is None else list(self.paths),
            "tags": None if self.tags is None else list(self.tags),
        }

    def header(self) -> Optional[str]:
        """`snapshots for (host [h], tags [a, b], paths [/x, /y]):`, None if the key is empty."""
        if self.hostname == "" and self.tags is None and self.paths is None:
            return None
        parts = []
        if self.hostname:
            parts.append(f"host [{self.hostname}]")
        if self.tags is not None:
            parts.append("tags [" + ", ".join(self.tags) + "]")
        if self.paths is not None:
            parts.append("paths [" + ", ".join(self.paths) + "]")
        return "snapshots for (" + ", ".join(parts) + "):" if parts else "snapshots:"

    def sort_key(self):
        return (self.hostname,
                self.paths is not None, self.paths or (),
                self.tags is not None, self.tags or ())


def group_snapshots(snapshots: Iterable[Snapshot], group_by: Union[GroupBy, str]
                    ) -> Tuple[List[Tuple[SnapshotGroupKey, List[Snapshot]]], bool]:
    """restic's GroupSnapshots: ([(key, snapshots)], grouped). Groups come sorted by key
    (restic's order is Go map order, i.e. random); snapshots keep their order within a group.
    Like restic, this sorts every snapshot's paths in place, and its tags when grouping by
    tags, so they are printed sorted."""
    if isinstance(group_by, str):
        group_by = GroupBy.parse(group_by)
    groups: Dict[SnapshotGroupKey, List[Snapshot]] = {}
    for sn in snapshots:
        tags = paths = None
        if group_by.tags and sn.tags is not None:
            sn.tags.sort()
            tags = tuple(sn.tags)
        if sn.paths is not None:
            sn.paths.sort()
            if group_by.paths:
                paths = tuple(sn.paths)
        key = SnapshotGroupKey(sn.hostname if group_by.host else "", paths, tags)
        groups.setdefault(key, []).append(sn)
    ordered = sorted(groups.items(), key=lambda item: item[0].sort_key())
    return ordered, group_by.grouped


def filter_latest_snapshots(snapshots: Iterable[Snapshot], limit: int) -> List[Snapshot]:
    """The `limit` newest snapshots for each (host, sorted path list), newest first."""
    ordered = sorted(snapshots, key=lambda sn: sn.time.unix_ns, reverse=True)
    seen: Dict[Tuple[str, str], int] = {}
    out = []
    for sn in ordered:
        key = (sn.hostname, "|".join(sorted(sn.paths or [])))
        if seen.get(key, 0) < limit:
            seen[key] = seen.get(key, 0) + 1
            out.append(sn)
    return out
