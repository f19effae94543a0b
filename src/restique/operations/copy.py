"""Copying snapshots from one repository to another (restic's `copy`).

Each blob a snapshot needs is read from the source, checked against its id, and sealed again
with the destination's key and compression; blobs the destination already holds are skipped.
Trees are walked once per run: a tree already walked for an earlier snapshot of the same run
has had all its blobs copied, so it is not descended again. A tree blob is saved as soon as it
is read (its plaintext is at hand); data blobs are collected per source pack and copied pack by
pack in worker threads, reading each pack's needed ranges once. Write order per snapshot: the
packs and the index (flush), then the snapshot file, so an interrupted copy leaves at most
unreferenced blobs, which the next run reuses.

A source snapshot is skipped when the destination holds a "similar" one (restic's rule: the
same time, tree, host, user, uid, gid, paths, tags and excludes) that is either a copy of the
same original or that very snapshot.
"""
from ..model import gojson
import time
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from typing import Callable, Dict, Iterator, List, Optional, Sequence, Set, Union

from ..errors import IntegrityError
from ..model.snapshot import Snapshot
from ..model.snapshot_filter import SnapshotFilter
from .snapshot_lookup import find_filtered_snapshots, load_all_snapshots

# blobs of one pack closer than this are read with one request
_MAX_READ_GAP = 256 * 1024
# and one request reads at most this much (more only for a larger blob): bounds memory
_MAX_READ = 4 * 1024 * 1024
_WORKERS = 3


@dataclass
class CopyOptions:
    """snapshot_ids: ID prefixes or `latest` (empty: every snapshot the filter matches).
    warn(message) receives restic's warnings (unknown IDs, damaged snapshot files);
    on_pack(done, total) is called after each source pack whose blobs were copied."""
    snapshot_ids: Sequence[str] = ()
    filter: SnapshotFilter = field(default_factory=SnapshotFilter)
    warn: Callable[[str], None] = lambda message: None
    on_pack: Optional[Callable[[int, int], None]] = None


@dataclass
class CopyStarted:
    """The blobs of `source` are about to be copied."""
    source: Snapshot


@dataclass
class SnapshotCopied:
    source: Snapshot
    new_id: str
    packs: int  # source packs blobs were read from
    blobs: int  # blobs written to the destination
    bytes: int  # their stored size in the destination
    seconds: float


@dataclass
class SnapshotSkipped:
    """The destination already holds `existing`, a copy of `source`."""
    source: Snapshot
    existing: Snapshot


CopyEvent = Union[CopyStarted, SnapshotCopied, SnapshotSkipped]


def similar_snapshots(a: Snapshot, b: Snapshot) -> bool:
    """Everything but parent and original (and the summary) is the same."""
    return (a.time.unix_ns == b.time.unix_ns and a.tree == b.tree and a.hostname == b.hostname
            and a.username == b.username and a.uid == b.uid and a.gid == b.gid
            and sorted(a.paths or []) == sorted(b.paths or [])
            and sorted(a.tags or []) == sorted(b.tags or [])
            and (a.excludes or []) == (b.excludes or []))


def copy_snapshots(source, destination, options: CopyOptions) -> Iterator[CopyEvent]:
    """Copy the chosen snapshots of source into destination (both open; the caller holds
    the locks), yielding an event per step. The copied snapshot has no parent and keeps
    `original` (the source snapshot's id, or its own original)."""
    chosen = find_filtered_snapshots(source, options.snapshot_ids, options.filter, warn=options.warn)
    source.load_index()
    destination.load_index()
    copies = _copies_by_original(load_all_snapshots(destination, warn=options.warn))
    copier = _BlobCopier(source, destination, options.on_pack)
    for sn in chosen:
        existing = next((d for d in copies.get(sn.original or sn.id, ()) if similar_snapshots(d, sn)), None)
        if existing is not None:
            yield SnapshotSkipped(sn, existing)
            continue
        yield CopyStarted(sn)
        if not sn.tree:
            raise IntegrityError(f"snapshot {sn.short_id} has no tree")
        started = time.monotonic()
        stats = copier.copy_tree(sn.tree)
        destination.flush()  # packs and index before the snapshot that needs them
        copy = replace(sn, id="", parent=None, original=sn.original or sn.id)
        new_id = destination.save_json("snapshot", copy.to_json(with_id=False))
        copies.setdefault(copy.original, []).append(replace(copy, id=new_id))
        yield SnapshotCopied(sn, new_id, stats.packs, stats.blobs, stats.bytes, time.monotonic() - started)


def _copies_by_original(snapshots: List[Snapshot]) -> Dict[str, List[Snapshot]]:
    """Destination snapshots under their original's id and under their own."""
    out: Dict[str, List[Snapshot]] = defaultdict(list)
    for sn in snapshots:
        if sn.original:
            out[sn.original].append(sn)
        out[sn.id].append(sn)
    return out


@dataclass
class _TreeCopyStats:
    packs: int = 0
    blobs: int = 0
    bytes: int = 0


class _BlobCopier:
    """Copies the blobs below trees, remembering the trees walked during this run."""

    def __init__(self, source, destination, on_pack):
        self.source = source
        self.destination = destination
        self.on_pack = on_pack
        self.walked: Set[str] = set()

    def copy_tree(self, root: str) -> _TreeCopyStats:
        stats = _TreeCopyStats()
        wanted: Dict[str, List] = defaultdict(list)  # source pack -> [(location, blob id)]
        tree_packs: Set[str] = set()
        self._walk(root, wanted, tree_packs, stats)
        packs = sorted(wanted)
        stats.packs = len(tree_packs | set(packs))
        done = len(tree_packs - set(packs))
        if self.on_pack and done:
            self.on_pack(done, stats.packs)
        pool = ThreadPoolExecutor(_WORKERS, thread_name_prefix="copy")
        try:
            # a pack's bytes live only inside its task: memory stays bounded by the workers
            for blobs, size in pool.map(lambda p: self._copy_pack(p, wanted[p]), packs):
                stats.blobs += blobs
                stats.bytes += size
                done += 1
                if self.on_pack:
                    self.on_pack(done, stats.packs)
        finally:
            pool.shutdown(wait=True, cancel_futures=True)  # after an error, copy no further pack
        return stats

    def _walk(self, root: str, wanted, tree_packs: Set[str], stats: _TreeCopyStats) -> None:
        """Save the trees below root that the destination lacks and collect the data blobs
        it lacks, by source pack."""
        dst_blobs = self.destination.blobs
        src_index = self.source.index
        queued: Set[str] = set()
        stack = [root]
        while stack:
            tree_id = stack.pop()
            if tree_id in self.walked:
                continue
            self.walked.add(tree_id)
            raw = self.source.load_blob("tree", tree_id)
            if not dst_blobs.known("tree", tree_id):
                _, new, size = dst_blobs.save("tree", raw, tree_id)
                if new:
                    tree_packs.add(src_index.lookup("tree", tree_id).pack_id)
                    stats.blobs += 1
                    stats.bytes += size
            for subtree, content in _tree_references(tree_id, raw):
                if subtree:
                    stack.append(subtree)
                for blob_id in content:
                    if blob_id in queued or dst_blobs.known("data", blob_id):
                        continue
                    loc = src_index.lookup("data", blob_id)
                    if loc is None:
                        raise IntegrityError(f"data blob {blob_id} of tree {tree_id[:8]} is not in the source "
                                             "repository's index")
                    queued.add(blob_id)
                    wanted[loc.pack_id].append((loc, blob_id))

    def _copy_pack(self, pack_id: str, blobs: List) -> tuple:
        """(blobs written, their stored size) for the wanted blobs of one source pack."""
        count = stored = 0
        blobs.sort(key=lambda item: item[0].offset)
        for start, end, run in _read_runs(blobs):
            raw = memoryview(self.source.load_pack(pack_id, start, end - start))
            for loc, blob_id in run:
                sealed = raw[loc.offset - start:loc.offset - start + loc.length]
                plain = self.source.blobs.decode(blob_id, sealed, loc)
                _, new, size = self.destination.blobs.save("data", plain, blob_id)
                count += new
                stored += size
        return count, stored


def _read_runs(blobs: List) -> Iterator[tuple]:
    """(start, end, [(location, id)]) ranges of a pack covering blobs sorted by offset,
    joining neighbours whose gap is small while the range stays under _MAX_READ."""
    run: List = []
    start = end = 0
    for loc, blob_id in blobs:
        if run and (loc.offset - end > _MAX_READ_GAP or loc.offset + loc.length - start > _MAX_READ):
            yield start, end, run
            run = []
        if not run:
            start = loc.offset
        run.append((loc, blob_id))
        end = max(end, loc.offset + loc.length) if len(run) > 1 else loc.offset + loc.length
    if run:
        yield start, end, run


def _tree_references(tree_id: str, raw: bytes) -> Iterator[tuple]:
    """(subtree id or None, content ids) of each entry of a tree blob."""
    try:
        nodes = gojson.loads(raw)["nodes"] or []
        for node in nodes:
            yield node.get("subtree"), node.get("content") or ()
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise IntegrityError(f"tree {tree_id[:8]} is damaged: {exc}") from None
