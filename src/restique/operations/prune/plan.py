"""Planning a prune without changing anything: which blobs the snapshots use, what each pack
holds, and which packs to keep, repack or delete, with restic's rules and statistics.

The rules are current restic's (internal/repository/prune.go): a pack no index names is
deleted first; a pack with no used blob is deleted; a partly used pack, a pack mixing blob
types, an uncompressed tree pack (format 2) and, with enough of them, small packs are
repacked until the unused space left is within --max-unused; of a blob stored several
times one copy is kept, preferably in a pack that is kept anyway. The default size below
which packs count as small is restic 0.14's (4% of the pack size, 80% with --repack-small),
so that the statistics are the ones restic 0.14 prints.
"""
import functools
from collections import Counter
from dataclasses import dataclass, field
from typing import Dict, Iterable, List, Optional, Set

from ...errors import IntegrityError, NotFound, RestiqueError, UsageError
from ...repository.crypto import OVERHEAD
from ...repository.pack_files import list_pack_sizes
from ..snapshot_lookup import load_snapshot
from ...repository.index import IndexEntry
from .indexed import LoadedIndex, load_index
from .options import PruneOptions
from .report import PruneReport
from .stats import PruneStats
from . import tree_packs
from .used_blobs import UsedBlobs, find_used_blobs

MIXED = "mixed"  # a pack holding both data and tree blobs
_HEADER_SIZE = 4 + OVERHEAD  # the header length field and the header's encryption overhead
_MIN_SMALL_PACKS = 10  # fewer small packs are not worth repacking (and would be forever)


@dataclass(slots=True)
class PackInfo:
    used_blobs: int
    unused_blobs: int
    duplicate_blobs: int
    used_size: int  # starts with the header's size
    unused_size: int
    type: Optional[str]  # "data", "tree", MIXED, or None before the first blob
    uncompressed: bool
    must_compress: bool

    @property
    def size(self) -> int:
        return self.used_size + self.unused_size


@dataclass
class PrunePlan:
    """What a prune will do. Pack ids are full ids; blobs go by type then id."""

    options: PruneOptions
    snapshot_count: int = 0
    stats: PruneStats = field(default_factory=PruneStats)
    index_ids: List[str] = field(default_factory=list)  # every index file read: all replaced
    pack_entries: Dict[str, List[IndexEntry]] = field(default_factory=dict)  # indexed packs
    remove_first: Set[str] = field(default_factory=set)  # packs no index names
    repack: Set[str] = field(default_factory=set)
    remove: Set[str] = field(default_factory=set)  # packs none of whose blobs is used
    ignore: Set[str] = field(default_factory=set)  # missing packs nothing needs
    keep_blobs: Dict[str, Set[str]] = field(default_factory=dict)  # to copy out of repacked packs

    @property
    def rewrites_index(self) -> bool:
        return bool(self.repack or self.remove or self.ignore)


def plan_prune(repo, options: PruneOptions, report: Optional[PruneReport] = None,
               ignore_snapshots: Iterable[str] = ()) -> PrunePlan:
    """Decide what to prune; the repository is not changed. ignore_snapshots are treated as
    already removed (forget --prune --dry-run). RestiqueError when prune must not run: a
    used blob missing from the index, a needed pack missing or of the wrong size, a tree
    that cannot be loaded."""
    report = report or PruneReport()
    options.validate()
    _check_format(repo, options)
    plan = PrunePlan(options)
    report.message("loading indexes...")
    index = load_index(repo)
    plan.index_ids, plan.pack_entries = index.index_ids, index.packs
    used = _find_used(repo, plan, report, index, set(ignore_snapshots))
    report.message("searching used packs...")
    infos = _pack_infos(plan, used, report)
    report.message("collecting packs for deletion and repacking")
    _decide(repo, plan, infos, report)
    if plan.repack:
        plan.keep_blobs = _blobs_to_copy(plan, used)
    plan.stats.add_totals()
    return plan


def _check_format(repo, options: PruneOptions) -> None:
    if options.repack_uncompressed and repo.config.version < 2:
        raise UsageError("compression requires at least repository format version 2")
    if options.repack_uncompressed and repo.compression == "off":
        raise UsageError("disabled compression and `--repack-uncompressed` are mutually exclusive")
    if options.small_pack_bytes() > repo.blobs.pack_size:
        raise UsageError("repack-smaller-than exceeds repository packsize")


def _find_used(repo, plan: PrunePlan, report: PruneReport, index: LoadedIndex, ignore: Set[str]) -> UsedBlobs:
    report.message("loading all snapshots...")
    roots = []
    for sid in sorted(repo.list_ids("snapshot")):
        if sid in ignore:
            continue
        try:
            sn = load_snapshot(repo, sid)
        except RestiqueError as exc:
            raise RestiqueError(f"failed loading snapshot: {exc}") from None
        if not sn.tree:
            raise IntegrityError(f"failed loading snapshot: snapshot {sid[:8]} has no tree")
        roots.append(sn.tree)
    plan.snapshot_count = len(roots)
    report.message(f"finding data that is still in use for {len(roots)} snapshots")
    def load_tree(tree_id: str) -> bytes:
        if tree_id not in index.trees:
            raise NotFound(f"unable to load a tree from the repository: tree {tree_id[:8]} not found in the index")
        try:
            return repo.blobs.load("tree", tree_id, index.tree_location(tree_id))
        except RestiqueError as exc:
            raise RestiqueError(f"unable to load a tree from the repository: {exc}") from None

    def locate(tree_id: str):
        return index.tree_location(tree_id) if tree_id in index.trees else None

    def load_trees(tree_ids):
        return tree_packs.load_trees(repo, tree_ids, locate)

    counter = report.counter("snapshots", len(roots))
    try:
        return find_used_blobs(load_tree, roots, counter.add, load_trees)
    finally:
        counter.done()


def _pack_infos(plan: PrunePlan, used: UsedBlobs, report: PruneReport) -> Dict[str, PackInfo]:
    """Per pack: used and unused blobs and sizes; each used blob counted used in one pack.
    Sums are taken per pack and the plain case (every blob used once) is summed in one go:
    a repository lists tens of thousands of blobs."""
    stats = plan.stats
    copies = _copies(plan, used)
    _refuse_missing_blobs(copies, report)
    infos: Dict[str, PackInfo] = {}
    has_duplicates = False
    used_n = used_size = unused_n = unused_size = duplicate_n = duplicate_size = 0
    for pack_id, entries in plan.pack_entries.items():
        kinds = {e.type for e in entries}
        if len(kinds) == 1:
            kind = next(iter(kinds))
            table = copies[kind]
            counts = [table.get(e.id, 0) for e in entries]
        else:
            kind = MIXED if kinds else None
            counts = [copies[e.type].get(e.id, 0) for e in entries]
        compressed = sum(1 for e in entries if e.uncompressed_length)
        header = _HEADER_SIZE + 37 * len(entries) + 4 * compressed
        info = infos[pack_id] = PackInfo(0, 0, 0, header, 0, kind, compressed < len(entries), False)
        ones = counts.count(1)
        if ones == len(entries):
            info.used_blobs = ones
            info.used_size += sum(e.length for e in entries)
        else:
            for e, count in zip(entries, counts):
                if count >= 2:  # one copy becomes used below
                    has_duplicates = True
                    info.unused_size += e.length
                    info.unused_blobs += 1
                    info.duplicate_blobs += 1
                    duplicate_size += e.length
                    duplicate_n += 1
                elif count == 1:
                    info.used_size += e.length
                    info.used_blobs += 1
                else:
                    info.unused_size += e.length
                    info.unused_blobs += 1
                    unused_size += e.length
                    unused_n += 1
        used_n += info.used_blobs
        used_size += info.used_size - header
    stats.blobs.used += used_n
    stats.bytes.used += used_size
    stats.blobs.unused += unused_n
    stats.bytes.unused += unused_size
    stats.blobs.duplicate += duplicate_n
    stats.bytes.duplicate += duplicate_size
    if has_duplicates:
        _choose_copies(plan, infos, copies)
    return infos


def _copies(plan: PrunePlan, used: UsedBlobs) -> Dict[str, Dict[str, int]]:
    """type -> used blob id -> how many times the index lists it."""
    listed: Dict[str, Counter] = {kind: Counter() for kind in used}
    for entries in plan.pack_entries.values():
        if len(entries) and all(e.type == entries[0].type for e in entries):
            listed[entries[0].type].update([e.id for e in entries])
        else:
            for e in entries:
                listed[e.type][e.id] += 1
    return {kind: {blob_id: listed[kind][blob_id] for blob_id in ids} for kind, ids in used.items()}


def _refuse_missing_blobs(copies: Dict[str, Dict[str, int]], report: PruneReport) -> None:
    missing = [f"<{kind}/{blob_id[:8]}>" for kind, counts in copies.items()
               for blob_id, n in counts.items() if n == 0]
    if missing:
        report.warning("{%s} not found in the index\n\n"
                       "Integrity check failed: Data seems to be missing.\n"
                       "Will not start prune to prevent (additional) data loss!\n"
                       "Please report this error (along with the output of the 'prune' run) at\n"
                       "https://github.com/restic/restic/issues/new/choose" % " ".join(sorted(missing)))
        raise IntegrityError("index is not complete")


def _choose_copies(plan: PrunePlan, infos: Dict[str, PackInfo], copies: Dict[str, Dict[str, int]]) -> None:
    """Of a used blob stored several times, count one copy as used: one in a pack that has
    other used blobs, or in a pack of nothing but duplicates (what an interrupted prune
    leaves), else the last one. copies[type][id] ends at 1 for every used blob."""
    stats = plan.stats
    for pack_id, entries in plan.pack_entries.items():
        info = infos[pack_id]
        for e in entries:
            counts = copies[e.type]
            count = counts.get(e.id)
            if count is None or count == 1:
                continue  # not used, or not a duplicate, or its copy is chosen
            if info.used_blobs > 0 or info.duplicate_blobs == info.unused_blobs or count == 0:
                info.used_size += e.length
                info.used_blobs += 1
                info.unused_size -= e.length
                info.unused_blobs -= 1
                stats.bytes.used += e.length
                stats.blobs.used += 1
                stats.bytes.duplicate -= e.length
                stats.blobs.duplicate -= 1
                counts[e.id] = 1
            else:
                count -= 1
                counts[e.id] = 0 if count == 1 else count  # 0: the next copy is the last


def _target_pack_size(repo, options: PruneOptions) -> int:
    small = options.small_pack_bytes()
    if small:
        return small
    if options.repack_small:
        return repo.blobs.pack_size // 5 * 4
    return repo.blobs.pack_size // 25


def _decide(repo, plan: PrunePlan, infos: Dict[str, PackInfo], report: PruneReport) -> None:
    """Sort every pack file into delete first / delete / keep / repack candidates, then
    choose the candidates to repack."""
    options, stats = plan.options, plan.stats
    target = _target_pack_size(repo, options)
    candidates: List[tuple] = []
    small: List[tuple] = []
    listed = list_pack_sizes(repo)
    counter = report.counter("packs processed", len(infos))
    try:
        for pack_id, size in listed.items():
            info = infos.get(pack_id)
            if info is None:
                report.detail(f"will remove pack {pack_id[:8]} as it is unused and not indexed")
                plan.remove_first.add(pack_id)
                stats.bytes.unreferenced += size
                continue
            _classify(repo, plan, pack_id, size, info, target, candidates, small, report)
            counter.add()
    finally:
        counter.done()
    _handle_missing_packs(plan, infos, listed, report)
    if len(small) < _MIN_SMALL_PACKS:
        stats.packs.keep += len(small)
    else:
        candidates += small
    _choose_repacks(plan, candidates, target)
    stats.packs.unreferenced = len(plan.remove_first)
    stats.packs.repack = len(plan.repack)
    stats.packs.remove = len(plan.remove)
    if repo.config.version < 2:
        stats.bytes.uncompressed = 0


def _classify(repo, plan, pack_id, size, info: PackInfo, target, candidates, small, report) -> None:
    stats = plan.stats
    if info.size != size and info.used_blobs:
        report.warning(f"pack {pack_id[:8]}: calculated size {info.size} does not match real size {size}\n"
                       "Run 'restic repair index'")
        raise IntegrityError("pack size does not match calculated size from index")
    if not info.used_blobs:
        stats.packs.unused += 1
    elif not info.unused_blobs:
        stats.packs.used += 1
    else:
        stats.packs.partly_used += 1
    if info.uncompressed:
        stats.bytes.uncompressed += info.size
    if repo.config.version >= 2:  # uncompressed trees are always repacked, data on request
        info.must_compress = info.uncompressed and (info.type == "tree" or plan.options.repack_uncompressed)
    if not info.used_blobs:
        plan.remove.add(pack_id)
        stats.blobs.remove += info.unused_blobs
        stats.bytes.remove += info.unused_size
    elif plan.options.repack_cacheable_only and info.type == "data":
        stats.packs.keep += 1
    elif not info.unused_blobs and info.type != MIXED and not info.must_compress:
        if size >= target:
            stats.packs.keep += 1
        else:
            small.append((pack_id, info))
    else:
        candidates.append((pack_id, info))


def _handle_missing_packs(plan: PrunePlan, infos: Dict[str, PackInfo], listed: Dict[str, int],
                          report: PruneReport) -> None:
    """Indexed packs that do not exist: forgotten when nothing in them is needed, else
    prune refuses to run."""
    missing = [pack_id for pack_id in infos if pack_id not in listed]
    needed = [pack_id for pack_id in missing if infos[pack_id].used_blobs]
    if needed:
        report.warning(f"The index references {len(needed)} needed pack files which are missing from the repository:\n"
                       + "\n".join(f"  {pack_id}" for pack_id in needed))
        raise IntegrityError("packs from index missing in repo")
    for pack_id in missing:
        info = infos[pack_id]
        plan.ignore.add(pack_id)
        plan.stats.blobs.remove += info.unused_blobs
        plan.stats.bytes.remove += info.unused_size
    if missing:
        report.warning("Missing but unneeded pack files are referenced in the index, will be repaired\n"
                       + "\n".join(f"will forget missing pack file {pack_id}" for pack_id in missing))


def _choose_repacks(plan: PrunePlan, candidates: List[tuple], target: int) -> None:
    """Repack tree packs and small packs first, then the packs with the most unused space,
    until the unused space left is within --max-unused (trees and packs to compress: only
    within --max-repack-size)."""
    stats, options = plan.stats, plan.options

    def before(a, b) -> int:
        pa, pb = a[1], b[1]
        if (pa.type != "data") != (pb.type != "data"):
            return -1 if pa.type != "data" else 1
        if (pa.size < target) != (pb.size < target):
            return -1 if pa.size < target else 1
        left, right = pa.unused_size * pb.used_size, pb.unused_size * pa.used_size
        return -1 if left > right else (1 if left < right else 0)

    candidates.sort(key=functools.cmp_to_key(before))
    max_unused_after = options.max_unused_bytes(stats.bytes.used)
    max_repack = options.max_repack_bytes()
    for pack_id, info in candidates:
        unused_left = stats.bytes.duplicate + stats.bytes.unused - stats.bytes.remove - stats.bytes.repack_remove
        if stats.bytes.repack + info.size >= max_repack:
            stats.packs.keep += 1
        elif info.type != "data" or info.must_compress:
            _repack(plan, pack_id, info)
        elif unused_left < max_unused_after and info.size >= target:
            stats.packs.keep += 1
        else:
            _repack(plan, pack_id, info)


def _repack(plan: PrunePlan, pack_id: str, info: PackInfo) -> None:
    stats = plan.stats
    plan.repack.add(pack_id)
    stats.blobs.repack += info.unused_blobs + info.used_blobs
    stats.bytes.repack += info.size
    stats.blobs.repack_remove += info.unused_blobs
    stats.bytes.repack_remove += info.unused_size
    if info.uncompressed:
        stats.bytes.uncompressed -= info.size


def _blobs_to_copy(plan: PrunePlan, used: UsedBlobs) -> Dict[str, Set[str]]:
    """The used blobs that no pack staying in the repository holds: they must be copied
    out of the packs to repack."""
    if not plan.stats.blobs.duplicate:
        # each used blob is in one pack, and the packs to remove or forget hold none
        keep: Dict[str, Set[str]] = {kind: set() for kind in used}
        for pack_id in plan.repack:
            for e in plan.pack_entries[pack_id]:
                if e.id in used[e.type]:
                    keep[e.type].add(e.id)
        return keep
    keep = {kind: set(ids) for kind, ids in used.items()}
    leaving = plan.repack | plan.remove | plan.ignore
    for pack_id, entries in plan.pack_entries.items():
        if pack_id not in leaving:
            for e in entries:
                keep[e.type].discard(e.id)
    return keep
