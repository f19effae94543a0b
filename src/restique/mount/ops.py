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
from typing import Dict, List, Tuple

import pyfuse3
import trio

from ..errors import NotFound, RestiqueError
from ..operations.snapshot_fs import FsEntry, NotADirectory, SnapshotFS, path_inode
from .listings import Listings, Row

SNAPSHOT_TIMEOUT = 300.0  # a snapshot's contents never change
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


def _dot_rows(path: str) -> List[Tuple[bytes, pyfuse3.EntryAttributes]]:
    """`.` and `..` as restic's mount lists them (`ls -a`), by inode number alone."""
    parent = path.rsplit("/", 1)[0] or "/"
    rows = []
    for name, of in ((b".", path), (b"..", parent)):
        attr = pyfuse3.EntryAttributes()
        attr.st_ino = path_inode(of)
        attr.st_mode = stat.S_IFDIR | 0o555
        rows.append((name, attr))
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
        self._counts: Dict[int, int] = {}
        self._lock = threading.Lock()
        self._handles: Dict[int, object] = {}
        self._dirs: Dict[int, tuple] = {}  # handle -> (dot rows, rows)
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
        rows = self.listings.cached(path)
        if rows is None:
            rows = await self._call(self.listings.get, path)
        with self._lock:
            handle = self._next_handle
            self._next_handle += 1
            self._dirs[handle] = (_dot_rows(path), rows)
        return handle

    def _listing_rows(self, path: str) -> Tuple[List[Row], bool]:
        """The directory's entries as readdir sends them (converted once, in a worker
        thread), and whether they lie inside a snapshot (and so never change)."""
        entries = self.fs.list_dir(path)
        rows = [(e.name_bytes, _attributes(e), e.inode, e.path) for e in entries]
        return rows, bool(entries) and entries[0].node is not None

    async def readdir(self, fh, start_id, token):
        dots, rows = self._dirs.get(fh, ((), ()))
        i = start_id
        while i < len(dots):  # "." and "..": the kernel keeps no lookup count for them
            if not pyfuse3.readdir_reply(token, dots[i][0], dots[i][1], i + 1):
                return
            i += 1
        sent = []
        reply = pyfuse3.readdir_reply
        for j in range(i - len(dots), len(rows)):
            row = rows[j]
            if not reply(token, row[0], row[1], j + len(dots) + 1):
                break
            sent.append(row)
        with self._lock:  # every entry sent counts as one lookup (readdirplus)
            counts, paths = self._counts, self._paths
            for _, _, inode, path in sent:
                paths[inode] = path
                counts[inode] = counts.get(inode, 0) + 1

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
