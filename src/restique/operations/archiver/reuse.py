"""Recognising directories that have not changed since the parent snapshot.

When every entry below a directory still has exactly the metadata the parent snapshot
recorded (type, mode, owner, inode, device, size, links, times, link target, device number,
extended attributes, and all data blobs still in the index), its tree would be encoded to
the same bytes: the parent's subtree id is reused, and no node is built, encoded or hashed.
A directory where anything differs goes through the normal path.
"""
import base64
import os
import stat
from typing import Callable, Dict, List, Optional, Tuple

from ..fs_metadata import go_mode, group_name, local_time, user_name
from .dir_scan import DirScans

# (snapshot path, "file"|"dir"|"other", size) of every entry, for progress and counts
Events = List[Tuple[str, str, int]]

_TYPES = {stat.S_IFREG: "file", stat.S_IFDIR: "dir", stat.S_IFLNK: "symlink", stat.S_IFBLK: "dev",
          stat.S_IFCHR: "chardev", stat.S_IFIFO: "fifo"}
# every field a node may have that this check understands
_KNOWN = {"name", "type", "mode", "mtime", "atime", "ctime", "uid", "gid", "user", "group", "inode",
          "device_id", "size", "links", "linktarget", "linktarget_raw", "extended_attributes",
          "device", "content", "subtree"}


class TreeReuse:
    def __init__(self, children: Callable[[str], Dict[str, dict]], has_blob: Callable[[str], bool],
                 scans: DirScans, reject, with_atime: bool, xattrs: bool, one_file_system: bool):
        self._children = children  # parent tree id -> {name: node dict}
        self._scans = scans
        self._has_blob = has_blob
        self._reject = reject
        self._with_atime = with_atime
        self._xattrs = xattrs
        self._one_fs = one_file_system
        self._memo: Dict[str, Optional[Events]] = {}

    def events(self, fs_path: str, snap_path: str, old_dir: dict, dev: int) -> Optional[Events]:
        """The entries below fs_path if its content equals the parent's subtree, else None."""
        if fs_path in self._memo:
            return self._memo[fs_path]
        result = self._check(fs_path, snap_path, old_dir, dev)
        self._memo[fs_path] = result
        return result

    def _check(self, fs_path: str, snap_path: str, old_dir: dict, dev: int) -> Optional[Events]:
        subtree = old_dir.get("subtree")
        if not subtree:
            return None
        old = self._children(subtree)
        try:
            entries = self._scans.peek(fs_path)
        except OSError:
            return None
        events: Events = []
        seen = 0
        for name, err, st, link, xattrs in entries:
            if err:
                return None
            path = os.path.join(fs_path, name)
            child_snap = f"{snap_path}/{name}"
            if stat.S_ISSOCK(st.st_mode) or (self._reject is not None and self._reject(child_snap, path, st)):
                continue
            o = old.get(name)
            if o is None or not self.same(o, st, link, xattrs):
                return None
            seen += 1
            if stat.S_ISDIR(st.st_mode):
                if self._one_fs and st.st_dev != dev:
                    return None
                below = self.events(path, child_snap, o, dev)
                if below is None:
                    return None
                events.extend(below)
            else:
                events.append((child_snap, "file" if stat.S_ISREG(st.st_mode) else "other", st.st_size))
        if seen != len(old):
            return None  # something was removed
        events.append((snap_path + "/", "dir", 0))
        self._scans.forget(fs_path)  # its tree is reused: the walk will not list it
        return events

    def same(self, o: dict, st, link, xattrs) -> bool:
        """Would a node made from a scanned entry (lstat fields, symlink target, extended
        attributes) be encoded exactly like o (subtree aside)?"""
        kind = _TYPES.get(stat.S_IFMT(st.st_mode))
        if kind is None or o.get("type") != kind or not _KNOWN.issuperset(o):
            return False
        if ((o.get("mode") or 0) != go_mode(st.st_mode) or o.get("uid") != st.st_uid or o.get("gid") != st.st_gid
                or (o.get("inode") or 0) != st.st_ino or (o.get("device_id") or 0) != st.st_dev):
            return False
        if (o.get("user") or "") != user_name(st.st_uid) or (o.get("group") or "") != group_name(st.st_gid):
            return False
        mtime = local_time(st.st_mtime_ns).rfc3339()
        atime = local_time(st.st_atime_ns).rfc3339() if self._with_atime else mtime
        if o.get("mtime") != mtime or o.get("atime") != atime or o.get("ctime") != local_time(st.st_ctime_ns).rfc3339():
            return False
        links = st.st_nlink if kind in ("file", "symlink", "dev", "chardev") else 0
        if (o.get("links") or 0) != links:
            return False
        if kind == "file":
            content = o.get("content")
            if (o.get("size") or 0) != st.st_size or content is None or not all(map(self._has_blob, content)):
                return False
        elif (o.get("size") or 0) != 0:
            return False
        if kind == "symlink":
            if type(link) is not bytes:
                return False  # unreadable: the walk reports it
            raw = link
            stored = base64.b64decode(o["linktarget_raw"]) if o.get("linktarget_raw") else \
                (o.get("linktarget") or "").encode("utf-8", "surrogateescape")
            if raw != stored or (o.get("linktarget_raw") is None and not _utf8(raw)):
                return False
        if kind in ("dev", "chardev") and (o.get("device") or 0) != st.st_rdev:
            return False
        old_attrs = [(a.get("name"), a.get("value")) for a in o.get("extended_attributes") or []]
        attrs = [(n, base64.b64encode(v).decode()) for n, v in xattrs or ()] if self._xattrs else []
        return old_attrs == attrs


def _utf8(raw: bytes) -> bool:
    try:
        raw.decode("utf-8")
        return True
    except UnicodeDecodeError:
        return False
