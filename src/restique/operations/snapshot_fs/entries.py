"""What a path of the snapshot filesystem looks like: FsEntry, its attributes and inode.

Inode numbers are stable hashes: of the path for directories and most entries, and of
(snapshot, device, inode) for a file with hard links, so every link of one file shows one
inode number, as on the disk that was backed up (restic 0.14 numbers each link apart).
"""
import hashlib
import stat
from hashlib import blake2b
from dataclasses import dataclass, field
from typing import List, Optional, Tuple

from ...model.gotime import node_time_ns
from ...model.node import MODE_SETGID, MODE_SETUID, MODE_STICKY, LazyNode, Node
from ...model.snapshot import Snapshot

KINDS = ("dir", "file", "symlink", "dev", "chardev", "fifo", "socket")

_TYPE_BITS = {
    "dir": stat.S_IFDIR, "file": stat.S_IFREG, "symlink": stat.S_IFLNK, "dev": stat.S_IFBLK,
    "chardev": stat.S_IFCHR, "fifo": stat.S_IFIFO, "socket": stat.S_IFSOCK,
}
VIRTUAL_DIR_MODE = stat.S_IFDIR | 0o555
LINK_MODE = stat.S_IFLNK | 0o777


@dataclass(slots=True)
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


def _entry_times(obj: dict) -> Tuple[int, int, int]:
    """(mtime, atime, ctime) ns of a JSON node; equal texts (often atime and mtime) parsed once."""
    mtime, atime, ctime = obj.get("mtime"), obj.get("atime"), obj.get("ctime")
    m = node_time_ns(mtime)
    return m, (m if atime == mtime else node_time_ns(atime)), (m if ctime == mtime else node_time_ns(ctime))


def _listing_entry(path: str, node: LazyNode, obj: dict, snapshot: Snapshot, owner_root: bool):
    """node_entry for an entry still in its JSON form (the common case when a folder is
    listed), read straight from the JSON without decoding the whole node; None for the
    unusual entries that node_entry handles."""
    kind = node.type
    if kind not in ("file", "dir") or "\\" in obj.get("name", ""):
        return None
    mode = obj.get("mode") or 0
    perm = mode & 0o777
    if mode & (MODE_SETUID | MODE_SETGID | MODE_STICKY):
        return None
    uid, gid = (0, 0) if owner_root else (obj.get("uid") or 0, obj.get("gid") or 0)
    times = _entry_times(obj)
    if kind == "dir":
        return FsEntry(node.name, path, "dir", stat.S_IFDIR | perm, uid, gid, 0, *times, 2, path_inode(path),
                       "", node, snapshot)
    links, inode = obj.get("links") or 1, obj.get("inode") or 0
    number = path_inode("\0hardlink\0" + f"{snapshot.id}\0{obj.get('device_id') or 0}\0{inode}") \
        if links > 1 and inode else path_inode(path)
    xattrs = [(n, v) for n, v in node.xattrs] if obj.get("extended_attributes") else []
    return FsEntry(node.name, path, "file", stat.S_IFREG | perm, uid, gid, obj.get("size") or 0, *times, links,
                   number, "", node, snapshot, 0, xattrs)


_DIR_TYPE, _FILE_TYPE = stat.S_IFDIR, stat.S_IFREG
_SPECIAL_BITS = MODE_SETUID | MODE_SETGID | MODE_STICKY


def listing_entries(base: str, nodes: List[Node], snapshot: Snapshot, owner_root: bool) -> List[FsEntry]:
    """[node_entry(base + "/" + name, node, ...)] for the nodes of one folder: the entries a
    listing needs most (files and folders still in their JSON form) built in one loop, as
    _listing_entry would, the rest by node_entry."""
    entries = []
    add = entries.append
    sid = snapshot.id
    for node in nodes:
        name = node.name
        path = f"{base}/{name}"
        obj = object.__getattribute__(node, "_obj") if type(node) is LazyNode else None
        kind = node.type
        if obj is None or (kind != "file" and kind != "dir") or "\\" in obj.get("name", ""):
            add(node_entry(path, node, snapshot, owner_root))
            continue
        mode = obj.get("mode") or 0
        if mode & _SPECIAL_BITS:
            add(node_entry(path, node, snapshot, owner_root))
            continue
        uid, gid = (0, 0) if owner_root else (obj.get("uid") or 0, obj.get("gid") or 0)
        m, a, c = _entry_times(obj)
        digest = blake2b(path.encode("utf-8", "surrogateescape"), digest_size=8).digest()
        number = (int.from_bytes(digest, "little") >> 1) or 2
        if kind == "dir":
            add(FsEntry(name, path, "dir", _DIR_TYPE | (mode & 0o777), uid, gid, 0, m, a, c, 2, number, "",
                        node, snapshot))
            continue
        links = obj.get("links") or 1
        if links > 1:
            inode = obj.get("inode") or 0
            if inode:
                number = path_inode("\0hardlink\0" + f"{sid}\0{obj.get('device_id') or 0}\0{inode}")
        xattrs = [(n, v) for n, v in node.xattrs] if obj.get("extended_attributes") else []
        add(FsEntry(name, path, "file", _FILE_TYPE | (mode & 0o777), uid, gid, obj.get("size") or 0, m, a, c,
                    links, number, "", node, snapshot, 0, xattrs))
    return entries


def node_entry(path: str, node: Node, snapshot: Snapshot, owner_root: bool) -> FsEntry:
    """The entry of a tree node at path inside snapshot."""
    if type(node) is LazyNode:
        obj = object.__getattribute__(node, "_obj")  # None once the node was decoded
        if obj is not None:
            entry = _listing_entry(path, node, obj, snapshot, owner_root)
            if entry is not None:
                return entry
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
