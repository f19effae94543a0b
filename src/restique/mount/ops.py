"""pyfuse3 operations over a SnapshotFS: inode numbers to paths, attributes, reads.

SnapshotFS answers in paths; the kernel asks by inode. Every inode handed to the kernel
(lookup, readdirplus) is remembered with a path and a lookup count until the kernel
forgets it. Work that may load a tree or a blob runs in a worker thread, so one slow read
does not hold up the others.
"""
import errno
import os
import stat
import threading
from collections import Counter
from typing import Dict, List, Tuple

import pyfuse3
import trio

from ..errors import NotFound, RestiqueError
from ..operations.snapshot_fs import FsEntry, NotADirectory, SnapshotFS, path_inode
from .listings import DOTS, Listing, Listings

SNAPSHOT_TIMEOUT = 86400.0  # a snapshot's contents never change: the kernel may keep them a day
VIRTUAL_TIMEOUT = 1.0  # the directories above the snapshots follow new snapshots


def _attributes(entry: FsEntry) -> pyfuse3.EntryAttributes:
    attr = pyfuse3.EntryAttributes()
    attr.st_ino = entry.inode
    attr.st_mode = entry.mode
    attr.st_nlink = entry.links
    attr.st_uid = entry.uid
    attr.st_gid = entry.gid
    attr.st_size = entry.size
    attr.st_rdev = entry.rdev
    attr.st_blksize = 4096
    attr.st_blocks = (entry.size + 511) // 512
    attr.st_atime_ns = entry.atime_ns
    attr.st_mtime_ns = entry.mtime_ns
    attr.st_ctime_ns = entry.ctime_ns
    timeout = SNAPSHOT_TIMEOUT if entry.node is not None else VIRTUAL_TIMEOUT
    attr.entry_timeout = timeout
    attr.attr_timeout = timeout
    return attr


def _dot_attributes(path: str) -> List[pyfuse3.EntryAttributes]:
    """`.` and `..` as restic's mount lists them (`ls -a`), by inode number alone."""
    parent = path.rsplit("/", 1)[0] or "/"
    rows = []
    for of in (path, parent):
        attr = pyfuse3.EntryAttributes()
        attr.st_ino = path_inode(of)
        attr.st_mode = stat.S_IFDIR | 0o555
        rows.append(attr)
    return rows


def _fuse_error(exc: Exception) -> pyfuse3.FUSEError:
    if isinstance(exc, NotFound):
        return pyfuse3.FUSEError(errno.ENOENT)
    if isinstance(exc, NotADirectory):
        return pyfuse3.FUSEError(errno.ENOTDIR)
    return pyfuse3.FUSEError(errno.EIO)


class SnapshotOperations(pyfuse3.Operations):
    def __init__(self, fs: SnapshotFS):
        super().__init__()
        self.fs = fs
        self._paths: Dict[int, str] = {pyfuse3.ROOT_INODE: "/"}
        self._counts: "Counter[int]" = Counter()  # lookups of each inode the kernel holds
        self._lock = threading.Lock()
        self._handles: Dict[int, object] = {}
        self._dirs: Dict[int, Listing] = {}  # by handle
        self.listings = Listings(self._listing_rows, preload=fs.preload_listed)
        self._next_handle = 1
        self.errors: List[str] = []  # unexpected failures, for the log

    # --- inodes ---
    def _path(self, inode: int) -> str:
        path = self._paths.get(inode)
        if path is None:
            raise pyfuse3.FUSEError(errno.ESTALE)
        return path

    def _remember(self, entry: FsEntry) -> None:
        with self._lock:
            self._paths[entry.inode] = entry.path
            self._counts[entry.inode] = self._counts.get(entry.inode, 0) + 1

    async def forget(self, inode_list: List[Tuple[int, int]]) -> None:
        with self._lock:
            for inode, count in inode_list:
                left = self._counts.get(inode, 0) - count
                if left > 0:
                    self._counts[inode] = left
                elif inode != pyfuse3.ROOT_INODE:
                    self._counts.pop(inode, None)
                    self._paths.pop(inode, None)

    async def _call(self, fn, *args):
        try:
            return await trio.to_thread.run_sync(fn, *args)
        except (RestiqueError, OSError) as exc:
            if not isinstance(exc, (NotFound, NotADirectory)):
                self.errors.append(str(exc))
            raise _fuse_error(exc) from None

    # --- metadata ---
    async def lookup(self, parent_inode, name, ctx=None):
        parent = self._path(parent_inode)
        text = os.fsdecode(name)
        if text == ".":
            path = parent
        elif text == "..":
            path = parent.rsplit("/", 1)[0] or "/"
        else:
            path = parent.rstrip("/") + "/" + text
        entry = await self._call(self.fs.lookup, path)
        self._remember(entry)
        return _attributes(entry)

    async def getattr(self, inode, ctx=None):
        return _attributes(await self._call(self.fs.lookup, self._path(inode)))

    async def readlink(self, inode, ctx):
        entry = await self._call(self.fs.lookup, self._path(inode))
        if entry.kind != "symlink":
            raise pyfuse3.FUSEError(errno.EINVAL)
        return os.fsencode(entry.target)

    async def statfs(self, ctx):
        data = pyfuse3.StatvfsData()
        data.f_bsize = data.f_frsize = 4096
        data.f_namemax = 255
        return data

    async def getxattr(self, inode, name, ctx):
        entry = await self._call(self.fs.lookup, self._path(inode))
        wanted = os.fsdecode(name)
        for key, value in entry.xattrs:
            if key == wanted:
                return value
        raise pyfuse3.FUSEError(pyfuse3.ENOATTR)

    async def listxattr(self, inode, ctx):
        entry = await self._call(self.fs.lookup, self._path(inode))
        return [os.fsencode(key) for key, _ in entry.xattrs]

    # --- directories ---
    async def opendir(self, inode, ctx):
        path = self._path(inode)
        listing = self.listings.cached(path)
        if listing is None:
            listing = await self._call(self.listings.get, path)
        with self._lock:
            handle = self._next_handle
            self._next_handle += 1
            self._dirs[handle] = listing
        return handle

    def _listing_rows(self, path: str) -> Tuple[Listing, bool]:
        """The directory as readdir sends it (converted once, in a worker thread), and
        whether it lies inside a snapshot (and so never changes)."""
        entries = self.fs.list_dir(path)
        names = [b".", b".."]
        names += [e.name_bytes for e in entries]
        attrs = _dot_attributes(path)
        attrs += [_attributes(e) for e in entries]
        inodes = [e.inode for e in entries]
        path_of = {e.inode: e.path for e in entries}
        subfolders = [e.path for e in reversed(entries) if e.kind == "dir"]
        return Listing(names, attrs, inodes, path_of, subfolders), bool(entries) and entries[0].node is not None

    async def readdir(self, fh, start_id, token):
        listing = self._dirs.get(fh)
        if listing is None:
            return
        names, attrs, reply = listing.names, listing.attrs, pyfuse3.readdir_reply
        end, i = len(names), start_id
        while i < end and reply(token, names[i], attrs[i], i + 1):
            i += 1
        first = max(start_id, DOTS)  # the kernel keeps no lookup count for "." and ".."
        if i > first:
            self._count_sent(listing, first - DOTS, i - DOTS)

    def _count_sent(self, listing: Listing, start: int, end: int) -> None:
        """Every entry readdir sent counts as one lookup (readdirplus)."""
        with self._lock:
            if start == 0 and end == len(listing.inodes):  # the whole folder in one reply
                self._paths.update(listing.path_of)
                self._counts.update(listing.inodes)
            else:
                sent = listing.inodes[start:end]
                path_of = listing.path_of
                self._paths.update((inode, path_of[inode]) for inode in sent)
                self._counts.update(sent)

    async def releasedir(self, fh):
        self._dirs.pop(fh, None)

    # --- files ---
    async def open(self, inode, flags, ctx):
        if flags & (os.O_WRONLY | os.O_RDWR | os.O_TRUNC | os.O_APPEND):
            raise pyfuse3.FUSEError(errno.EROFS)
        path = self._path(inode)
        entry = await self._call(self.fs.lookup, path)
        if not stat.S_ISREG(entry.mode):
            raise pyfuse3.FUSEError(errno.EINVAL)
        reader = await self._call(self.fs.open_reader, path)
        with self._lock:
            handle = self._next_handle
            self._next_handle += 1
            self._handles[handle] = reader
        return pyfuse3.FileInfo(fh=handle, keep_cache=True)

    async def read(self, fh, off, size):
        reader = self._handles.get(fh)
        if reader is None:
            raise pyfuse3.FUSEError(errno.EBADF)
        data = reader.read_cached(off, size)  # most reads of a sequential reader: no thread needed
        return data if data is not None else await self._call(reader.read, off, size)

    async def release(self, fh):
        self._handles.pop(fh, None)
