"""forget: remove snapshots, either those named or those a keep policy does not keep in
each group of snapshots (restic's forget without --prune).

Only snapshot files are removed; the data they referenced stays until prune. Everything is
decided before the first file is removed, so a refused policy removes nothing, and an
interrupted run leaves some of the chosen snapshots removed and every other one intact.
"""
from dataclasses import dataclass, field
from typing import Callable, List, Optional, Sequence

from ..errors import RestiqueError, UsageError
from ..model.keep_policy import KeepPolicy, KeepReason, apply_policy
from ..model.snapshot import Snapshot
from ..model.snapshot_filter import SnapshotFilter
from ..model.snapshot_group import GroupBy, SnapshotGroupKey, group_snapshots
from .snapshot_lookup import find_filtered_snapshots


class SnapshotRemovalFailed(RestiqueError):
    """Some snapshot files could not be removed (restic's exit code 3)."""
    exit_code = 3

    def __init__(self, failed: Sequence[str]):
        super().__init__("failed to remove one or more snapshots")
        self.failed = list(failed)


@dataclass
class ForgetOptions:
    """snapshot_ids: remove exactly these (ID prefixes or `latest`), no policy; otherwise
    the policy is applied to each group of the snapshots the filter selects.
    unsafe_allow_remove_all: an empty policy removes every selected snapshot (only with a
    filter, as restic demands)."""
    policy: KeepPolicy = field(default_factory=KeepPolicy)
    group_by: GroupBy = field(default_factory=lambda: GroupBy(host=True, paths=True))
    filter: SnapshotFilter = field(default_factory=SnapshotFilter)
    snapshot_ids: Sequence[str] = ()
    dry_run: bool = False
    unsafe_allow_remove_all: bool = False


@dataclass
class ForgetGroup:
    """One group's verdict: keep and remove newest first, reasons[i] for keep[i]."""
    key: SnapshotGroupKey
    keep: List[Snapshot]
    remove: List[Snapshot]
    reasons: List[KeepReason]

    def to_json(self) -> dict:
        """Current restic's ForgetGroup (doc/075_scripting.rst); empty lists are null."""
        def snapshots(items):
            return [sn.to_json() for sn in items] or None

        return {
            "tags": None if self.key.tags is None else list(self.key.tags),
            "host": self.key.hostname,
            "paths": None if self.key.paths is None else list(self.key.paths),
            "keep": snapshots(self.keep),
            "remove": snapshots(self.remove),
            "reasons": [{"snapshot": r.snapshot.to_json(), "matches": list(r.matches)}
                        for r in self.reasons] or None,
        }


@dataclass
class ForgetResult:
    """groups: the policy's verdict per group (empty when IDs were given); remove_ids: the
    snapshots chosen for removal (sorted); removed: those actually removed (none in a dry
    run). A caller that prunes afterwards does so when remove_ids is not empty."""
    groups: List[ForgetGroup]
    remove_ids: List[str]
    removed: List[str]
    dry_run: bool


def no_policy_message(options: ForgetOptions) -> Optional[str]:
    """restic's refusal of an empty policy without IDs, or None when forget may go on."""
    if options.snapshot_ids or not options.policy.empty():
        return None
    if not options.unsafe_allow_remove_all:
        return "no policy was specified, no snapshots will be removed"
    if options.filter.empty():
        return "--unsafe-allow-remove-all is not allowed unless a snapshot filter option is specified"
    return None


def plan_forget(repo, options: ForgetOptions, warn: Callable[[str], None]) -> ForgetResult:
    """What forget would remove, without removing anything."""
    refusal = no_policy_message(options)
    if refusal:
        raise UsageError(refusal)
    chosen = find_filtered_snapshots(repo, list(options.snapshot_ids), options.filter, warn=warn)
    if options.snapshot_ids:
        return ForgetResult([], sorted({sn.id for sn in chosen}), [], options.dry_run)
    groups = []
    for key, members in group_snapshots(chosen, options.group_by)[0]:
        verdict = apply_policy(members, options.policy)
        if not options.policy.empty() and not verdict.keep:
            raise RestiqueError(f'refusing to delete last snapshot of snapshot group "{_group_name(key)}"')
        groups.append(ForgetGroup(key, verdict.keep, verdict.remove, verdict.reasons))
    remove_ids = sorted({sn.id for group in groups for sn in group.remove})
    return ForgetResult(groups, remove_ids, [], options.dry_run)


def _group_name(key: SnapshotGroupKey) -> str:
    """restic's SnapshotGroupKey.String(): `host h, path [/a /b], tags [x y]`."""
    parts = []
    if key.hostname:
        parts.append(f"host {key.hostname}")
    if key.paths:
        parts.append("path [" + " ".join(key.paths) + "]")
    if key.tags:
        parts.append("tags [" + " ".join(key.tags) + "]")
    return ", ".join(parts)


def remove_snapshot_files(repo, snapshot_ids: Sequence[str],
                          on_removed: Optional[Callable[[str, Optional[Exception]], None]] = None) -> List[str]:
    """Remove the snapshot files, going on past failures; on_removed(id, error or None)
    after each. Returns the ids removed; SnapshotRemovalFailed (exit code 3) when some
    could not be."""
    removed, failed = [], []
    for sid in snapshot_ids:
        try:
            repo.remove("snapshot", sid)
        except (OSError, RestiqueError) as exc:
            failed.append(sid)
            if on_removed:
                on_removed(sid, exc)
            continue
        removed.append(sid)
        if on_removed:
            on_removed(sid, None)
    if failed:
        raise SnapshotRemovalFailed(failed)
    return removed


def forget(repo, options: ForgetOptions, *, warn: Callable[[str], None] = lambda message: None,
           on_plan: Optional[Callable[[ForgetResult], None]] = None,
           on_removed: Optional[Callable[[str, Optional[Exception]], None]] = None) -> ForgetResult:
    """Apply the options to the (locked) repository: plan, call on_plan(plan) (to show it
    before anything is removed), then remove the chosen snapshot files unless dry_run.
    warn receives restic's warnings (unknown IDs, damaged snapshot files)."""
    result = plan_forget(repo, options, warn)
    if on_plan:
        on_plan(result)
    if not options.dry_run and result.remove_ids:
        result.removed = remove_snapshot_files(repo, result.remove_ids, on_removed)
    return result
