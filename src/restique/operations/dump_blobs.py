"""File contents for `dump`, in archive order, read ahead in pack ranges.

The data blobs of the next entries are planned a little ahead: blobs stored close together
in one pack (the chunks of a file, the small files of a folder, and the chunks of files a
backup saved side by side, which interleave) become one range read, as restore reads packs
(operations/restorer/pack_reader.py). Worker threads read the next ranges and decrypt and check
their blobs (native code, without the GIL) while the archive is written. The plaintext
bytes read ahead are bounded (from the index's sizes, so compressed blobs count at their
full size), so memory stays flat however large a file or a tree is, and a blob that comes up
again while planned (a file of zeros, hard links next to each other) is read once.

A worker decodes a whole range in one native call that holds no GIL (blob_ranges): blob by
blob, each decryption and hash took the GIL back from the thread writing the archive several
times, which made the readers wait on the writer.
"""
from collections import OrderedDict, deque
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Callable, Deque, Dict, Iterable, Iterator, List, Optional, Tuple, TypeVar

from ..errors import IntegrityError, NotFound, RestiqueError
from . import blob_ranges

T = TypeVar("T")

MAX_READ = 8 * 1024 * 1024  # largest range read (unless one blob is larger)
MAX_GAP = 1024 * 1024  # unneeded bytes between two blobs that are cheaper to read than to skip (a
# backup's savers interleave files in their packs: a quarter of this made three times the reads)
AHEAD_BYTES = 24 * 1024 * 1024  # bytes of planned reads not yet written (in flight: as much)
AHEAD_ENTRIES = 4096  # entries planned ahead (bounds planning for millions of tiny files)
OPEN_RUNS = 2  # packs whose next range read is still being planned
KEEP_BYTES = 32 * 1024 * 1024  # decrypted blobs kept for their next use (compressed, they can be huge)


class _Run:
    """One range read in one pack, and the blobs (id, location) wanted from it in the order
    they were planned."""

    __slots__ = ("pack_id", "start", "end", "blobs", "future", "pending", "plain", "decoded")

    def __init__(self, loc):
        self.pack_id = loc.pack_id
        self.start = loc.offset
        self.end = loc.offset + loc.length
        self.blobs: list = []
        self.future: Optional[Future] = None  # of the sealed bytes, once submitted
        self.pending = 0  # uses of its blobs not yet written
        self.plain = 0  # plaintext bytes of its blobs: what it holds once decoded
        self.decoded: Optional[list] = None  # the future's result, once taken

    @property
    def size(self) -> int:
        return self.end - self.start

    def grown_by(self, loc) -> Optional[int]:
        """How many bytes the read grows by to take loc, or None if it should not."""
        start, end = min(self.start, loc.offset), max(self.end, loc.offset + loc.length)
        if (end - start > MAX_READ or self.plain + loc.size > MAX_READ or loc.offset > self.end + MAX_GAP
                or loc.offset + loc.length < self.start - MAX_GAP):
            return None
        return end - start - self.size

    def add(self, blob_id: str, loc) -> int:
        self.start = min(self.start, loc.offset)
        self.end = max(self.end, loc.offset + loc.length)
        self.blobs.append((blob_id, loc))
        self.plain += loc.size
        return len(self.blobs) - 1


class _Slot:
    """One planned blob: where it is read, how many entries' chunks still use it, and its
    plaintext while more than one does (or the error to raise)."""

    __slots__ = ("blob_id", "run", "index", "uses", "data")

    def __init__(self, blob_id: str, run: Optional[_Run], index: int = 0, data=None):
        self.blob_id, self.run, self.index, self.uses, self.data = blob_id, run, index, 0, data


class PackBatchedReader:
    """contents(entries, content_of) yields (entry, chunks) in order; chunks yields the
    plaintext blobs of content_of(entry) and must be used up before the next entry."""

    def __init__(self, repo, workers: int = 2, ahead_bytes: int = AHEAD_BYTES):
        self.repo = repo
        self.index = repo.load_index()
        self.workers = workers
        self.ahead_bytes = ahead_bytes
        self._planned: Dict[str, _Slot] = {}  # blob id -> its slot, until its last use
        self._open: "OrderedDict[str, _Run]" = OrderedDict()  # runs still growing, by pack
        self._waiting: Deque[_Run] = deque()  # closed runs not yet submitted
        self._in_flight = 0  # bytes of submitted runs not yet used up
        self._planned_bytes = 0  # bytes of planned runs not yet used up
        self._kept = 0  # bytes of decrypted blobs kept for a later use
        self._pool: Optional[ThreadPoolExecutor] = None

    def contents(self, entries: Iterable[T], content_of: Callable[[T], Optional[List[str]]]
                 ) -> Iterator[Tuple[T, Iterator[bytes]]]:
        self._pool = ThreadPoolExecutor(self.workers, thread_name_prefix="dump")
        try:
            window: Deque[Tuple[T, List[_Slot]]] = deque()
            source = iter(entries)
            while True:
                while source is not None and (not window or (len(window) < AHEAD_ENTRIES
                                                             and self._planned_bytes < self.ahead_bytes)):
                    entry = next(source, _END)
                    if entry is _END:
                        source = None
                        for run in list(self._open.values()):
                            self._close(run)
                    else:
                        window.append((entry, self._plan(content_of(entry) or ())))
                if not window:
                    return
                entry, slots = window.popleft()
                yield entry, self._chunks(slots)
        finally:
            pool, self._pool = self._pool, None
            pool.shutdown(wait=True, cancel_futures=True)

    # --- planning ---
    def _plan(self, content: Iterable[str]) -> List[_Slot]:
        slots = []
        planned = self._planned
        for blob_id in content:
            slot = planned.get(blob_id)
            if slot is None:
                slot = planned[blob_id] = self._plan_read(blob_id)
            slot.uses += 1
            if slot.run is not None:
                slot.run.pending += 1
            slots.append(slot)
        if self._waiting:
            self._submit()
        return slots

    def _plan_read(self, blob_id: str) -> _Slot:
        loc = self.index.lookup("data", blob_id)
        if loc is None:
            return _Slot(blob_id, None, data=NotFound(f"data blob {blob_id} not found in the index"))
        run = self._open.get(loc.pack_id)
        grown = run.grown_by(loc) if run is not None else None
        if grown is None:
            if run is not None:
                self._close(run)
            run = self._open[loc.pack_id] = _Run(loc)
            grown = run.size
            if len(self._open) > OPEN_RUNS:  # the pack least recently added to is done
                self._close(next(iter(self._open.values())))
        else:
            self._open.move_to_end(loc.pack_id)
        self._planned_bytes += grown
        return _Slot(blob_id, run, run.add(blob_id, loc))

    def _close(self, run: _Run) -> None:
        if self._open.get(run.pack_id) is run:
            del self._open[run.pack_id]
            self._waiting.append(run)
            self._submit()

    def _submit(self, force: Optional[_Run] = None) -> None:
        """Start reading waiting runs while the bytes in flight allow, and up to force
        (a run needed now) in any case."""
        while self._waiting and (self._in_flight < self.ahead_bytes or self._in_flight == 0 or force):
            run = self._waiting.popleft()
            self._in_flight += run.plain
            run.future = self._pool.submit(self._read, run)
            if run is force:
                force = None

    # --- reading (worker threads) ---
    def _read(self, run: _Run) -> List[object]:
        """The run's blobs decrypted and checked, each its plaintext or the error it gave."""
        key = getattr(self.repo, "key", None)
        if key is not None:
            try:
                return blob_ranges.decode(key, self._read_range(run), run.start, run.blobs)
            except ValueError:  # a short range: blob by blob, for each blob's own error
                pass
        sealed = self._read_range(run)
        decoded: List[object] = []
        with memoryview(sealed) as view:
            for blob_id, loc in run.blobs:
                at = loc.offset - run.start
                try:
                    decoded.append(self.repo.blobs.decode(blob_id, view[at:at + loc.length], loc))
                except RestiqueError as exc:
                    decoded.append(exc)
        return decoded

    def _read_range(self, run: _Run) -> bytes:
        try:
            return self.repo.load_pack(run.pack_id, run.start, run.size)
        except FileNotFoundError:
            raise IntegrityError(f"pack {run.pack_id[:10]} is missing") from None
        except EOFError:
            raise IntegrityError(f"pack {run.pack_id[:10]} is truncated") from None
        except OSError as exc:
            raise RestiqueError(f"reading pack {run.pack_id[:10]}: {exc.strerror or exc}") from None

    # --- writing ---
    def _chunks(self, slots: List[_Slot]) -> Iterator[bytes]:
        """The plaintext of each slot in turn, releasing what its last use held. Written
        out in one loop: it runs once per blob of the archive."""
        planned = self._planned
        for slot in slots:
            data = slot.data
            run = slot.run
            if data is None:
                decoded = run.decoded
                if decoded is None:
                    if run.future is None:  # needed now: stop growing it and read it
                        self._close(run)
                        self._submit(force=run)
                    decoded = run.decoded = run.future.result()
                data = decoded[slot.index]
            slot.uses -= 1
            if not slot.uses:
                if slot.data is not None and not isinstance(slot.data, Exception):
                    self._kept -= len(slot.data)
                slot.data = None
                if planned.get(slot.blob_id) is slot:
                    del planned[slot.blob_id]
            elif slot.data is None and not isinstance(data, Exception) and self._kept + len(data) <= KEEP_BYTES:
                # the next use takes it from here (else decrypts it again); a copy, so that
                # it does not hold on to the rest of its range
                slot.data = data = bytes(data)
                self._kept += len(data)
            if run is not None:
                run.pending -= 1
                if not run.pending:  # used up: let the read go, read further ahead
                    self._in_flight -= run.plain
                    self._planned_bytes -= run.size
                    run.future = _DONE
                    run.decoded = None
                    self._submit()
            if isinstance(data, Exception):
                raise data
            yield data


_END = object()
_DONE: Future = Future()
_DONE.set_result(b"")
