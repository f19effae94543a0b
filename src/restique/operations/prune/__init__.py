"""prune: remove the data no snapshot uses, as restic does, in stages:

- options: the flags (--max-unused, --max-repack-size, --repack-*) and their parsing
- used_blobs: the blobs the snapshots still use
- plan: what each pack holds and what to keep, repack or delete, with restic's statistics
- repack: copy the used blobs of the packs to repack into new packs
- run: carry out a plan in the order that loses nothing when interrupted

    from restique.operations.prune import PruneOptions, prune
    with repo.lock(exclusive=True):
        plan = prune(repo, PruneOptions(max_unused="10%"))
    print(plan.stats.to_json())

The library never prints: pass a PruneReport to hear about phases, progress and warnings.
"""
from typing import TYPE_CHECKING, Iterable, Optional

if TYPE_CHECKING:
    from .plan import PrunePlan
    from .report import PruneReport

# the names below load on first use: stats imports this package's tree walking only, which
# should not pay for the planning and repacking modules
_EXPORTS = {"PruneOptions": "options", "parse_bytes": "options", "PrunePlan": "plan", "plan_prune": "plan",
            "Counter": "report", "PruneReport": "report", "execute_plan": "run", "PruneStats": "stats"}

__all__ = sorted([*_EXPORTS, "prune"])


def __getattr__(name: str):
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    from importlib import import_module

    value = getattr(import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def prune(repo, options, report: "Optional[PruneReport]" = None,
          ignore_snapshots: Iterable[str] = ()) -> "PrunePlan":
    """Plan and (unless options.dry_run) carry out a prune; returns the plan with its
    statistics. The caller holds the exclusive lock."""
    from .plan import plan_prune
    from .report import PruneReport
    from .run import execute_plan

    report = report or PruneReport()
    plan = plan_prune(repo, options, report, ignore_snapshots)
    execute_plan(repo, plan, report)
    return plan
