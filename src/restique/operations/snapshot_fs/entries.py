"""What a path of the snapshot filesystem looks like: FsEntry, its attributes and inode.

Inode numbers are stable hashes: of the path for directories and most entries, and of
(snapshot, device, inode) for a file with hard links, so every link of one file shows one
inode number, as on the disk that was backed up (restic 0.14 numbers each link apart).
"""
import hashlib
import stat
from dataclasses import dataclass, field
from typing import List, Optional, Tuple

from ...model.node import Node
from ...model.snapshot import Snapshot

KINDS = ("dir", "file", "symlink", "dev", "chardev", "fifo", "socket")

_TYPE_BITS = {
    "dir": stat.S_IFDIR, "file": stat.S_IFREG, "symlink": stat.S_IFLNK, "dev": stat.S_IFBLK,
    "chardev": stat.S_IFCHR, "fifo": stat.S_IFIFO, "socket": stat.S_IFSOCK,
}
VIRTUAL_DIR_MODE = stat.S_IFDIR | 0o555
LINK_MODE = stat.S_IFLNK | 0o777


@dataclass
class FsEntry:
    """One path of the snapshot filesystem. node is None for the virtual directories (and
    `latest` links) above the snapshots; snapshot is None above the snapshot roots."""
    name: str
    path: str
    kind: str
    mode: int
    uid: int
    gid: int
    size: int
    mtime_ns: int
    atime_ns: int
    ctime_ns: int
    links: int
    inode: int
    target: str = ""
    node: Optional[Node] = None
    snapshot: Optional[Snapshot] = None
    rdev: int = 0  # device number of a block or character device
    xattrs: List[Tuple[str, bytes]] = field(default_factory=list)

    @property
    def is_dir(self) -> bool:
        return self.kind == "dir"

    @property
    def name_bytes(self) -> bytes:
        """The name as stored: the original bytes, also when they are not UTF-8."""
        return self.name.encode("utf-8", "surrogateescape")


def path_inode(path: str) -> int:
    """A 63-bit number for path, the same in every run (FUSE reserves 1 for the root)."""
    if path == "/":
        return 1
    digest = hashlib.blake2b(path.encode("utf-8", "surrogateescape"), digest_size=8).digest()
    return (int.from_bytes(digest, "little") >> 1) or 2


def hardlink_inode(snapshot_id: str, node: Node) -> int:
    key = f"{snapshot_id}\0{node.device_id}\0{node.inode}"
    return path_inode("\0hardlink\0" + key)


def virtual_entry(path: str, name: str, when_ns: int, uid: int, gid: int,
                  snapshot: Optional[Snapshot] = None, target: str = "") -> FsEntry:
    """A directory above the snapshots, a snapshot's root, or a `latest` link to target."""
    if target:
        return FsEntry(name, path, "symlink", LINK_MODE, uid, gid, len(target.encode("utf-8", "surrogateescape")),
                       when_ns, when_ns, when_ns, 1, path_inode(path), target, None, snapshot)
    links = 2 if snapshot is not None else 1
    return FsEntry(name, path, "dir", VIRTUAL_DIR_MODE, uid, gid, 0, when_ns, when_ns, when_ns,
                   links, path_inode(path), "", None, snapshot)


def node_entry(path: str, node: Node, snapshot: Snapshot, owner_root: bool) -> FsEntry:
    """The entry of a tree node at path inside snapshot."""
    kind = node.type if node.type in _TYPE_BITS else "file"
    mode = _TYPE_BITS[kind] | (0o777 if kind == "symlink" else node.unix_mode)
    if kind == "dir":
        size, links, inode = 0, 2, path_inode(path)
    else:
        links = node.links or 1
        inode = hardlink_inode(snapshot.id, node) if links > 1 and node.inode else path_inode(path)
        if kind == "file":
            size = node.size
        elif kind == "symlink":
            size = len(node.linktarget.encode("utf-8", "surrogateescape"))
        else:
            size = 0
    uid, gid = (0, 0) if owner_root else (node.uid, node.gid)
    return FsEntry(node.name, path, kind, mode, uid, gid, size, node.mtime.unix_ns, node.atime.unix_ns,
                   node.ctime.unix_ns, links, inode, node.linktarget if kind == "symlink" else "", node,
                   snapshot, node.device if kind in ("dev", "chardev") else 0, list(node.xattrs or ()))
