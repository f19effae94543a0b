"""The places taken in a pack buffer by parts not yet written to their pack's file.

A data pack's blobs are sealed into its buffer and written to the pack's file in steps; a place
written is taken again by the next blobs, the first free place first, so that the buffer's
memory is only ever as large as the parts not yet written once were (repository.pack). The
next pack goes on in the same buffer while the last parts of the one before are still being
sealed and written: its places are taken from the same BufferPlaces.
"""
import bisect
import threading
from typing import List, Tuple


class BufferPlaces:
    """Disjoint places [start, end) in order, neighbours as one; lock guards them."""

    def __init__(self):
        self.taken: List[List[int]] = []
        self.lock = threading.Lock()

    def first_free(self, length: int, lead: int, align: int, room: int) -> Tuple[int, int]:
        """(the first free place of length bytes below room whose start is lead past a multiple
        of align, or -1; where the free room there ends). Under lock."""
        free_from = 0
        for start, end in self.taken:
            at = free_from + (lead - free_from) % align
            if at + length <= start:
                return at, start
            free_from = end
        at = free_from + (lead - free_from) % align
        return (at if at + length <= room else -1), room

    def take(self, start: int, end: int) -> None:
        take(self.taken, start, end)

    def free(self, start: int, end: int) -> None:
        free(self.taken, start, end)


def take(taken: List[List[int]], start: int, end: int) -> None:
    """Add [start, end), free until now, to taken (disjoint places in order, neighbours as one)."""
    i = bisect.bisect_left(taken, start, key=_first)
    if i > 0 and taken[i - 1][1] == start:
        i -= 1
        taken[i][1] = end
    else:
        taken.insert(i, [start, end])
    if i + 1 < len(taken) and taken[i + 1][0] == end:
        taken[i][1] = taken.pop(i + 1)[1]


def free(taken: List[List[int]], start: int, end: int) -> None:
    """Remove [start, end), within one place of taken, from taken."""
    i = bisect.bisect_right(taken, start, key=_first) - 1
    first, last = taken[i]
    pieces = ([[first, start]] if first < start else []) + ([[end, last]] if end < last else [])
    taken[i:i + 1] = pieces


def _first(place: List[int]) -> int:
    return place[0]
