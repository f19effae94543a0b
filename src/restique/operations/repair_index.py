"""Rebuilding the index from the pack files: `repair index` (restic 0.14's `rebuild-index`).

The index entries of packs that still exist with the size the index implies are kept; packs
the index does not know (or whose size differs) are read from their headers; entries of
packs that are gone are dropped. The new index files are written first, naming the old ones
they supersede, and only then are the old files deleted: an interruption leaves both sets,
never a pack without an index entry.

What restic prints along the way goes to a `MaintenanceReport` (messages, warnings, counters);
the other maintenance commands (repair packs, recover) report through the same interface.
"""
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Dict, Iterable, List, Optional, Set, Tuple

from ..backend.base import BackendError, FileType
from ..errors import IntegrityError, RestiqueError
from ..repository.crypto import OVERHEAD
from ..repository.index_rewrite import write_index_files
from ..repository.pack import PackEntry
from ..repository.pack_files import list_pack_sizes, read_pack_header

# a pack's size from its entries: blobs, one header entry each, the sealed header, its length
_HEADER_SIZE = 4 + OVERHEAD
_PLAIN_ENTRY_SIZE = 1 + 4 + 32
_COMPRESSED_ENTRY_SIZE = 1 + 4 + 4 + 32
# pack headers are small reads: enough in flight to hide the latency of a remote backend
HEADER_READERS = 8


class Counter:
    """A progress counter: `add` as work is done, `done` once at the end."""

    def add(self, n: int = 1) -> None:
        pass

    def done(self) -> None:
        pass


class MaintenanceReport:
    """Where a maintenance command reports what restic prints: `message` (stdout, normal
    verbosity), `detail` (stdout with -v), `warning` (stderr) and counters. Does nothing by
    default; the CLI prints."""

    def message(self, text: str) -> None:
        pass

    def detail(self, text: str) -> None:
        pass

    def warning(self, text: str) -> None:
        pass

    def counter(self, unit: str, total: Optional[int]) -> Counter:
        return Counter()


@dataclass
class RepairIndexOptions:
    read_all_packs: bool = False  # ignore the index, read every pack header


@dataclass
class RepairIndexResult:
    packs: int = 0  # packs listed by the new index
    new_index_ids: List[str] = field(default_factory=list)
    removed_index_ids: List[str] = field(default_factory=list)
    invalid_index_ids: List[str] = field(default_factory=list)
    packs_read: List[str] = field(default_factory=list)  # headers read
    missing_packs: List[str] = field(default_factory=list)  # indexed, not stored: dropped
    damaged_packs: List[str] = field(default_factory=list)  # header unreadable: left unindexed


def expected_pack_size(entries: Iterable[PackEntry]) -> int:
    """The size of a pack holding exactly these blobs, as restic computes it."""
    size = _HEADER_SIZE
    for e in entries:
        size += e.length + (_COMPRESSED_ENTRY_SIZE if e.compressed else _PLAIN_ENTRY_SIZE)
    return size


def repair_index(repo, options: Optional[RepairIndexOptions] = None,
                 report: Optional[MaintenanceReport] = None) -> RepairIndexResult:
    """Replace the repository's index files by ones listing exactly the packs it holds.
    The caller holds the exclusive lock."""
    options = options or RepairIndexOptions()
    report = report or MaintenanceReport()
    result = RepairIndexResult()
    if options.read_all_packs:
        indexed: Dict[str, List[PackEntry]] = {}
        old_ids = repo.list_ids(FileType.INDEX)
    else:
        report.message("loading indexes...")
        indexed, old_ids, result.invalid_index_ids = load_indexed_packs(repo, report)
    report.message("getting pack files to read...")
    packs, to_read, result.missing_packs = _compare_with_storage(repo, indexed, report)
    if to_read:
        report.message("reading pack files")
        read, result.damaged_packs = read_pack_headers(repo, to_read, report.counter("packs", len(to_read)))
        for pack_id in result.damaged_packs:
            report.detail(f"skipped incomplete pack file: {pack_id}")
        packs.update(read)
        result.packs_read = sorted(to_read)
    result.packs = len(packs)
    result.new_index_ids = replace_index_files(repo, packs, old_ids, report, len(result.damaged_packs))
    result.removed_index_ids = list(old_ids)
    return result


def load_indexed_packs(repo, report: MaintenanceReport) -> Tuple[Dict[str, List[PackEntry]], List[str], List[str]]:
    """(pack id -> its blobs as all index files together list them, every index id, the ids
    of index files that cannot be read). A pack listed by several files (or split across
    them, as restic before 0.10 could write) gets the union of its entries."""
    packs: Dict[str, List[PackEntry]] = {}
    index_ids: List[str] = []
    invalid: List[str] = []
    for index_id in sorted(repo.list_ids(FileType.INDEX)):
        index_ids.append(index_id)
        try:
            index_file = repo.load_index_file(index_id)
        except (IntegrityError, BackendError) as exc:
            report.warning(f"removing invalid index {index_id}: {exc}")
            invalid.append(index_id)
            continue
        for pack_id, blobs in index_file.packs.items():
            known = packs.get(pack_id)
            if known is None:
                packs[pack_id] = blobs
            else:  # rare: merge, keeping each entry once
                packs[pack_id] = list(dict.fromkeys(known + blobs))
    return packs, index_ids, invalid


def _compare_with_storage(repo, indexed: Dict[str, List[PackEntry]], report: MaintenanceReport):
    """(index entries to keep, {pack id: size} of packs to read, ids of missing packs)."""
    keep: Dict[str, List[PackEntry]] = {}
    to_read: Dict[str, int] = {}
    stored = list_pack_sizes(repo)
    for pack_id in sorted(stored):
        size = stored[pack_id]
        entries = indexed.get(pack_id)
        if entries is None:
            report.warning(f"adding pack file to index {pack_id}")
            to_read[pack_id] = size
            continue
        expected = expected_pack_size(entries)
        if expected != size:
            report.warning(f"reindexing pack file {pack_id} with unexpected size {size} instead of {expected}")
            to_read[pack_id] = size
        else:
            keep[pack_id] = entries
    missing = sorted(set(indexed) - set(stored))
    for pack_id in missing:
        report.warning(f"removing not found pack file {pack_id}")
    return keep, to_read, missing


def read_pack_headers(repo, sizes: Dict[str, int], counter: Optional[Counter] = None
                      ) -> Tuple[Dict[str, List[PackEntry]], List[str]]:
    """({pack id: its blobs} of the packs whose header reads, the ids of those whose does
    not), reading several headers at a time."""
    counter = counter or Counter()
    found: Dict[str, List[PackEntry]] = {}
    damaged: List[str] = []

    def read(pack_id: str):
        try:
            return pack_id, read_pack_header(repo, pack_id, sizes[pack_id])
        except (IntegrityError, BackendError):
            return pack_id, None

    with ThreadPoolExecutor(max_workers=HEADER_READERS) as pool:
        for pack_id, entries in pool.map(read, sorted(sizes)):
            if entries is None:
                damaged.append(pack_id)
            elif entries:
                found[pack_id] = entries
            counter.add(1)
    counter.done()
    return found, damaged


def replace_index_files(repo, packs: Dict[str, List[PackEntry]], old_ids: Iterable[str],
                        report: MaintenanceReport, unindexed: int = 0) -> List[str]:
    """Write index files listing exactly `packs` (superseding old_ids), then delete old_ids.
    Returns the new index ids. `unindexed` packs were read but left out: restic's counter
    includes them in its total, so that it stops short of 100%."""
    old_ids = list(old_ids)
    report.message("rebuilding index")
    counter = report.counter("packs processed", len(packs) + unindexed)
    new_ids = write_index_files(repo, {pack_id: packs[pack_id] for pack_id in sorted(packs)}, old_ids)
    counter.add(len(packs))
    counter.done()
    report.message("deleting obsolete index files")
    remove_files(repo, FileType.INDEX, [i for i in old_ids if i not in set(new_ids)],
                 report.counter("files deleted", len(old_ids)), report)
    return new_ids


def remove_files(repo, kind: FileType, ids: List[str], counter: Counter, report: MaintenanceReport,
                 stop_on_error: bool = True) -> Set[str]:
    """Delete files of one kind; a failure is a warning and, with stop_on_error, an error.
    Returns the ids that could not be removed."""
    failed: Set[str] = set()
    for file_id in ids:
        try:
            repo.remove(kind, file_id)
        except (BackendError, OSError) as exc:
            report.warning(f"unable to remove <{kind.label}/{file_id[:10]}> from the repository")
            if stop_on_error:
                raise RestiqueError(f"removing {kind.label} file {file_id[:10]} failed: {exc}") from None
            failed.add(file_id)
            continue
        counter.add(1)
    counter.done()
    return failed
