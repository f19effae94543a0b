"""Snapshots: loading them, filtering (--host/--tag/--path), resolving `latest` or an id
prefix, `--latest N` and grouping (`--group-by`), all with restic's semantics and messages.

restic loads a snapshot file into a Go struct, so unknown fields are dropped and the fields it
knows are written back in struct order; `Snapshot.to_json()` does the same (current restic's
struct, which adds `program_version` and `summary` to 0.14's).
"""
import os
import posixpath
import re
import sys
import time
from dataclasses import dataclass, field
from typing import Callable, Dict, Iterable, List, Optional, Sequence, Tuple, Union

from ..errors import NotFound, UsageError
from .gotime import GoTime
from .ids import find_by_prefix

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


def _warn(message: str) -> None:
    print(message, file=sys.stderr)


# --- the snapshot itself ---------------------------------------------------------------------

class SnapshotFormatError(ValueError):
    """A snapshot file whose JSON does not fit restic's Snapshot struct."""


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


def go_time_local_string(t: GoTime) -> str:
    """Go's t.Local().Format("2006-01-02 15:04:05") (four-digit year even before 1000)."""
    lt = time.localtime(t.seconds)
    return "%04d-%02d-%02d %02d:%02d:%02d" % tuple(lt[:6])


@dataclass(eq=False)
class Snapshot:
    id: str
    time: GoTime
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
    summary: Optional[dict] = None
    raw: dict = field(default_factory=dict)  # the snapshot file's JSON as loaded
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
            raw=obj,
            time_is_zero=t is None,
        )

    @property
    def short_id(self) -> str:
        return self.id[:8]

    def to_json(self, with_id: bool = True) -> dict:
        """The snapshot as current restic's `snapshots --json` prints it: struct fields in Go
        order with omitempty applied, then "id" and "short_id"."""
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
        return go_time_local_string(self.time)

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


def load_snapshot(repo, snapshot_id: str) -> dict:
    """The raw JSON of one snapshot file."""
    return repo.load_json("snapshot", snapshot_id)


def load_snapshot_obj(repo, snapshot_id: str) -> Snapshot:
    return Snapshot.from_json(snapshot_id, repo.load_json("snapshot", snapshot_id))


def snapshot_time(obj: Union[dict, Snapshot]) -> GoTime:
    if isinstance(obj, Snapshot):
        return obj.time
    try:
        return GoTime.parse(obj.get("time", ""))
    except ValueError:
        return GoTime(0)


def _valid_snapshot_name(name: str) -> bool:
    return bool(_HEX_ID.match(name))


def load_all_snapshots(repo, ids: Optional[Iterable[str]] = None,
                       warn: Optional[Callable[[str], None]] = _warn) -> List[Snapshot]:
    """Every snapshot of the repository, in id order. A file that cannot be loaded or decoded
    is reported as restic does (`could not load snapshot <short>: <error>`) and skipped;
    warn=None raises instead."""
    if ids is None:
        ids = repo.list_ids("snapshot")
    out = []
    for sid in sorted(i for i in ids if _valid_snapshot_name(i)):
        try:
            out.append(load_snapshot_obj(repo, sid))
        except Exception as exc:  # damaged file: MAC, JSON or struct mismatch
            if warn is None:
                raise
            warn(f"could not load snapshot {sid[:8]}: {exc}")
    return out


# --- filters -------------------------------------------------------------------------------

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
    path = posixpath.normpath(path)
    if path.startswith("//"):
        path = "/" + path.lstrip("/")
    return path


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


# --- finding snapshots by name -------------------------------------------------------------

class SnapshotNotFound(NotFound):
    """`reason` is restic's own text (`no matching ID found for prefix "X"`, `multiple IDs
    with prefix "X" found`, `no snapshot found`); str() adds the `could not find snapshot: `
    that `restic cat` puts before prefix errors."""

    def __init__(self, reason: str, message: Optional[str] = None):
        super().__init__(message if message is not None else reason)
        self.reason = reason


def find_snapshot_id(repo, spec: str, filter: Optional[SnapshotFilter] = None,
                     allow_latest: bool = True, ids: Optional[List[str]] = None) -> str:
    """Full id of the snapshot named by an id prefix or `latest` (the newest snapshot matching
    filter). Raises SnapshotNotFound."""
    if isinstance(filter, bool):  # the old signature: find_snapshot_id(repo, spec, allow_latest)
        filter, allow_latest = None, filter
    if ids is None:
        ids = repo.list_ids("snapshot")
    if spec == "latest" and allow_latest:
        snapshots = []
        for sid in sorted(i for i in ids if _valid_snapshot_name(i)):
            try:
                snapshots.append(load_snapshot_obj(repo, sid))
            except Exception as exc:
                raise NotFound(f"Error loading snapshot {sid[:8]}: {exc}") from None
        latest = find_latest(snapshots, filter)
        if latest is None:
            raise SnapshotNotFound("no snapshot found")
        return latest.id
    try:
        return find_by_prefix(spec, ids)
    except NotFound as exc:
        raise SnapshotNotFound(str(exc), f"could not find snapshot: {exc}") from None


def find_filtered_snapshots(repo, args: Sequence[str], filt: Optional[SnapshotFilter] = None,
                            warn: Callable[[str], None] = _warn) -> List[Snapshot]:
    """The snapshots a command such as `snapshots`, `forget` or `tag` works on (restic 0.14's
    FindFilteredSnapshots): the ones named in args (ID prefixes or `latest`, which honours the
    filter; filters are otherwise ignored, with a warning), or all that match the filter.
    Problems are warnings, never errors."""
    filt = filt or SnapshotFilter()
    if not args:
        return filt.apply(load_all_snapshots(repo, warn=warn))

    ids = repo.list_ids("snapshot")
    chosen: List[str] = []
    used_filter = False
    all_snapshots: Optional[List[Snapshot]] = None
    for spec in args:
        if spec == "latest":
            used_filter = True
            if all_snapshots is None:
                try:
                    all_snapshots = load_all_snapshots(repo, ids, warn=None)
                except Exception:  # restic gives up on `latest` if any snapshot is damaged
                    all_snapshots = []
            latest = find_latest(all_snapshots, filt)
            if latest is None:
                warn(f'Ignoring "{spec}", no snapshot matched given filter ({filt.describe()})')
                continue
            chosen.append(latest.id)
        else:
            try:
                chosen.append(find_by_prefix(spec, ids))
            except NotFound as exc:
                warn(f'Ignoring "{spec}": {exc}')
                continue
    if not used_filter and not filt.empty():
        warn("Ignoring filters as there are explicit snapshot ids given")

    out: List[Snapshot] = []
    seen = set()
    for sid in chosen:
        if sid in seen:
            continue
        seen.add(sid)
        try:
            out.append(load_snapshot_obj(repo, sid))
        except Exception as exc:
            warn(f'Ignoring "{sid}", could not load snapshot: {exc}')
    return out


# --- --latest N and --group-by -------------------------------------------------------------

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


def sort_by_time(snapshots: List[Snapshot]) -> List[Snapshot]:
    """Oldest first (stable)."""
    return sorted(snapshots, key=lambda sn: sn.time.unix_ns)


@dataclass(frozen=True)
class GroupBy:
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


@dataclass(frozen=True)
class SnapshotGroupKey:
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


# --- paths inside snapshots ----------------------------------------------------------------

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
