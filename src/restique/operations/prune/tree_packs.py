"""Tree blobs loaded many at a time, grouped by the pack that holds them: the part of each
pack that holds the wanted blobs is read once and the blobs are decoded from it. A snapshot's
trees lie side by side in a few packs, so this replaces a file open and read per tree (most
of the time of walking every tree of a repository) by a few reads.

Only the good case is served here: a tree the index does not know, a pack part that cannot
be read or a blob that does not decode raise LookupError, and callers then take their
one-tree-at-a-time path, which reports the problem in its own words.
"""
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from itertools import islice
from typing import Callable, Dict, Iterable, Iterator, List, Optional, Tuple

from ...repository.index import BlobLocation

Locate = Callable[[str], Optional[BlobLocation]]
Wanted = List[Tuple[int, int, str, BlobLocation]]  # (offset, length, tree id, location), by offset

_MAX_SPAN = 32 * 1024 * 1024  # largest part of a pack read at once
_MIN_SHARED = 2  # a pack part is read for this many wanted blobs or more, else blob by blob
_PART_BLOBS = 32  # trees a part is cut into: parts are decoded by threads, two at a time
_THREADS = 2  # decryption, decompression and hashing hold no GIL; the caller reads the trees
# parts decoded ahead of the caller: all of a level's parts at once held every tree of the
# level in memory (200 trees of 1,000 files: +100 MB while prune walked them)
_AHEAD = _THREADS + 1


class TreeBlobsUnavailable(LookupError):
    """Some tree of the batch cannot be served here (see the module doc)."""


def load_trees(repo, tree_ids: Iterable[str], locate: Locate) -> Iterator[Tuple[str, bytes]]:
    """(tree id, plaintext) of every tree id, pack by pack (not in the order given). With
    several parts to decode, threads decode the next ones while the caller reads a part's trees."""
    by_pack: Dict[str, Wanted] = {}
    for tree_id in tree_ids:
        loc = locate(tree_id)
        if loc is None:
            raise TreeBlobsUnavailable(tree_id)
        by_pack.setdefault(loc.pack_id, []).append((loc.offset, loc.length, tree_id, loc))
    parts = []
    for pack_id, wanted in by_pack.items():
        wanted.sort()
        parts += [(pack_id, wanted[i:i + _PART_BLOBS]) for i in range(0, len(wanted), _PART_BLOBS)]
    if len(parts) < 2:
        for pack_id, wanted in parts:
            yield from _decoded_part(repo, pack_id, wanted)
        return
    pool = ThreadPoolExecutor(_THREADS, thread_name_prefix="trees")
    try:
        pending = iter(parts)
        futures = deque(pool.submit(_decoded_part, repo, *part) for part in islice(pending, _AHEAD))
        while futures:
            future = futures.popleft()
            part = next(pending, None)
            if part is not None:
                futures.append(pool.submit(_decoded_part, repo, *part))
            yield from future.result()
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def _decoded_part(repo, pack_id: str, wanted: Wanted) -> List[Tuple[str, bytes]]:
    """(tree id, plaintext) of the wanted blobs of one pack, read in one piece when they are
    several and close enough together."""
    blobs = repo.blobs
    start = wanted[0][0]
    end = max(offset + length for offset, length, _, _ in wanted)
    try:
        if len(wanted) < _MIN_SHARED or end - start > _MAX_SPAN:
            return [(tree_id, blobs.load("tree", tree_id, loc)) for _, _, tree_id, loc in wanted]
        part = repo.load_pack(pack_id, start, end - start)
        if len(part) != end - start:
            raise TreeBlobsUnavailable(pack_id)
        with memoryview(part) as view:
            return [(tree_id, blobs.decode(tree_id, view[offset - start:offset - start + length], loc))
                    for offset, length, tree_id, loc in wanted]
    except TreeBlobsUnavailable:
        raise
    except Exception as exc:  # noqa: BLE001 - the one-by-one path reports it properly
        raise TreeBlobsUnavailable(pack_id) from exc
