"""The snapshot type: decoding a snapshot file as restic does, writing it back, and restic's
one-line description of it.

restic loads a snapshot file into a Go struct, so unknown fields are dropped and the fields it
knows are written back in struct order; `Snapshot.to_json()` does the same (current restic's
struct, which adds `program_version` and `summary` to 0.14's). Filters live in
`snapshot_filter`, grouping in `snapshot_group`; reading snapshots from a repository is
`operations.snapshot_lookup`.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Iterable, List, Optional, Sequence

from ..errors import IntegrityError
from .gotime import GoTime

_HEX_ID = re.compile(r"^[0-9a-f]{64}$")
ZERO_TIME = "0001-01-01T00:00:00Z"  # Go's zero time.Time, as json.Marshal writes it

# Go's SnapshotSummary fields in struct order: (name, is a time).
SUMMARY_FIELDS = (
    ("backup_start", True), ("backup_end", True),
    ("files_new", False), ("files_changed", False), ("files_unmodified", False),
    ("dirs_new", False), ("dirs_changed", False), ("dirs_unmodified", False),
    ("data_blobs", False), ("tree_blobs", False),
    ("data_added", False), ("data_added_packed", False),
    ("total_files_processed", False), ("total_bytes_processed", False),
)


class SnapshotFormatError(IntegrityError, ValueError):
    """A snapshot file whose JSON does not fit restic's Snapshot struct."""


# --- decoding like Go's json.Unmarshal ---------------------------------------------------------

def _json_type(value) -> str:
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"


def _type_error(value, name: str, go_type: str) -> SnapshotFormatError:
    return SnapshotFormatError(
        f"json: cannot unmarshal {_json_type(value)} into Go struct field Snapshot.{name} of type {go_type}")


def _get_str(obj: dict, name: str) -> str:
    value = obj.get(name)
    if value is None:
        return ""
    if not isinstance(value, str):
        raise _type_error(value, name, "string")
    return value


def _get_str_list(obj: dict, name: str) -> Optional[List[str]]:
    value = obj.get(name)
    if value is None:
        return None
    if not isinstance(value, list):
        raise _type_error(value, name, "[]string")
    for item in value:
        if item is not None and not isinstance(item, str):
            raise _type_error(item, name, "string")
    return ["" if item is None else item for item in value]


def _get_uint32(obj: dict, name: str) -> int:
    value = obj.get(name)
    if value is None:
        return 0
    if isinstance(value, bool) or not isinstance(value, int):
        raise _type_error(value, name, "uint32")
    if not 0 <= value <= 0xFFFFFFFF:
        raise SnapshotFormatError(
            f"json: cannot unmarshal number {value} into Go struct field Snapshot.{name} of type uint32")
    return value


def _get_id(obj: dict, name: str) -> Optional[str]:
    value = obj.get(name)
    if value is None:
        return None
    if not isinstance(value, str):
        raise _type_error(value, name, "restic.ID")
    if not _HEX_ID.match(value.lower()):
        raise SnapshotFormatError(f"invalid ID {value!r} in field {name}")
    return value.lower()


def _get_time(obj: dict, name: str) -> Optional[GoTime]:
    value = obj.get(name)
    if value is None:
        return None
    if not isinstance(value, str):
        raise SnapshotFormatError("Time.UnmarshalJSON: input is not a JSON string")
    try:
        return GoTime.parse(value)
    except ValueError:
        raise SnapshotFormatError(
            f'parsing time "{value}" as "2006-01-02T15:04:05Z07:00": cannot parse') from None


def _parse_summary(value) -> Optional[dict]:
    if value is None:
        return None
    if not isinstance(value, dict):
        raise _type_error(value, "summary", "data.SnapshotSummary")
    out = {}
    for name, is_time in SUMMARY_FIELDS:
        item = value.get(name)
        if is_time:
            t = _get_time(value, name)
            out[name] = t.rfc3339() if t is not None else ZERO_TIME
        elif item is None:
            out[name] = 0
        elif isinstance(item, bool) or not isinstance(item, int):
            raise SnapshotFormatError(
                f"json: cannot unmarshal {_json_type(item)} into Go struct field SnapshotSummary.summary.{name}")
        else:
            out[name] = item
    return out


def new_summary(backup_start: GoTime, backup_end: GoTime, **counts: int) -> dict:
    """The `summary` of a new snapshot, in struct order; counts are the other SUMMARY_FIELDS
    (missing ones are 0)."""
    unknown = set(counts) - {name for name, _ in SUMMARY_FIELDS}
    if unknown:
        raise TypeError(f"unknown summary fields: {sorted(unknown)}")
    out = {"backup_start": backup_start.rfc3339(), "backup_end": backup_end.rfc3339()}
    for name, is_time in SUMMARY_FIELDS:
        if not is_time:
            out[name] = counts.get(name, 0)
    return out


# --- the snapshot --------------------------------------------------------------------------

@dataclass(eq=False, kw_only=True)
class Snapshot:
    """One snapshot. `id` is the file's id ("" for a snapshot not yet saved)."""
    time: GoTime
    id: str = ""
    tree: Optional[str] = None
    paths: Optional[List[str]] = None
    hostname: str = ""
    username: str = ""
    uid: int = 0
    gid: int = 0
    excludes: Optional[List[str]] = None
    tags: Optional[List[str]] = None
    parent: Optional[str] = None
    original: Optional[str] = None
    program_version: str = ""
    summary: Optional[dict] = None  # SUMMARY_FIELDS in order; see new_summary
    time_is_zero: bool = False  # the file had no time: Go's zero time

    @classmethod
    def from_json(cls, snapshot_id: str, obj) -> "Snapshot":
        """Decode a snapshot file like Go's json.Unmarshal into restic's Snapshot struct;
        SnapshotFormatError where restic would fail."""
        if not isinstance(obj, dict):
            raise SnapshotFormatError(
                f"json: cannot unmarshal {_json_type(obj)} into Go value of type data.Snapshot")
        t = _get_time(obj, "time")
        return cls(
            id=snapshot_id,
            time=t if t is not None else GoTime.parse(ZERO_TIME),
            tree=_get_id(obj, "tree"),
            paths=_get_str_list(obj, "paths"),
            hostname=_get_str(obj, "hostname"),
            username=_get_str(obj, "username"),
            uid=_get_uint32(obj, "uid"),
            gid=_get_uint32(obj, "gid"),
            excludes=_get_str_list(obj, "excludes"),
            tags=_get_str_list(obj, "tags"),
            parent=_get_id(obj, "parent"),
            original=_get_id(obj, "original"),
            program_version=_get_str(obj, "program_version"),
            summary=_parse_summary(obj.get("summary")),
            time_is_zero=t is None,
        )

    @property
    def short_id(self) -> str:
        return self.id[:8]

    def to_json(self, with_id: bool = True) -> dict:
        """Struct fields in Go order with omitempty applied: the snapshot file's content with
        with_id=False; then "id" and "short_id" as current restic's `snapshots --json` adds."""
        out = {"time": ZERO_TIME if self.time_is_zero else self.time.rfc3339()}
        if self.parent:
            out["parent"] = self.parent
        out["tree"] = self.tree
        out["paths"] = self.paths
        if self.hostname:
            out["hostname"] = self.hostname
        if self.username:
            out["username"] = self.username
        if self.uid:
            out["uid"] = self.uid
        if self.gid:
            out["gid"] = self.gid
        if self.excludes:
            out["excludes"] = self.excludes
        if self.tags:
            out["tags"] = self.tags
        if self.original:
            out["original"] = self.original
        if self.program_version:
            out["program_version"] = self.program_version
        if self.summary is not None:
            out["summary"] = self.summary
        if with_id:
            out["id"] = self.id
            out["short_id"] = self.short_id
        return out

    def local_time_string(self) -> str:
        return self.time.local_string()

    def __str__(self) -> str:
        """restic's Snapshot.String(): `snapshot 1234abcd of [/a /b] at <Go time> by user@host`."""
        paths = "[" + " ".join(self.paths or []) + "]"
        return f"snapshot {self.short_id} of {paths} at {self.time.go_string()} by {self.username}@{self.hostname}"

    # restic's Snapshot.HasHostname / HasTags / HasTagList / HasPaths
    def has_hostname(self, hosts: Sequence[str]) -> bool:
        return not hosts or self.hostname in hosts

    def has_tags(self, tags: Sequence[str]) -> bool:
        """All of tags; the empty tag matches a snapshot without tags."""
        mine = self.tags or []
        for tag in tags:
            if tag == "" and not mine:
                return True
            if tag not in mine:
                return False
        return True

    def has_tag_list(self, tag_lists: Sequence[Sequence[str]]) -> bool:
        """At least one of the lists (each an AND of tags); no lists match everything."""
        return not tag_lists or any(self.has_tags(tags) for tags in tag_lists)

    def has_paths(self, paths: Sequence[str]) -> bool:
        """All of paths, compared as exact strings."""
        mine = self.paths or []
        return all(p in mine for p in paths)


def sort_by_time(snapshots: Iterable[Snapshot]) -> List[Snapshot]:
    """Oldest first (stable)."""
    return sorted(snapshots, key=lambda sn: sn.time.unix_ns)
