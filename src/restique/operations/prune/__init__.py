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
from typing import Iterable, Optional

from .options import PruneOptions, parse_bytes
from .plan import PrunePlan, plan_prune
from .report import Counter, PruneReport
from .run import execute_plan
from .stats import PruneStats

__all__ = ["Counter", "PruneOptions", "PrunePlan", "PruneReport", "PruneStats", "execute_plan",
           "parse_bytes", "plan_prune", "prune"]


def prune(repo, options: PruneOptions, report: Optional[PruneReport] = None,
          ignore_snapshots: Iterable[str] = ()) -> PrunePlan:
    """Plan and (unless options.dry_run) carry out a prune; returns the plan with its
    statistics. The caller holds the exclusive lock."""
    report = report or PruneReport()
    plan = plan_prune(repo, options, report, ignore_snapshots)
    execute_plan(repo, plan, report)
    return plan
