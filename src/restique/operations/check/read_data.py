"""Reading pack files (--read-data, --read-data-subset): each selected pack is read once, in
a few threads, and every blob in it is decrypted, decompressed and hashed (native code and
hashlib, both without the GIL), the whole pack is hashed against its name, and its header
is compared with the index. At most a few packs are in memory at a time."""
import hashlib
import os
import random
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from typing import Dict, List, Optional, Set, Tuple

from ...backend.base import BackendNotFound, BackendShortRead
from ...errors import IntegrityError, RestiqueError
from ...repository.crypto import CiphertextVerificationFailed, IV_SIZE
from ...repository.pack import header_length_from_tail, parse_header
from ...repository.index import IndexEntry
from . import Problem
from .indexed_packs import IndexedPacks
from .structure import expected_header_size

# one pack per core: reads from storage overlap with the other worker's verification;
# each further worker holds another segment and its plaintexts (about 20 MB)
_WORKERS = min(8, os.cpu_count() or 2)
_SEGMENT = 4 << 20  # bytes of a pack read and verified at a time


def packs_to_read(sizes: Dict[str, int], indexed: IndexedPacks,
                  used: Optional[Set[Tuple[str, str]]]) -> Dict[str, int]:
    """Every indexed pack (id -> size), or with used (snapshots were selected) the packs
    holding those blobs."""
    if used is None:
        return dict(sizes)
    return {pack_id: sizes[pack_id] for pack_id in indexed
            if any((e.type, e.id) in used for e in indexed.entries(pack_id))}


def select_packs(packs: Dict[str, int], subset) -> Tuple[Dict[str, int], dict]:
    """The packs a --read-data-subset chooses, as current restic chooses them, and what to
    say about the choice (subset kind, counts, percent, bytes)."""
    info = {"subset": subset.kind if subset else None, "total": len(packs)}
    if subset is None:
        chosen = packs
    elif subset.kind == "group":
        chosen = {p: s for p, s in packs.items() if int(p[:2], 16) % subset.groups == subset.group - 1}
        info.update(group=subset.group, groups=subset.groups)
    elif subset.kind == "percent":
        chosen = _random_share(packs, subset.percent)
        info.update(percent=subset.percent)
    else:
        total = sum(packs.values())
        wanted = min(subset.size, total)
        percent = wanted / total * 100.0 if total else 100.0
        chosen = _random_share(packs, percent) if total else packs
        info.update(subset_size=wanted, percent=percent)
    info["selected"] = len(chosen)
    return dict(sorted(chosen.items())), info


def _random_share(packs: Dict[str, int], percent: float) -> Dict[str, int]:
    count = int(len(packs) * (percent / 100.0))
    if packs and count < 1:
        count = 1
    return {p: packs[p] for p in random.sample(sorted(packs), count)}


def read_packs(repo, indexed: IndexedPacks, selected: Dict[str, int],
               report, progress) -> None:
    """Verify each selected pack; a damaged one is reported as one pack_data problem listing
    its errors, one that cannot be read at all as pack_unreadable."""
    total = len(selected)
    progress(0, total)
    queue = iter(selected.items())
    done = 0
    with ThreadPoolExecutor(_WORKERS, thread_name_prefix="check-read") as pool:
        running = set()
        while True:
            while len(running) < _WORKERS:
                item = next(queue, None)
                if item is None:
                    break
                pack_id, size = item
                running.add(pool.submit(_verify, repo, pack_id, indexed.entries(pack_id), size))
            if not running:
                break
            finished, running = wait(running, return_when=FIRST_COMPLETED)
            for future in finished:
                problem = future.result()
                if problem is not None:
                    report(problem)
                done += 1
                progress(done, total)
    progress(total, total, True)


def _verify(repo, pack_id: str, entries: List[IndexEntry], size: int):
    """None if the pack is sound, else the Problem describing it."""
    try:
        errors = verify_pack(repo, pack_id, entries, size)
    except (BackendNotFound, OSError) as exc:
        return Problem("pack_unreadable", f"pack {pack_id}: download error: {exc}", pack_id)
    if not errors:
        return None
    return Problem("pack_data", f"pack {pack_id} contains {len(errors)} errors: [{' '.join(errors)}]",
                    pack_id, details=errors)


def verify_pack(repo, pack_id: str, entries: List[IndexEntry], size: int) -> List[str]:
    """The errors of one pack (restic's words), reading it once, front to back, a segment
    at a time: the index entries are contiguous, each blob opens and hashes to its id, the
    pack hashes to pack_id, and the header lists exactly the blobs the index places here."""
    if not entries:
        return ["pack is empty or not indexed"]
    entries = sorted(entries, key=lambda e: e.offset)
    errors: List[str] = []
    end = 0
    for e in entries:
        if e.offset != end:
            errors.append("index for pack contains gaps / overlapping blobs")
            break
        end = e.offset + e.length
    digest = hashlib.sha256()
    pos = 0
    for group in _segments(entries):
        stop = max(e.offset + e.length for e in group)
        data = _load_range(repo, pack_id, pos, stop - pos, repo.load_pack_view)
        digest.update(data)
        errors += _check_blobs(repo.key, pack_id, group, memoryview(data), pos)
        if pos + len(data) < stop:
            return errors + ["partial download error: unexpected EOF"]
        pos = stop
    tail = _load_range(repo, pack_id, pos, size - pos) if size > pos else b""
    digest.update(tail)
    if pos + len(tail) < size:
        return errors + ["partial download error: unexpected EOF"]
    if digest.hexdigest() != pack_id:
        return errors + [f"unexpected pack id {digest.hexdigest()}"]
    return errors + _check_header(repo.key, entries, tail, size)


def _segments(entries: List[IndexEntry]):
    """Runs of blobs to read with one call: about _SEGMENT bytes each (one larger blob alone),
    which bounds the memory a pack takes however large it is."""
    group: List[IndexEntry] = []
    start = entries[0].offset if entries else 0
    for e in entries:
        if group and e.offset + e.length - start > _SEGMENT:
            yield group
            group, start = [], e.offset
        group.append(e)
    if group:
        yield group


def _load_range(repo, pack_id: str, offset: int, length: int, load=None) -> bytes:
    """length bytes from offset, or what there is when the pack is shorter. load: how the
    whole range is read (a view of the file, for the blobs: read once, no copy)."""
    try:
        return (load or repo.load_pack)(pack_id, offset, length)
    except BackendShortRead:
        try:
            return repo.load_pack(pack_id, offset)
        except BackendShortRead:
            return b""


def _check_blobs(key, pack_id: str, entries: List[IndexEntry], data: memoryview, base: int) -> List[str]:
    """Open and hash each blob of entries found in data (which starts at pack offset base)."""
    errors = []
    for e in entries:
        start = e.offset - base
        if start < 0 or start + e.length > len(data):
            if start < 0:  # overlaps the previous segment: the index is wrong, as reported
                continue
            break  # cut off: reported as a partial read
        handle = f"<{e.type}/{e.id[:8]}>"
        if e.length <= IV_SIZE:
            errors.append(f"blob {e.id}: invalid blob length {e.length}")
            continue
        try:
            plain = key.open(data[start:start + e.length], e.uncompressed_length)
        except CiphertextVerificationFailed as exc:
            errors.append(f"blob {e.id}: decrypting blob {handle} from pack {pack_id} failed: {exc}")
            continue
        except IntegrityError as exc:
            errors.append(f"blob {e.id}: decompressing blob {handle} from pack {pack_id} failed: {exc}")
            continue
        digest = hashlib.sha256(plain).hexdigest()
        if digest != e.id:
            errors.append(f"blob {e.id}: read blob {handle} from pack {pack_id}: wrong data returned, hash is {digest}")
    return errors


def _check_header(key, entries: List[IndexEntry], tail: bytes, size: int) -> List[str]:
    """The header (at the end of tail, the bytes after the last indexed blob) against the index."""
    try:
        header_length = header_length_from_tail(tail, size)
        if header_length + 4 > len(tail):
            raise IntegrityError(f"header of {header_length} bytes overlaps the indexed blobs")
        listed = parse_header(key, tail[len(tail) - 4 - header_length:len(tail) - 4], size)
    except RestiqueError as exc:
        return [str(exc)]
    errors = []
    want = expected_header_size(entries)
    got = header_length + 4
    if want != got:
        errors.append(f"pack header size does not match, want {want}, got {got}")
    known = set(entries)
    for blob in listed:
        if (blob.type, blob.id, blob.offset, blob.length, blob.uncompressed_length) not in known:
            errors.append(f"blob {blob.id} is not contained in index or position is incorrect")
    return errors
