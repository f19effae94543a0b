"""The snapshots of a repository as one read-only filesystem tree, shared by `mount` (FUSE)
and `serve` (WebDAV). No printing, no FUSE here.

    from restique.operations.snapshot_fs import SnapshotFS, SnapshotFSOptions, FsEntry
    fs = SnapshotFS(repo, SnapshotFSOptions(path_template=None, time_template=None,
                    filter=SnapshotFilter(), owner_root=False, refresh_seconds=3.0))
    fs.lookup("/")                  # FsEntry; NotFound (restique.errors) for a missing path
    fs.list_dir("/snapshots")       # [FsEntry] in name order; NotADirectory for a non-directory
    fs.read("/ids/1a2b3c4d/home/a.txt", offset, size)   # bytes, short at the end; thread-safe
    fs.open_reader(path).read(offset, size)              # the same, for repeated reads of one file
    fs.open_reader(path).read_cached(offset, size)       # the same if its blobs are cached, else None (never waits)
    fs.snapshots()                  # [Snapshot] shown, oldest first; refreshed every refresh_seconds
    fs.refresh(force=True)          # reload the snapshot list now; fs.close() stops the readers
    fs.generation                   # counts the changes of the snapshot list (the folders above the snapshots)
    fs.preload_listed(paths)        # read the trees of listed folders together; then
    fs.listing_ready(path)          # True: list_dir(path) answers without reading the repository

Paths are str, absolute, "/" separated, with surrogate escapes for name bytes that are not
UTF-8 (os.fsencode gives the bytes back). The tree is restic's: `/ids/<short id>/` (the long
id is found by lookup too, not listed), `/snapshots/<time>`, `/hosts/<host>/<time>`,
`/tags/<tag>/<time>`, each with a `latest` symlink, or the paths of `path_template` (restic's
--path-template list: %i %I %u %h %t %T) with times in `time_template` (a Go layout). Below
a snapshot's directory is its tree with the original paths (`/ids/1a2b3c4d/home/a.txt`).
Lookups follow a `latest` link in the middle of a path (`/snapshots/latest/home`).

FsEntry: name, path, kind ("dir" "file" "symlink" "dev" "chardev" "fifo" "socket"), mode
(st_mode with type bits), uid, gid (0 with owner_root), size, mtime_ns, atime_ns, ctime_ns,
links, inode (stable, path_inode(path) for directories; one number for all hard links of a file in one snapshot), target
(symlink target or ""), node (model.node.Node, None above the snapshots), snapshot
(model.snapshot.Snapshot, None above the snapshot roots), rdev (devices), xattrs
([(name, value)]); name_bytes gives the original name bytes.

New snapshots (and the index files written with them) show up at the first call after
refresh_seconds. Decrypted blobs are kept up to options.cache_bytes.
"""
from ...model.snapshot_filter import SnapshotFilter
from .entries import FsEntry, path_inode
from .fs import NotADirectory, NotAFile, SnapshotFS, SnapshotFSOptions
from .layout import DEFAULT_PATH_TEMPLATES, DEFAULT_TIME_TEMPLATE
from .timefmt import format_go_time

__all__ = ["SnapshotFS", "SnapshotFSOptions", "FsEntry", "NotADirectory", "NotAFile", "SnapshotFilter",
           "DEFAULT_PATH_TEMPLATES", "DEFAULT_TIME_TEMPLATE", "format_go_time", "path_inode"]
