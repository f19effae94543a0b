"""Tree blobs loaded many at a time, grouped by the pack that holds them: the part of each
pack that holds the wanted blobs is read once and the blobs are decoded from it. A snapshot's
trees lie side by side in a few packs, so this replaces a file open and read per tree (most
of the time of walking every tree of a repository) by a few reads.

Only the good case is served here: a tree the index does not know, a pack part that cannot
be read or a blob that does not decode raise LookupError, and callers then take their
one-tree-at-a-time path, which reports the problem in its own words.
"""
from typing import Callable, Dict, Iterable, Iterator, List, Optional, Tuple

from ...repository.index import BlobLocation

Locate = Callable[[str], Optional[BlobLocation]]

_MAX_SPAN = 32 * 1024 * 1024  # largest part of a pack read at once
_MIN_SHARED = 2  # a pack part is read for this many wanted blobs or more, else blob by blob


class TreeBlobsUnavailable(LookupError):
    """Some tree of the batch cannot be served here (see the module doc)."""


def load_trees(repo, tree_ids: Iterable[str], locate: Locate) -> Iterator[Tuple[str, bytes]]:
    """(tree id, plaintext) of every tree id, pack by pack (not in the order given)."""
    by_pack: Dict[str, List[Tuple[int, int, str, BlobLocation]]] = {}
    for tree_id in tree_ids:
        loc = locate(tree_id)
        if loc is None:
            raise TreeBlobsUnavailable(tree_id)
        by_pack.setdefault(loc.pack_id, []).append((loc.offset, loc.length, tree_id, loc))
    blobs = repo.blobs
    for pack_id, wanted in by_pack.items():
        wanted.sort()
        start = wanted[0][0]
        end = max(offset + length for offset, length, _, _ in wanted)
        try:
            if len(wanted) < _MIN_SHARED or end - start > _MAX_SPAN:
                for _, _, tree_id, loc in wanted:
                    yield tree_id, blobs.load("tree", tree_id, loc)
                continue
            part = repo.load_pack(pack_id, start, end - start)
            if len(part) != end - start:
                raise TreeBlobsUnavailable(pack_id)
            with memoryview(part) as view:
                for offset, length, tree_id, loc in wanted:
                    at = offset - start
                    yield tree_id, blobs.decode(tree_id, view[at:at + length], loc)
        except TreeBlobsUnavailable:
            raise
        except Exception as exc:  # noqa: BLE001 - the one-by-one path reports it properly
            raise TreeBlobsUnavailable(pack_id) from exc
