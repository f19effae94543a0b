"""Finding snapshots in a repository: loading them, resolving an ID prefix or `latest`
(optionally `:subfolder`), and choosing the snapshots a command such as `snapshots` works on,
with restic's semantics and messages.

What restic reports and skips (a damaged snapshot file, an unknown ID among several) goes to
a `warn(message)` callback the caller passes; the library never prints.
"""
from __future__ import annotations

import re
from typing import Callable, Iterable, List, Optional, Sequence, Tuple

from ..errors import NotFound, RestiqueError
from ..model.ids import find_by_prefix
from ..model.snapshot import Snapshot
from ..model.snapshot_filter import SnapshotFilter, find_latest

Warn = Callable[[str], None]

_FULL_ID = re.compile(r"^[0-9a-f]{64}$")


class SnapshotNotFound(NotFound):
    """`reason` is restic's own text (`no matching ID found for prefix "X"`, `multiple IDs
    with prefix "X" found`, `no snapshot found`); str() adds the `could not find snapshot: `
    that `restic cat` puts before prefix errors."""

    def __init__(self, reason: str, message: Optional[str] = None):
        super().__init__(message if message is not None else reason)
        self.reason = reason


def load_snapshot(repo, snapshot_id: str) -> Snapshot:
    """One snapshot by its full id; IntegrityError (SnapshotFormatError) if it is damaged."""
    return Snapshot.from_json(snapshot_id, repo.load_json("snapshot", snapshot_id))


def _snapshot_ids(repo, ids: Optional[Iterable[str]]) -> List[str]:
    """The snapshot file names that are ids, sorted; stray files are not snapshots."""
    if ids is None:
        ids = repo.list_ids("snapshot")
    return sorted(i for i in ids if _FULL_ID.match(i))


def load_all_snapshots(repo, ids: Optional[Iterable[str]] = None,
                       warn: Optional[Warn] = None) -> List[Snapshot]:
    """Every snapshot of the repository (or of ids), in id order. With warn, a file that
    cannot be loaded or decoded is reported as restic does (`could not load snapshot
    <short>: <error>`) and skipped; without, the error is raised."""
    out = []
    for sid in _snapshot_ids(repo, ids):
        try:
            out.append(load_snapshot(repo, sid))
        except Exception as exc:  # damaged file: MAC, JSON or struct mismatch
            if warn is None:
                raise
            warn(f"could not load snapshot {sid[:8]}: {exc}")
    return out


def find_snapshot_id(repo, name: str, filter: Optional[SnapshotFilter] = None) -> str:
    """Full id of the snapshot named by an id prefix or `latest` (the newest snapshot matching
    filter; the filter is not used otherwise). Raises SnapshotNotFound."""
    ids = repo.list_ids("snapshot")
    if name == "latest":
        snapshots = []
        for sid in _snapshot_ids(repo, ids):
            try:
                snapshots.append(load_snapshot(repo, sid))
            except Exception as exc:  # restic gives up on `latest` if any snapshot is damaged
                raise SnapshotNotFound(f"Error loading snapshot {sid[:8]}: {exc}") from None
        latest = find_latest(snapshots, filter)
        if latest is None:
            raise SnapshotNotFound("no snapshot found")
        return latest.id
    try:
        return find_by_prefix(name, ids)
    except NotFound as exc:
        raise SnapshotNotFound(str(exc), f"could not find snapshot: {exc}") from None


def find_snapshot(repo, spec: str, filter: Optional[SnapshotFilter] = None) -> Tuple[Snapshot, str]:
    """(snapshot, tree id) for `ID[:subfolder]` or `latest[:subfolder]`: the tree is the
    subfolder's, or the snapshot's root tree without one. Loads the repository index, which
    finding the subfolder needs. SnapshotNotFound if the name matches no snapshot; the
    walker's NotFound (`path x: not found`) for a missing subfolder."""
    from .walker import find_tree_directory  # trees: not needed by commands that only list snapshots

    name, _, subfolder = spec.partition(":")
    sn = load_snapshot(repo, find_snapshot_id(repo, name, filter))
    repo.load_index()
    if not sn.tree:
        raise RestiqueError(f"snapshot {sn.short_id} has no tree")
    tree_id = find_tree_directory(repo, sn.tree, subfolder) if subfolder else sn.tree
    return sn, tree_id


def find_filtered_snapshots(repo, args: Sequence[str], filt: Optional[SnapshotFilter] = None, *,
                            warn: Warn) -> List[Snapshot]:
    """The snapshots a command such as `snapshots`, `forget` or `tag` works on (restic 0.14's
    FindFilteredSnapshots): the ones named in args (ID prefixes or `latest`, which honours the
    filter; filters are otherwise ignored, with a warning), or all that match the filter.
    Problems are warnings, never errors."""
    filt = filt or SnapshotFilter()
    if not args:
        return filt.apply(load_all_snapshots(repo, warn=warn))
    chosen = _resolve_names(repo, args, filt, warn)
    out: List[Snapshot] = []
    for sid in dict.fromkeys(chosen):  # each once, in the order named
        try:
            out.append(load_snapshot(repo, sid))
        except Exception as exc:
            warn(f'Ignoring "{sid}", could not load snapshot: {exc}')
    return out


def _resolve_names(repo, args: Sequence[str], filt: SnapshotFilter, warn: Warn) -> List[str]:
    """Full ids of the snapshots named in args; names that match none are warned about."""
    ids = repo.list_ids("snapshot")
    chosen: List[str] = []
    used_filter = False
    all_snapshots: Optional[List[Snapshot]] = None
    for spec in args:
        if spec == "latest":
            used_filter = True
            if all_snapshots is None:
                try:
                    all_snapshots = load_all_snapshots(repo, ids)
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
    if not used_filter and not filt.empty():
        warn("Ignoring filters as there are explicit snapshot ids given")
    return chosen
