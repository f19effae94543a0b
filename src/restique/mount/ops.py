"""The FUSE operations over a SnapshotFS: inode numbers to paths, attributes, listings, reads.

SnapshotFS answers in paths; the kernel asks by inode. Every inode handed to the kernel
(lookup, readdirplus) is remembered with a path and a lookup count until the kernel
forgets it.

Each operation has a quick form, answered by the thread reading the requests from what is
at hand (a kept listing, a folder whose tree was read, cached blocks), and a full form that
may read the repository, run in a worker thread so one slow answer does not hold up the
others. A quick form returns None when it needs the full one.

Opening a folder or a file is answered "not implemented": the kernel then opens them
without asking (two requests fewer per folder or file read; it keeps listings and file pages
itself) and asks for a listing or a read by the inode. Listings above the snapshots change with new snapshots: the
kernel is told to drop them when the snapshot list changed.
"""
import errno
import os
import threading
from bisect import bisect_right
from collections import Counter
from typing import Callable, Dict, List, Optional, Tuple

from ..errors import NotFound, RestiqueError
from ..operations.snapshot_fs import FsEntry, NotADirectory, SnapshotFS, path_inode
from . import kernel
from .kernel import Attributes, FuseError
from .listings import DOTS, Listing, Listings

ROOT_INODE = 1
SNAPSHOT_TIMEOUT = 86400  # a snapshot's contents never change: the kernel may keep them a day
VIRTUAL_TIMEOUT = 1  # the directories above the snapshots follow new snapshots
# listings made by the request reader hold at most about this many entries (tens of ms);
# larger ones are made in a worker thread, so other requests are not held up
QUICK_LISTING_ENTRIES = 5000
NO_REPLY = b"no reply"  # forget and interrupt are not answered

Handler = Callable[[int, bytes], Optional[bytes]]  # (inode, request) -> reply payload


def attributes(entry: FsEntry) -> Attributes:
    timeout = SNAPSHOT_TIMEOUT if entry.node is not None else VIRTUAL_TIMEOUT
    return Attributes(entry.inode, entry.mode, entry.links, entry.uid, entry.gid, entry.size, entry.rdev,
                      entry.atime_ns, entry.mtime_ns, entry.ctime_ns, timeout)


def fuse_error(exc: Exception) -> FuseError:
    if isinstance(exc, FuseError):
        return exc
    if isinstance(exc, NotFound):
        return FuseError(errno.ENOENT)
    if isinstance(exc, NotADirectory):
        return FuseError(errno.ENOTDIR)
    return FuseError(errno.EIO)


class SnapshotOperations:
    def __init__(self, fs: SnapshotFS, notify: Callable[[bytes], None] = lambda notice: None):
        self.fs = fs
        self._notify = notify  # writes a notice to the kernel
        self._paths: Dict[int, str] = {ROOT_INODE: "/"}
        self._counts: "Counter[int]" = Counter()  # lookups of each inode the kernel holds
        self._virtual = {ROOT_INODE}  # inodes above the snapshots the kernel was told of
        self._generation = fs.generation  # of the snapshot list the kernel's listings show
        self._lock = threading.Lock()
        self._readers: Dict[int, object] = {}  # by inode, for the files read
        self.listings = Listings(self._listing_rows, preload=fs.preload_listed)
        self.errors: List[str] = []  # unexpected failures, for the log

    def handlers(self) -> Dict[int, Tuple[Optional[Handler], Optional[Handler]]]:
        """opcode -> (quick form or None, full form or None)."""
        return {
            kernel.LOOKUP: (None, self.lookup),
            kernel.FORGET: (self.forget, None),
            kernel.BATCH_FORGET: (self.batch_forget, None),
            kernel.GETATTR: (None, self.getattr),
            kernel.READLINK: (None, self.readlink),
            kernel.OPEN: (self.open, None),
            kernel.READ: (self.read_cached, self.read),
            kernel.RELEASE: (self.release, None),
            kernel.STATFS: (self.statfs, None),
            kernel.GETXATTR: (None, self.getxattr),
            kernel.LISTXATTR: (None, self.listxattr),
            kernel.OPENDIR: (self.opendir, None),
            kernel.READDIRPLUS: (self.readdirplus_ready, self.readdirplus),
            kernel.RELEASEDIR: (self.releasedir, None),
            kernel.INTERRUPT: (self.interrupt, None),
            kernel.DESTROY: (self.destroy, None),
        }

    def close(self) -> None:
        self.listings.close()

    @property
    def idle_work_waiting(self) -> bool:
        return self.listings.ahead_waiting

    def _listing_quick(self, path: str) -> bool:
        return self.fs.listing_ready(path, QUICK_LISTING_ENTRIES)

    def idle_work(self) -> bool:
        """Make the next listing a walker will ask for while no request waits (if its tree
        is at hand); False when there is nothing to do now."""
        try:
            return self.listings.make_ahead(self._listing_quick)
        except Exception:  # noqa: BLE001 - the listing, when asked for, reports it
            return False

    # --- inodes ---
    def _path(self, inode: int) -> str:
        path = self._paths.get(inode)
        if path is None:
            raise FuseError(errno.ESTALE)
        return path

    def _remember(self, entry: FsEntry) -> None:
        with self._lock:
            self._paths[entry.inode] = entry.path
            self._counts[entry.inode] = self._counts.get(entry.inode, 0) + 1
            if entry.node is None:
                self._virtual.add(entry.inode)

    def forget(self, inode: int, request: bytes) -> bytes:
        (count,) = kernel.FORGET_IN.unpack_from(request, kernel.IN_HEADER_SIZE)
        self._forget([(inode, count)])
        return NO_REPLY

    def batch_forget(self, inode: int, request: bytes) -> bytes:
        (count,) = kernel.BATCH_FORGET_IN.unpack_from(request, kernel.IN_HEADER_SIZE)
        start = kernel.IN_HEADER_SIZE + kernel.BATCH_FORGET_IN.size
        self._forget(kernel.FORGET_ONE.iter_unpack(request[start:start + count * kernel.FORGET_ONE.size]))
        return NO_REPLY

    def _forget(self, inode_counts) -> None:
        with self._lock:
            for inode, count in inode_counts:
                left = self._counts.get(inode, 0) - count
                if left > 0:
                    self._counts[inode] = left
                elif inode != ROOT_INODE:
                    self._counts.pop(inode, None)
                    self._paths.pop(inode, None)
                    self._virtual.discard(inode)
                    self._readers.pop(inode, None)

    def _call(self, fn, *args):
        """fn(*args), its failures as the errno the kernel is given."""
        try:
            return fn(*args)
        except (RestiqueError, OSError) as exc:
            if not isinstance(exc, (NotFound, NotADirectory)):
                self.errors.append(str(exc))
            raise fuse_error(exc) from None
        finally:
            if self.fs.generation != self._generation:
                self._snapshots_changed()

    def _snapshots_changed(self) -> None:
        """Tell the kernel to drop what it keeps of the folders above the snapshots."""
        with self._lock:
            self._generation = self.fs.generation
            stale = list(self._virtual)
        for inode in stale:
            self._notify(kernel.inval_inode(inode))

    # --- metadata ---
    def lookup(self, parent_inode: int, request: bytes) -> bytes:
        parent = self._path(parent_inode)
        text = os.fsdecode(kernel.request_name(request, kernel.IN_HEADER_SIZE))
        if text == ".":
            path = parent
        elif text == "..":
            path = parent.rsplit("/", 1)[0] or "/"
        else:
            path = parent.rstrip("/") + "/" + text
        entry = self._call(self.fs.lookup, path)
        self._remember(entry)
        return attributes(entry).entry_out()

    def getattr(self, inode: int, request: bytes) -> bytes:
        return attributes(self._call(self.fs.lookup, self._path(inode))).attr_out()

    def readlink(self, inode: int, request: bytes) -> bytes:
        entry = self._call(self.fs.lookup, self._path(inode))
        if entry.kind != "symlink":
            raise FuseError(errno.EINVAL)
        return os.fsencode(entry.target)

    def statfs(self, inode: int, request: bytes) -> bytes:
        return kernel.statfs_out()

    def getxattr(self, inode: int, request: bytes) -> bytes:
        (size,) = kernel.XATTR_IN.unpack_from(request, kernel.IN_HEADER_SIZE)
        wanted = os.fsdecode(kernel.request_name(request, kernel.IN_HEADER_SIZE + kernel.XATTR_IN.size))
        entry = self._call(self.fs.lookup, self._path(inode))
        for key, value in entry.xattrs:
            if key == wanted:
                return _sized(value, size)
        raise FuseError(errno.ENODATA)

    def listxattr(self, inode: int, request: bytes) -> bytes:
        (size,) = kernel.XATTR_IN.unpack_from(request, kernel.IN_HEADER_SIZE)
        entry = self._call(self.fs.lookup, self._path(inode))
        return _sized(b"".join(os.fsencode(key) + b"\0" for key, _ in entry.xattrs), size)

    def interrupt(self, inode: int, request: bytes) -> bytes:
        return NO_REPLY  # every answer comes soon enough; the kernel drops a late one

    def destroy(self, inode: int, request: bytes) -> bytes:
        return b""

    # --- directories ---
    def opendir(self, inode: int, request: bytes) -> bytes:
        raise FuseError(errno.ENOSYS)  # from now on folders open without asking

    def releasedir(self, inode: int, request: bytes) -> bytes:
        return b""

    def _listing_rows(self, path: str) -> Tuple[Listing, bool]:
        """The directory as readdirplus sends it (packed once, in a worker thread), and
        whether it lies inside a snapshot (and so never changes)."""
        entries = self.fs.list_dir(path)
        parent = path.rsplit("/", 1)[0] or "/"
        records = [kernel.dot_direntplus(b".", path_inode(path), 1),
                   kernel.dot_direntplus(b"..", path_inode(parent), 2)]
        pack = kernel.direntplus
        records += [pack(e.name_bytes, e.inode, e.mode, e.links, e.uid, e.gid, e.size, e.rdev, e.atime_ns, e.mtime_ns,
                         e.ctime_ns, VIRTUAL_TIMEOUT if e.node is None else SNAPSHOT_TIMEOUT, i)
                    for i, e in enumerate(entries, DOTS + 1)]
        inodes = [e.inode for e in entries]
        path_of = {e.inode: e.path for e in entries}
        subfolders = [e.path for e in reversed(entries) if e.kind == "dir"]
        inside = bool(entries) and entries[0].node is not None
        return Listing(records, inodes, path_of, subfolders, virtual=not inside), inside

    def readdirplus_ready(self, inode: int, request: bytes) -> Optional[bytes]:
        """From the kept listing, or one made now when its tree is at hand (no waiting)."""
        path = self._path(inode)
        listing = self.listings.cached(path)
        if listing is None:
            if not self.fs.listing_ready(path, QUICK_LISTING_ENTRIES):
                return None
            listing = self._call(self.listings.get, path, False)
            if listing is None:  # being made in a worker thread
                return None
        return self._readdir_reply(listing, request)

    def readdirplus(self, inode: int, request: bytes) -> bytes:
        return self._readdir_reply(self._call(self.listings.get, self._path(inode)), request)

    def _readdir_reply(self, listing: Listing, request: bytes) -> bytes:
        """The records from the request's offset on that fit its size; each entry sent (but
        `.` and `..`) counts as one lookup."""
        _, start, size = kernel.READ_IN.unpack_from(request, kernel.IN_HEADER_SIZE)
        ends = listing.ends
        if start >= len(ends):
            return b""
        first_byte = ends[start - 1] if start else 0
        end = bisect_right(ends, first_byte + size, lo=start)
        first = max(start, DOTS)
        if end > first:
            self._count_sent(listing, first - DOTS, end - DOTS)
        return listing.data[first_byte:ends[end - 1]] if end > start else b""

    def _count_sent(self, listing: Listing, start: int, end: int) -> None:
        with self._lock:
            if start == 0 and end == len(listing.inodes):  # the whole folder in one reply
                self._paths.update(listing.path_of)
                self._counts.update(listing.inodes)
                sent = listing.inodes
            else:
                sent = listing.inodes[start:end]
                path_of = listing.path_of
                self._paths.update((inode, path_of[inode]) for inode in sent)
                self._counts.update(sent)
            if listing.virtual:
                self._virtual.update(sent)

    # --- files ---
    def open(self, inode: int, request: bytes) -> bytes:
        raise FuseError(errno.ENOSYS)  # from now on files open without asking (read-only mount)

    def read_cached(self, inode: int, request: bytes) -> Optional[bytes]:
        reader = self._readers.get(inode)
        if reader is None:
            return None
        _, offset, size = kernel.READ_IN.unpack_from(request, kernel.IN_HEADER_SIZE)
        return reader.read_cached(offset, size)  # most reads of a sequential reader

    def read(self, inode: int, request: bytes) -> bytes:
        _, offset, size = kernel.READ_IN.unpack_from(request, kernel.IN_HEADER_SIZE)
        reader = self._readers.get(inode)
        if reader is None:
            reader = self._call(self.fs.open_reader, self._path(inode))
            with self._lock:
                if inode in self._paths:  # not forgotten meanwhile
                    self._readers[inode] = reader
        return self._call(reader.read, offset, size)

    def release(self, inode: int, request: bytes) -> bytes:
        return b""


def _sized(value: bytes, size: int) -> bytes:
    """An xattr answer: its length alone when asked with size 0, ERANGE when it is larger."""
    if size == 0:
        return kernel.XATTR_OUT.pack(len(value))
    if len(value) > size:
        raise FuseError(errno.ERANGE)
    return value
