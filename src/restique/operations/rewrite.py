"""Rewriting snapshots (current restic's `rewrite`): new snapshots without the excluded
entries (or with only the included ones), or with a new host or time.

A changed snapshot is saved as a new file whose `original` is the old snapshot's id, tagged
`rewrite` unless the old one is removed (forget). Trees are written first (packs, then
index), then the snapshot, then the old snapshot is removed: an interruption at any point
leaves the old snapshot or both, never neither. `repair snapshots` shares the selection of
snapshots and `replace_snapshot`.

    for result in rewrite_snapshots(repo, snapshots, RewriteOptions(excludes=[PatternList(["*.tmp"])])):
        print(result.original.id, "->", result.new and result.new.id)
"""
import re
from dataclasses import dataclass, field, replace
from typing import Callable, Iterable, Iterator, List, NamedTuple, Optional, Sequence, Union

from ..errors import NotFound, RestiqueError, UsageError
from ..model.gotime import GoTime
from ..model.ids import find_by_prefix
from ..model.patterns import PatternList
from ..model.snapshot import SUMMARY_FIELDS, ZERO_TIME, Snapshot
from ..model.snapshot_filter import SnapshotFilter, find_latest
from .snapshot_lookup import load_snapshot
from .tree_rewriter import RewrittenTree, TreeRewriter

_FULL_ID = re.compile(r"^[0-9a-f]{64}$")


@dataclass
class RewriteOptions:
    excludes: List[PatternList] = field(default_factory=list)  # one list per case sensitivity
    includes: List[PatternList] = field(default_factory=list)
    forget: bool = False  # remove the original snapshots instead of tagging the new ones
    dry_run: bool = False
    new_host: str = ""
    new_time: Optional[GoTime] = None
    snapshot_summary: bool = False  # add the file count and size summary where missing

    @property
    def metadata_only(self) -> bool:
        return not (self.excludes or self.includes or self.snapshot_summary)

    def check(self) -> None:
        if self.metadata_only and not (self.new_host or self.new_time):
            raise UsageError("Nothing to do: no excludes/includes provided and no new metadata provided")
        if self.excludes and self.includes:
            raise UsageError("exclude and include patterns are mutually exclusive")


class NodeEvent(NamedTuple):
    """Something a rewrite did to one entry, for messages: kind is `excluded`, `included`
    or `included directory` (rewrite) or one of repair_snapshots' kinds."""
    kind: str
    path: str
    detail: str = ""


OnNode = Callable[[NodeEvent], None]
OnSnapshot = Callable[[Snapshot], None]


@dataclass
class ReplaceResult:
    """What happened to one snapshot. new: the snapshot saved (or, in a dry run, the one
    that would be; its id is then ""); removed_empty: its root tree is gone, so the
    snapshot was (or would be) removed; forgot: the original was (or would be) removed."""
    original: Snapshot
    new: Optional[Snapshot] = None
    removed_empty: bool = False
    forgot: bool = False
    new_host: str = ""
    new_time: Optional[GoTime] = None

    @property
    def changed(self) -> bool:
        return self.new is not None or self.removed_empty


# --- choosing the snapshots (current restic's SnapshotFilter.FindAll) ---

class UnreadableSnapshot(NamedTuple):
    """A snapshot file named or listed that could not be loaded; named: given by the user."""
    id: str
    error: Exception
    named: bool


def select_snapshots(repo, names: Sequence[str], filt: Optional[SnapshotFilter] = None
                     ) -> List[Union[Snapshot, UnreadableSnapshot]]:
    """The snapshots named (ID prefixes, `latest` honouring the filter) or, without names,
    all that match the filter, in id order. Unlike the listing commands this is strict, as
    current restic is for commands that change snapshots: an unknown name is an error, and
    so are filters next to explicit ids (refused before anything is changed)."""
    filt = filt or SnapshotFilter()
    ids = sorted(i for i in repo.list_ids("snapshot") if _FULL_ID.match(i))
    if not names:
        out = []
        for sid in ids:
            try:
                sn = load_snapshot(repo, sid)
            except Exception as exc:  # damaged file: the caller decides
                out.append(UnreadableSnapshot(sid, exc, False))
                continue
            if filt.matches(sn):
                out.append(sn)
        return out
    if "latest" not in names and not filt.empty():
        raise UsageError("explicit snapshot ids are given: --host, --tag and --path only apply to \"latest\"")
    chosen: dict = {}
    for name in names:
        if name == "latest":
            sid = _latest(repo, ids, filt)
        elif ":" in name:
            raise UsageError(f'{name}: <snapshot>:<subfolder> syntax not allowed')
        else:
            try:
                sid = find_by_prefix(name, ids)
            except NotFound as exc:
                raise NotFound(f"could not find snapshot: {exc}") from None
        chosen.setdefault(sid, None)
    out = []
    for sid in chosen:
        try:
            out.append(load_snapshot(repo, sid))
        except Exception as exc:
            out.append(UnreadableSnapshot(sid, exc, True))
    return out


def _latest(repo, ids: List[str], filt: SnapshotFilter) -> str:
    snapshots = []
    for sid in ids:
        try:
            snapshots.append(load_snapshot(repo, sid))
        except Exception:  # a damaged snapshot cannot be the latest one
            continue
    latest = find_latest(snapshots, filt)
    if latest is None:
        raise NotFound(f"no snapshot matched given filter ({filt.describe()})")
    return latest.id


# --- replacing one snapshot (restic's filterAndReplaceSnapshot) ---

def replace_snapshot(repo, sn: Snapshot, rewritten: Optional[RewrittenTree], *, tag: str,
                     forget: bool, dry_run: bool, keep_empty_snapshot: bool = False,
                     new_host: str = "", new_time: Optional[GoTime] = None,
                     summary: Optional[dict] = None) -> ReplaceResult:
    """Save sn with its rewritten tree (None: the tree is unchanged) and new metadata, if
    anything changed. A root that is gone removes the snapshot (repair snapshots) unless
    keep_empty_snapshot (rewrite --include that matched nothing leaves it alone)."""
    result = ReplaceResult(sn, new_host=new_host, new_time=new_time)
    tree_id = sn.tree if rewritten is None else rewritten.tree_id
    if tree_id is None:
        if keep_empty_snapshot:
            return result
        result.removed_empty = True
        if not dry_run:
            repo.remove("snapshot", sn.id)
        return result
    if tree_id == sn.tree and not (new_host or new_time) and (summary is None or summary == sn.summary):
        return result
    tags = list(sn.tags or [])
    if not forget and tag not in tags:
        tags.append(tag)
    new = replace(sn, id="", original=sn.id, tree=tree_id, tags=tags or None,
                  summary=summary if summary is not None else sn.summary)
    if new_time is not None:
        new.time, new.time_is_zero = new_time, False
    if new_host:
        new.hostname = new_host
    result.new, result.forgot = new, forget
    if dry_run:
        return result
    repo.flush()  # the new trees' packs and index before the snapshot that needs them
    new.id = repo.save_json("snapshot", new.to_json(with_id=False))
    if forget:
        repo.remove("snapshot", sn.id)
    return result


# --- rewrite ---

def _exclude_filter(excludes: List[PatternList], on_node: Optional[OnNode]):
    def rewrite_node(node, path):
        if any(patterns.matches(path) for patterns in excludes):
            if on_node:
                on_node(NodeEvent("excluded", path))
            return None
        return node
    return rewrite_node


def _include_filter(includes: List[PatternList], on_node: Optional[OnNode]):
    def rewrite_node(node, path):
        for patterns in includes:
            if patterns.matches(path):
                if node.type != "dir" and on_node:
                    on_node(NodeEvent("included", path))
                return node
            if node.type == "dir" and patterns.child_may_match(path):
                return node
        return None

    def keep_empty_directory(path):
        keep = any(patterns.matches(path) for patterns in includes)
        if keep and on_node:
            on_node(NodeEvent("included directory", path))
        return keep
    return rewrite_node, keep_empty_directory


def _tree_rewriter(repo, options: RewriteOptions, on_node: Optional[OnNode]) -> TreeRewriter:
    keep_empty = None
    if options.includes:
        rewrite_node, keep_empty = _include_filter(options.includes, on_node)
    elif options.excludes:
        rewrite_node = _exclude_filter(options.excludes, on_node)
    else:
        rewrite_node = None  # --snapshot-summary alone: keep everything, count it
    return TreeRewriter(repo, rewrite_node, keep_empty_directory=keep_empty, dry_run=options.dry_run)


def summary_with_totals(summary: Optional[dict], files: int, size: int) -> dict:
    """sn's summary (a zero one if it has none) with restic's two rewrite totals."""
    out = dict(summary) if summary is not None else {
        name: ZERO_TIME if is_time else 0 for name, is_time in SUMMARY_FIELDS}
    out["total_files_processed"] = files
    out["total_bytes_processed"] = size
    return out


def rewrite_snapshots(repo, snapshots: Iterable[Union[Snapshot, UnreadableSnapshot]],
                      options: RewriteOptions, *, on_snapshot: Optional[OnSnapshot] = None,
                      on_node: Optional[OnNode] = None) -> Iterator[ReplaceResult]:
    """Rewrite each snapshot; yields a ReplaceResult for each (changed or not). on_snapshot
    is called before a snapshot is rewritten, on_node for each entry excluded or included.
    An unreadable snapshot stops the command, as in restic."""
    options.check()
    repo.load_index()
    rewriter = None if options.metadata_only else _tree_rewriter(repo, options, on_node)
    for sn in snapshots:
        if isinstance(sn, UnreadableSnapshot):
            raise RestiqueError(f"unable to load snapshot {sn.id[:8]}: {sn.error}")
        if on_snapshot:
            on_snapshot(sn)
        if not sn.tree:
            raise RestiqueError(f'unable to rewrite snapshot ID "{sn.short_id}": snapshot {sn.short_id} has nil tree')
        rewritten, summary = None, None
        if rewriter is not None:
            try:
                rewritten = rewriter.rewrite(sn.tree)
            except RestiqueError as exc:
                raise RestiqueError(f'unable to rewrite snapshot ID "{sn.short_id}": {exc}') from None
            summary = summary_with_totals(sn.summary, rewritten.files, rewritten.bytes)
        yield replace_snapshot(repo, sn, rewritten, tag="rewrite", forget=options.forget,
                               dry_run=options.dry_run, keep_empty_snapshot=bool(options.includes),
                               new_host=options.new_host, new_time=options.new_time, summary=summary)
