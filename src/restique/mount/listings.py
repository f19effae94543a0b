"""Directory listings as readdirplus sends them: kept for the folders inside snapshots (they
never change), their subfolders' trees read one level ahead.

When the kernel first lists a folder, the trees of its subfolders are read in a background
thread, a batch at a time, first subfolder first, so a depth-first walker (`find`, `cp -r`,
a file manager) finds the next folder's tree at hand. The listings are made by the thread
reading the requests: ahead, while it waits for the next request (the walker is busy with
the last answer then), or when asked for. No thread hand-over: a busy thread holding the
interpreter lock delays the request reader by up to Python's switch interval, 5 ms, each
time, more than making a listing takes. Only folders the kernel lists start a read-ahead,
so it stays one level deep.

The request reader takes no lock the read-ahead thread holds: single dict operations are
atomic; the subfolders to read travel in a queue.
"""
import queue
import threading
from collections import OrderedDict
from itertools import accumulate
from typing import Callable, Dict, List, Optional, Tuple

DOTS = 2  # `.` and `..` come first in every listing


class Listing:
    """One folder as readdirplus sends it, packed once and never changed: its records (`.`
    and `..` first) in one string with where each ends; then, for its entries alone, their
    inode numbers in order, the path of each inode (the kernel asks by inode next), the
    subfolders' paths last first (the read-ahead's stack order), and whether it lies above
    the snapshots (its entries change with new snapshots)."""

    __slots__ = ("data", "ends", "inodes", "path_of", "subfolders", "virtual")

    def __init__(self, records: List[bytes], inodes: List[int], path_of: Dict[int, str], subfolders: List[str],
                 virtual: bool = False):
        self.data = b"".join(records)
        self.ends = list(accumulate(map(len, records)))
        self.inodes = inodes
        self.path_of = path_of
        self.subfolders = subfolders
        self.virtual = virtual

    def __len__(self) -> int:
        return len(self.inodes)


MakeRows = Callable[[str], Tuple[Listing, bool]]  # path -> (listing, whether it can be kept)
Preload = Callable[[List[str]], None]  # read the trees of these folders, together

ROWS_KEPT = 100_000  # entries of listed snapshot folders kept
AHEAD_WANTED = 2_000  # subfolders waiting to be read ahead; the oldest are dropped
PRELOAD_BATCH = 64  # subfolders next in line whose trees are read together
UNREADY_TRIES = 16  # requests answered while a subfolder's tree is not at hand, before it is skipped


class _Kept:
    __slots__ = ("rows", "ahead_started")

    def __init__(self, rows: Listing):
        self.rows = rows
        self.ahead_started = False


class Listings:
    def __init__(self, make_rows: MakeRows, rows_kept: int = ROWS_KEPT, preload: Optional[Preload] = None):
        self._make_rows = make_rows
        self._preload = preload
        self._rows_kept = rows_kept
        self._lock = threading.Lock()  # for the threads making listings, never the read-ahead thread
        self._kept: "OrderedDict[str, _Kept]" = OrderedDict()
        self._held = 0
        self._pending: Dict[str, threading.Event] = {}  # listings being made now
        self._asked: "queue.SimpleQueue[Optional[List[str]]]" = queue.SimpleQueue()  # None: closed
        self._thread: Optional[threading.Thread] = None
        self._closed = False
        self._to_make: List[str] = []  # subfolders whose listings to make when idle, a stack
        self._unready = 0  # times the next one's tree was not at hand yet

    def cached(self, path: str) -> Optional[Listing]:
        """The kept listing of path (and its subfolders are read ahead), or None; never blocks."""
        kept = self._kept.get(path)
        if kept is None:
            return None
        try:
            self._kept.move_to_end(path)
        except KeyError:  # dropped just now: still good to answer with
            pass
        if not kept.ahead_started:
            kept.ahead_started = True  # two callers at once both asking is harmless
            self._read_ahead(kept.rows)
        return kept.rows

    def get(self, path: str, wait: bool = True) -> Optional[Listing]:
        """The listing of path: kept, being made by another thread (waited for; None
        without wait), or made now."""
        return self._get(path, wait, read_ahead=True)

    def make_ahead(self, ready: Callable[[str], bool]) -> bool:
        """Make the listing of the next subfolder a walker will ask for, if ready(path) says
        its tree is at hand: work for the request reader while it waits for requests. False
        when there is nothing to do now. The listing is kept without reading further ahead
        (that starts when it is asked for)."""
        to_make = self._to_make
        while to_make:
            path = to_make[-1]
            if path in self._kept or path in self._pending:
                to_make.pop()
                continue
            if not ready(path):
                self._unready += 1
                if self._unready < UNREADY_TRIES:
                    return False  # its tree is on its way: asked again after the next request
                to_make.pop()
                self._unready = 0
                continue
            to_make.pop()
            self._unready = 0
            self._get(path, False, read_ahead=False)
            return True
        return False

    @property
    def ahead_waiting(self) -> bool:
        return bool(self._to_make)

    def _get(self, path: str, wait: bool, read_ahead: bool) -> Optional[Listing]:
        while True:
            if read_ahead:
                rows = self.cached(path)
            else:
                kept = self._kept.get(path)
                rows = kept.rows if kept is not None else None
            if rows is not None:
                return rows
            with self._lock:
                event = self._pending.get(path)
                mine = event is None
                if mine:
                    event = self._pending[path] = threading.Event()
            if mine:
                break
            if not wait:
                return None
            event.wait()  # then kept, or failed there: made here on the next turn
        try:
            rows, keep = self._make_rows(path)
            if keep:
                self._keep(path, rows).ahead_started = read_ahead
        finally:
            self._done(path, event)  # after keeping: a waiter then finds the rows
        if keep and read_ahead:
            self._read_ahead(rows)
        return rows

    def close(self) -> None:
        self._closed = True
        self._asked.put(None)

    def _done(self, path: str, event: threading.Event) -> None:
        with self._lock:
            self._pending.pop(path, None)
        event.set()

    def _keep(self, path: str, rows: Listing) -> _Kept:
        kept = _Kept(rows)
        with self._lock:
            old = self._kept.pop(path, None)
            self._held -= len(old.rows) if old is not None else 0
            self._kept[path] = kept
            self._held += len(rows)
            while self._held > self._rows_kept and len(self._kept) > 1:
                _, dropped = self._kept.popitem(last=False)
                self._held -= len(dropped.rows)
        return kept

    def _read_ahead(self, rows: Listing) -> None:
        if not rows.subfolders or self._closed or self._preload is None:
            return
        self._asked.put(rows.subfolders)
        self._to_make.extend(rows.subfolders)
        del self._to_make[:-AHEAD_WANTED]
        if self._thread is None:
            with self._lock:  # once
                if self._thread is None:
                    self._thread = threading.Thread(target=self._read_ahead_loop, name="mount-read-ahead",
                                                    daemon=True)
                    self._thread.start()

    def _read_ahead_loop(self) -> None:
        wanted: List[str] = []  # a stack: the last subfolder asked for is read first
        while True:
            asked = [self._asked.get()] if not wanted else []
            while True:  # everything asked for meanwhile, in order
                try:
                    asked.append(self._asked.get_nowait())
                except queue.Empty:
                    break
            for subfolders in asked:
                if subfolders is None:
                    return
                wanted.extend(subfolders)
            del wanted[:-AHEAD_WANTED]
            path = wanted.pop()
            if path in self._kept:
                continue
            try:  # returns at once when path's tree was read with an earlier batch
                self._preload([path, *wanted[-PRELOAD_BATCH:]])
            except Exception:  # noqa: BLE001 - the listing, when asked for, reports it
                pass
