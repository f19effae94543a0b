"""Salvaging damaged pack files (`repair packs`, current restic).

Every blob of a named pack that still decodes to its id is written into a new pack (unless an
intact pack elsewhere already holds it); the index files that list the damaged packs are
replaced by ones that do not; only then are the damaged packs deleted. The blobs lost are
reported; `repair snapshots --forget` removes them from the snapshots.

Beyond restic: a pack the index does not list is salvaged from its own header (restic deletes
it unread), and an id that is neither stored nor indexed is refused before anything changes.
"""
import os
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence

from ..backend.base import BackendError, FileType
from ..errors import IntegrityError, NotFound, RestiqueError
from ..repository.blob_store import BlobStore
from ..repository.index import BlobLocation, MasterIndex
from ..repository.index_rewrite import load_index_files, write_index_files
from ..repository.pack import PackEntry, header_length_from_tail, parse_header
from ..repository.pack_files import list_pack_sizes
from .repair_index import MaintenanceReport, remove_files


@dataclass
class RepairPacksOptions:
    backup_dir: Optional[str] = None  # where to save a copy of each damaged pack first


@dataclass
class RepairPacksResult:
    salvaged: int = 0  # blobs written into new packs
    already_stored: int = 0  # intact elsewhere, not written again
    lost: List[PackEntry] = field(default_factory=list)  # blobs that could not be read
    new_index_ids: List[str] = field(default_factory=list)
    removed_index_ids: List[str] = field(default_factory=list)
    removed_packs: List[str] = field(default_factory=list)


def repair_packs(repo, pack_ids: Sequence[str], options: Optional[RepairPacksOptions] = None,
                 report: Optional[MaintenanceReport] = None) -> RepairPacksResult:
    """Salvage what is readable of the given packs, then drop them from the index and the
    repository. The caller holds the exclusive lock."""
    options = options or RepairPacksOptions()
    report = report or MaintenanceReport()
    damaged = list(dict.fromkeys(pack_ids))
    index_files = load_index_files(repo)
    stored = list_pack_sizes(repo)
    indexed = _entries_by_pack(index_files, set(damaged))
    unknown = [p for p in damaged if p not in stored and p not in indexed]
    if unknown:
        raise NotFound(f"pack {unknown[0]} is neither in the repository nor in its index")
    if options.backup_dir is not None:
        report.message("saving backup copies of pack files to current folder")
        for pack_id in damaged:
            _save_backup_copy(repo, pack_id, options.backup_dir, report)

    result = RepairPacksResult()
    report.message("salvaging intact data from specified pack files")
    counter = report.counter("pack files", len(damaged))
    store = _store_outside(repo, index_files, set(damaged))
    try:
        for pack_id in damaged:
            _salvage_pack(repo, store, pack_id, indexed.get(pack_id, []), stored.get(pack_id), report, result)
            counter.add(1)
        store.flush()
    finally:
        store.close()
    counter.done()

    result.new_index_ids, result.removed_index_ids = _drop_from_index(repo, index_files, set(damaged), report)
    report.message("removing salvaged pack files")
    present = [p for p in damaged if p in stored]
    failed = remove_files(repo, FileType.PACK, present, report.counter("files deleted", len(present)),
                          report, stop_on_error=False)
    result.removed_packs = [p for p in present if p not in failed]
    return result


def _entries_by_pack(index_files, wanted) -> Dict[str, List[PackEntry]]:
    found: Dict[str, Dict[PackEntry, None]] = {}
    for index_file in index_files.values():
        for pack_id, entries in index_file.packs.items():
            if pack_id in wanted:
                found.setdefault(pack_id, {}).update(dict.fromkeys(entries))
    return {pack_id: list(entries) for pack_id, entries in found.items()}


def _save_backup_copy(repo, pack_id: str, directory: str, report: MaintenanceReport) -> None:
    try:
        raw = repo.load_pack(pack_id)
    except BackendError as exc:
        report.warning(f"will remove packfile {pack_id} due to failed download: {exc}")
        return
    path = os.path.join(directory, "pack-" + pack_id)
    try:  # never overwrite an earlier copy: it may be the better one
        with open(path, "xb") as f:
            f.write(raw)
    except OSError as exc:
        raise RestiqueError(f"open {path}: {exc.strerror or exc}") from None


def _store_outside(repo, index_files, damaged) -> BlobStore:
    """A blob store whose index knows every blob except those only the damaged packs hold,
    so a salvaged blob is written again only where no intact copy exists."""
    intact = MasterIndex()
    for index_file in index_files.values():
        for pack_id, entries in index_file.packs.items():
            if pack_id not in damaged:
                intact.add_pack(pack_id, entries)
    base = repo.blobs
    return BlobStore(repo.backend, repo.key, intact, base.level, repo.save_unpacked, base.pack_size,
                     base.tree_level)


def _salvage_pack(repo, store: BlobStore, pack_id: str, indexed: List[PackEntry], size: Optional[int],
                  report: MaintenanceReport, result: RepairPacksResult) -> None:
    raw = b""
    if size is not None:
        try:
            raw = repo.load_pack(pack_id)
        except BackendError as exc:
            report.warning(f"failed to load pack file {pack_id}: {exc}")
    header = _header_entries(repo, raw)
    if indexed and header is not None and set(header) != set(indexed):
        report.warning(f"repairing incomplete index entry for pack {pack_id}")
    candidates = list(dict.fromkeys(indexed + (header or [])))
    if not candidates:
        report.warning(f"no blobs found for pack {pack_id}")
    saved = set()
    failures = {}
    for entry in candidates:
        key = (entry.type, entry.id)
        if key in saved:
            continue  # listed twice (index and header disagree): one good copy is enough
        try:
            sealed = _blob_bytes(raw, entry, size is not None)
            location = BlobLocation(pack_id, entry.offset, entry.length, entry.uncompressed_length)
            repo.blobs.decode(entry.id, sealed, location)
        except IntegrityError as exc:
            failures.setdefault(key, (entry, exc))
            continue
        saved.add(key)
        new, _ = store.add_sealed(entry.type, entry.id, sealed, entry.uncompressed_length)
        if new:
            result.salvaged += 1
        else:
            result.already_stored += 1
    for key, (entry, exc) in failures.items():
        if key not in saved:
            report.warning(f"failed to load blob {entry.id}: {exc}")
            result.lost.append(entry)


def _header_entries(repo, raw: bytes) -> Optional[List[PackEntry]]:
    """The blobs the pack's own header lists, None when the header is unreadable."""
    try:
        length = header_length_from_tail(raw[-4:], len(raw))
        return parse_header(repo.key, raw[len(raw) - 4 - length:len(raw) - 4], len(raw))
    except IntegrityError:
        return None


def _blob_bytes(raw: bytes, entry: PackEntry, stored: bool) -> bytes:
    sealed = raw[entry.offset:entry.offset + entry.length]
    if len(sealed) != entry.length:
        raise IntegrityError("the pack file is truncated" if stored else "the pack file is missing")
    return sealed


def _drop_from_index(repo, index_files, damaged, report: MaintenanceReport):
    """Replace the index files that list a damaged pack by ones that do not, then delete
    them. Returns (new index ids, removed index ids)."""
    report.message("rebuilding index")
    counter = report.counter("indexes processed", len(index_files))
    affected = [i for i, f in index_files.items() if damaged & set(f.packs)]
    kept: Dict[str, Dict[PackEntry, None]] = {}
    for index_id in affected:
        for pack_id, entries in index_files[index_id].packs.items():
            if pack_id not in damaged:
                kept.setdefault(pack_id, {}).update(dict.fromkeys(entries))
    packs = {pack_id: list(entries) for pack_id, entries in kept.items()}
    new_ids = write_index_files(repo, packs, affected) if affected else []
    counter.add(len(index_files))
    counter.done()
    remove_files(repo, FileType.INDEX, [i for i in affected if i not in new_ids],
                 report.counter("old indexes deleted", len(affected)), report)
    return new_ids, affected
