"""Copying the blobs still needed out of the packs to repack into new packs.

A blob is read from its pack, decrypted and checked against its id, then stored again: the
sealed bytes as they were (same key), or compressed and sealed anew when it was stored
uncompressed in a format 2 repository (restic compresses every blob it repacks there).
The new packs are written before prune deletes anything; packs are read ahead in threads
(decryption runs without the GIL) while the new packs are filled.
"""
from concurrent.futures import ThreadPoolExecutor
from typing import Dict, List, Set

from ...backend.base import BackendNotFound, BackendShortRead
from ...errors import IntegrityError, RestiqueError
from ...repository import compact_index, compression
from ...repository.blob_store import BlobStore
from ...repository.index import BlobLocation, MasterIndex
from ...repository.pack import PackEntry
from .report import Counter

_READ_AHEAD = 1  # packs read (in a thread) while the blobs of the previous one are stored: bounds memory


def repack_packs(repo, pack_entries: Dict[str, List[PackEntry]], packs: Set[str],
                 keep_blobs: Dict[str, Set[str]], counter: Counter) -> Dict[str, compact_index.Compact]:
    """Copy the blobs of keep_blobs found in packs into new packs, removing each from
    keep_blobs as it is copied. Returns the new packs' entries (compact_index's form), which
    no index file lists yet (as restic, prune indexes them with the rest: until then an
    interruption leaves only unreferenced packs)."""
    new_packs: Dict[str, compact_index.Compact] = {}

    def collect_index(kind, raw: bytes) -> str:  # instead of writing the new packs' index
        # kept compactly until the index is rewritten: orjson's objects, then tuples, for the
        # 60,000 blobs of one file made prune's peak memory
        new_packs.update(compact_index.listed_packs(raw))
        return ""

    store = BlobStore(repo.backend, repo.key, MasterIndex(), repo.blobs.level, collect_index,
                      repo.blobs.pack_size, repo.blobs.tree_level)
    compress = _compression_levels(repo)
    jobs = []
    for pack_id in sorted(packs):
        wanted = [e for e in pack_entries[pack_id] if e.id in keep_blobs[e.type]]
        jobs.append((pack_id, sorted(wanted, key=lambda e: e.offset)))
    try:
        with ThreadPoolExecutor(max_workers=_READ_AHEAD) as pool:
            pending = []
            for job in jobs:
                pending.append(pool.submit(_read_blobs, repo, store, job[0], job[1], compress))
                if len(pending) > _READ_AHEAD:
                    _store_blobs(store, pending.pop(0).result(), keep_blobs, counter)
            for future in pending:
                _store_blobs(store, future.result(), keep_blobs, counter)
        store.flush()
    finally:
        store.close()
    return new_packs


def _store_blobs(store: BlobStore, blobs, keep_blobs: Dict[str, Set[str]], counter: Counter) -> None:
    for entry, sealed, uncompressed_length in blobs:
        ids = keep_blobs[entry.type]
        if entry.id in ids:  # not yet copied from another pack
            store.add_sealed(entry.type, entry.id, sealed, uncompressed_length)
            ids.discard(entry.id)
    counter.add()


def _read_blobs(repo, store: BlobStore, pack_id: str, entries: List[PackEntry], compress: Dict[str, int]):
    """[(entry, sealed bytes, uncompressed length)] of the wanted blobs of one pack, each
    checked against its id; IntegrityError naming the pack when one is damaged."""
    if not entries:
        return []
    start = entries[0].offset
    end = max(e.offset + e.length for e in entries)
    try:
        span = memoryview(repo.load_pack(pack_id, start, end - start))
    except BackendNotFound:
        raise _damaged(pack_id, "the pack file is missing") from None
    except BackendShortRead:
        raise _damaged(pack_id, "the pack file is truncated") from None
    out = []
    for e in entries:
        sealed = span[e.offset - start:e.offset - start + e.length]
        location = BlobLocation(pack_id, e.offset, e.length, e.uncompressed_length)
        try:
            plain = store.decode(e.id, sealed, location)
        except RestiqueError as exc:
            raise _damaged(pack_id, str(exc)) from None
        level = compress.get(e.type)
        if level and not e.uncompressed_length and plain:
            out.append((e, _seal_compressed(repo.key, plain, level), len(plain)))
        elif e.type == "data":  # copied into a pack buffer when stored: no copy of its own
            out.append((e, sealed, e.uncompressed_length))
        else:  # tree packs keep their blobs' own bytes until written: not a view of the span
            out.append((e, bytes(sealed), e.uncompressed_length))
    return out


def _compression_levels(repo) -> Dict[str, int]:
    """zstd level per blob type for the uncompressed blobs of a format 2 repository: data
    blobs unless --compression off, tree blobs always (as restic stores them)."""
    if repo.config.version < 2:
        return {}
    levels = {"tree": repo.blobs.level or compression.LEVELS["auto"]}
    if repo.blobs.level:
        levels["data"] = repo.blobs.level
    return levels


def _seal_compressed(key, plain: bytes, level: int) -> bytes:
    """The blob compressed even where that does not save space (a tiny tree): a pack with an
    uncompressed tree would otherwise be repacked by every prune, restic's and ours."""
    sealed = key.seal(compression.compress(plain, level))
    if key.open(sealed, len(plain)) != plain:
        raise IntegrityError("compressing a blob for repacking failed: it does not decode to itself")
    return sealed


def _damaged(pack_id: str, detail: str) -> IntegrityError:
    return IntegrityError(f"pack {pack_id} is damaged ({detail}): prune stopped before deleting "
                          f"anything; run 'restic repair packs {pack_id}' and 'restic repair snapshots --forget'")
