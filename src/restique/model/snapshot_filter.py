"""restic's snapshot filter (--host/--tag/--path) and the choice of the `latest` snapshot."""
from __future__ import annotations

import os
import posixpath
from dataclasses import dataclass, field
from typing import Iterable, List, Optional, Sequence

from .gotime import GoTime
from .paths import go_clean
from .snapshot import Snapshot


def parse_tag_list(text: str) -> List[str]:
    """One --tag value: comma separated, whitespace around each tag removed."""
    return [t.strip() for t in text.split(",")]


def _go_list(items: Sequence[str]) -> str:
    """fmt's %v of a []string."""
    return "[" + " ".join(items) + "]"


def go_clean_abs(path: str) -> str:
    """Go's filepath.Abs (which also Cleans)."""
    if not path.startswith("/"):
        path = posixpath.join(os.getcwd(), path)
    return go_clean(path)


@dataclass
class SnapshotFilter:
    """restic's --host/--tag/--path: hosts are OR-ed; each tag list is an AND of its tags and
    the lists are OR-ed; a snapshot must contain every path (exact strings)."""
    hosts: List[str] = field(default_factory=list)
    tags: List[List[str]] = field(default_factory=list)
    paths: List[str] = field(default_factory=list)

    @classmethod
    def from_options(cls, hosts: Iterable[str] = (), tags: Iterable[str] = (),
                     paths: Iterable[str] = ()) -> "SnapshotFilter":
        """From the raw option values; each --tag value is a comma separated list."""
        return cls(list(hosts), [parse_tag_list(t) for t in tags], list(paths))

    def empty(self) -> bool:
        return not (self.hosts or self.tags or self.paths)

    def matches(self, sn: Snapshot) -> bool:
        return sn.has_hostname(self.hosts) and sn.has_tag_list(self.tags) and sn.has_paths(self.paths)

    def apply(self, snapshots: Iterable[Snapshot]) -> List[Snapshot]:
        return [sn for sn in snapshots if self.matches(sn)]

    def describe(self) -> str:
        """`Paths:[..] Tags:[..] Hosts:[..]` as restic formats the filter in messages."""
        tags = "[" + " ".join("[" + ", ".join(t) + "]" for t in self.tags) + "]"
        return f"Paths:{_go_list(self.paths)} Tags:{tags} Hosts:{_go_list(self.hosts)}"


def find_latest(snapshots: Iterable[Snapshot], filt: Optional[SnapshotFilter] = None,
                time_limit: Optional[GoTime] = None) -> Optional[Snapshot]:
    """The newest snapshot matching filt (None if none). As restic does for `latest`, the
    filter's paths are made absolute and cleaned first; time_limit excludes later ones."""
    filt = filt or SnapshotFilter()
    abs_filter = SnapshotFilter(filt.hosts, filt.tags, [go_clean_abs(p) for p in filt.paths])
    latest = None
    for sn in snapshots:
        if time_limit is not None and sn.time.unix_ns > time_limit.unix_ns:
            continue
        if latest is not None and sn.time.unix_ns < latest.time.unix_ns:
            continue
        if not abs_filter.matches(sn):
            continue
        latest = sn
    return latest
