"""Carrying out a prune plan in the order that loses nothing if it is interrupted anywhere:

1. delete the packs no index names (nothing refers to them);
2. copy the blobs still needed out of the packs to repack into new packs;
3. write a new index of every pack that stays, the new ones included;
4. delete the old index files (only now are the packs to delete unreferenced);
5. delete the packs that were repacked or hold nothing used.

After an interruption the repository holds at worst unreferenced packs or blobs indexed
twice, which restic check accepts and the next prune cleans up.
"""
from typing import Dict

from ...backend.base import FileType
from ...errors import IntegrityError
from ...repository.compact_index import Compact, LazyEntries
from ...repository.index_rewrite import write_index_files
from .plan import PrunePlan
from .repack import repack_packs
from .report import PruneReport


def execute_plan(repo, plan: PrunePlan, report: PruneReport) -> None:
    """Change the repository as plan says (plan.options.dry_run: change nothing)."""
    if plan.options.dry_run:
        return
    if plan.remove_first:
        report.message("deleting unreferenced packs")
        _delete_files(repo, FileType.PACK, plan.remove_first, report, ignore_errors=True)
    new_packs: Dict[str, Compact] = {}
    if plan.repack:
        report.message("repacking packs")
        counter = report.counter("packs repacked", len(plan.repack))
        try:
            new_packs = repack_packs(repo, plan.pack_entries, plan.repack, plan.keep_blobs, counter)
        finally:
            counter.done()
        _check_all_copied(plan, report)
    leaving = plan.repack | plan.remove
    if plan.rewrites_index:
        _rewrite_index(repo, plan, leaving | plan.ignore, new_packs, report)
    if leaving:
        report.message(f"removing {len(leaving)} old packs")
        _delete_files(repo, FileType.PACK, leaving, report, ignore_errors=True)
    report.message("done")


def _check_all_copied(plan: PrunePlan, report: PruneReport) -> None:
    left = [f"<{kind}/{blob_id[:8]}>" for kind, ids in plan.keep_blobs.items() for blob_id in ids]
    if left:
        report.warning("{%s} was not repacked\n\nIntegrity check failed.\n"
                       "Please report this error (along with the output of the 'prune' run) at\n"
                       "https://github.com/restic/restic/issues/new/choose" % " ".join(sorted(left)))
        raise IntegrityError("internal error: blobs were not repacked")


def _rewrite_index(repo, plan: PrunePlan, gone, new_packs, report: PruneReport) -> None:
    report.message("rebuilding index")
    packs = {pack_id: entries for pack_id, entries in plan.pack_entries.items() if pack_id not in gone}
    # the new packs' entries are expanded one pack at a time as the files are written
    packs.update((pack_id, LazyEntries(compact)) for pack_id, compact in new_packs.items())
    counter = report.counter("packs processed", len(packs))
    try:
        write_index_files(repo, packs)
        counter.add(len(packs))
    finally:
        counter.done()
    report.message("deleting obsolete index files")
    _delete_files(repo, FileType.INDEX, plan.index_ids, report, ignore_errors=False)


def _delete_files(repo, kind: FileType, ids, report: PruneReport, ignore_errors: bool) -> None:
    """Delete files one after the other; a pack that cannot be deleted is only reported
    (keeping too much never damages a repository), an index file stops prune."""
    counter = report.counter("files deleted", len(ids))
    try:
        for file_id in sorted(ids):
            try:
                repo.remove(kind, file_id)
            except OSError:
                report.warning(f"unable to remove <{kind.label}/{file_id[:10]}> from the repository")
                if not ignore_errors:
                    raise
            else:
                report.debug(f"removed <{kind.label}/{file_id[:10]}>")
            counter.add()
    finally:
        counter.done()
