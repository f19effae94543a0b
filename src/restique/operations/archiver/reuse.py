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

from ..fs_metadata import go_mode, group_name, local_time_text, user_name
from .dir_scan import DirScans
from .parent import ParentTrees

# (snapshot path, "file"|"dir"|"other", size) of an entry, for progress output
Item = Tuple[str, str, int]


class Reused:
    """What is below a directory whose tree is reused: counts of files (and their bytes)
    and directories, and each entry only if the progress output shows them: a million
    paths would otherwise be held until the walk reaches the directory."""

    __slots__ = ("files", "dirs", "size", "items")

    def __init__(self, files: int, dirs: int, size: int, items: Optional[List[Item]]):
        self.files, self.dirs, self.size, self.items = files, dirs, size, items


_TYPES = {stat.S_IFREG: "file", stat.S_IFDIR: "dir", stat.S_IFLNK: "symlink", stat.S_IFBLK: "dev",
          stat.S_IFCHR: "chardev", stat.S_IFIFO: "fifo"}
# every field a node may have that this check understands
_KNOWN = {"name", "type", "mode", "mtime", "atime", "ctime", "uid", "gid", "user", "group", "inode",
          "device_id", "size", "links", "linktarget", "linktarget_raw", "extended_attributes",
          "device", "content", "subtree"}
_IFMT = 0o170000
_LINKED = ("file", "symlink", "dev", "chardev")  # kinds whose node records the link count


class TreeReuse:
    def __init__(self, parents: ParentTrees, has_blob: Callable[[str], bool],
                 scans: DirScans, reject, with_atime: bool, xattrs: bool, one_file_system: bool,
                 items: bool = True):
        self._parents = parents  # parent tree id -> {name: node dict}
        self._items = items  # list every entry below a reused directory (else only counts)
        self._scans = scans
        self._has_blob = has_blob
        self._reject = reject
        self._with_atime = with_atime
        self._xattrs = xattrs
        self._one_fs = one_file_system
        # results for subdirectories of a directory whose own check failed, until the walk
        # asks for them: a reused directory's whole list would otherwise stay held
        self._memo: Dict[str, Optional[Reused]] = {}

    def events(self, fs_path: str, snap_path: str, old_dir: dict, dev: int) -> Optional[Reused]:
        """The entries below fs_path if its content equals the parent's subtree, else None.
        The walk asks once for each directory it reaches."""
        if fs_path in self._memo:
            return self._memo.pop(fs_path)
        return self._check(fs_path, snap_path, old_dir, dev)

    def _subdir_events(self, fs_path: str, snap_path: str, old_dir: dict, dev: int) -> Optional[Reused]:
        result = self._memo[fs_path] = self.events(fs_path, snap_path, old_dir, dev)
        return result

    def _check(self, fs_path: str, snap_path: str, old_dir: dict, dev: int) -> Optional[Reused]:
        subtree = old_dir.get("subtree")
        if not subtree:
            return None
        old = self._parents.children(subtree)
        events = self._compare(fs_path, snap_path, old, dev)
        if events is None:
            self._parents.keep(subtree, old)  # the walk of this directory reads it next
        return events

    def _compare(self, fs_path: str, snap_path: str, old: Dict[str, dict], dev: int) -> Optional[Reused]:
        try:
            entries = self._scans.peek(fs_path)
        except OSError:
            return None
        fs_prefix = os.path.join(fs_path, "")  # + name: os.path.join(fs_path, name)
        snap_prefix = snap_path + "/"
        if self._changed_at_a_glance(entries, old) or not self._subdirs_reused(fs_prefix, snap_prefix,
                                                                               entries, old, dev):
            return None
        files = dirs = size = 0
        items: Optional[List[Item]] = [] if self._items else None
        subdirs: List[str] = []
        seen = 0
        reject, same, get = self._reject, self.same, old.get
        for name, err, st, link, xattrs in entries:
            if err:
                return None
            fmt = st.st_mode & _IFMT
            if fmt == stat.S_IFSOCK or (reject is not None and reject(snap_prefix + name, fs_prefix + name, st)):
                continue
            o = get(name)
            if o is None or not same(o, st, link, xattrs):
                return None
            seen += 1
            if fmt == stat.S_IFDIR:
                if self._one_fs and st.st_dev != dev:
                    return None
                subdirs.append(fs_prefix + name)
                below = self._subdir_events(subdirs[-1], snap_prefix + name, o, dev)
                if below is None:
                    return None
                files += below.files
                dirs += below.dirs + 1
                size += below.size
                if items is not None:
                    items.extend(below.items)
                    items.append((snap_prefix + name + "/", "dir", 0))
            elif fmt == stat.S_IFREG:
                files += 1
                size += st.st_size
                if items is not None:
                    items.append((snap_prefix + name, "file", st.st_size))
            elif items is not None:
                items.append((snap_prefix + name, "other", st.st_size))
        if seen != len(old):
            return None  # something was removed
        self._scans.forget(fs_path)  # its tree is reused: the walk will not list it
        for path in subdirs:  # nor ask about what is below
            del self._memo[path]
        return Reused(files, dirs, size, items)

    def _changed_at_a_glance(self, entries, old: Dict[str, dict]) -> bool:
        """Whether an entry is new or has another ctime than its node: what a change to a
        file always shows. The full comparison goes in name order up to the first difference,
        and the walk of a changed directory compares those entries again; this look at every
        entry's ctime finds most changes for a fraction of that."""
        get, reject = old.get, self._reject
        for name, err, st, _link, _xattrs in entries:
            if err:
                return True  # the full comparison gives up on it too
            o = get(name)
            if o is None:
                if reject is None and st.st_mode & _IFMT != stat.S_IFSOCK:
                    return True  # a new entry (not one left out, nor a socket)
            elif o.get("ctime") != (st.ctime_text or local_time_text(st.st_ctime_ns)):
                return True
        return False

    def _subdirs_reused(self, fs_prefix: str, snap_prefix: str, entries, old: Dict[str, dict], dev: int) -> bool:
        """Whether every subdirectory's content equals its parent subtree, asked before the
        entries are compared in full: a change further down then costs no comparison of
        this directory's files, which the walk would compare again. The answers are held
        for the full comparison and the walk (_memo)."""
        get, reject = old.get, self._reject
        for name, _err, st, _link, _xattrs in entries:
            if st.st_mode & _IFMT != stat.S_IFDIR or \
                    (reject is not None and reject(snap_prefix + name, fs_prefix + name, st)):
                continue
            o = get(name)
            if o is None or o.get("type") != "dir" or (self._one_fs and st.st_dev != dev):
                return False  # the full comparison would fail on it too
            if self._subdir_events(fs_prefix + name, snap_prefix + name, o, dev) is None:
                return False
        return True

    def same(self, o: dict, st, link, xattrs) -> bool:
        """Would a node made from a scanned entry (lstat fields, symlink target, extended
        attributes) be encoded exactly like o (subtree aside)? The usual differences (times,
        size) are looked at first."""
        get = o.get
        mtime = st.mtime_text or local_time_text(st.st_mtime_ns)  # the scan's text, if it made one
        if get("mtime") != mtime or get("ctime") != (st.ctime_text or local_time_text(st.st_ctime_ns)):
            return False
        if get("atime") != ((st.atime_text or local_time_text(st.st_atime_ns)) if self._with_atime else mtime):
            return False
        kind = _TYPES.get(st.st_mode & _IFMT)
        if kind is None or get("type") != kind or not _KNOWN.issuperset(o):
            return False
        if ((get("mode") or 0) != go_mode(st.st_mode) or get("uid") != st.st_uid or get("gid") != st.st_gid
                or (get("inode") or 0) != st.st_ino or (get("device_id") or 0) != st.st_dev):
            return False
        if (get("user") or "") != user_name(st.st_uid) or (get("group") or "") != group_name(st.st_gid):
            return False
        if kind == "file":
            content = get("content")
            if (get("size") or 0) != st.st_size or (get("links") or 0) != st.st_nlink or content is None \
                    or not all(map(self._has_blob, content)):
                return False
        elif (get("size") or 0) != 0 or (get("links") or 0) != (st.st_nlink if kind in _LINKED else 0):
            return False
        elif kind == "symlink" and not _same_target(o, link):
            return False
        elif kind in ("dev", "chardev") and (get("device") or 0) != st.st_rdev:
            return False
        if not xattrs and not get("extended_attributes"):
            return True
        old_attrs = [(a.get("name"), a.get("value")) for a in get("extended_attributes") or []]
        attrs = [(n, base64.b64encode(v).decode()) for n, v in xattrs or ()] if self._xattrs else []
        return old_attrs == attrs


def _same_target(o: dict, link) -> bool:
    """Whether a scanned symlink target would be recorded as o records it."""
    if type(link) is not bytes:
        return False  # unreadable: the walk reports it
    stored = base64.b64decode(o["linktarget_raw"]) if o.get("linktarget_raw") else \
        (o.get("linktarget") or "").encode("utf-8", "surrogateescape")
    return link == stored and (o.get("linktarget_raw") is not None or _utf8(link))


def _utf8(raw: bytes) -> bool:
    try:
        raw.decode("utf-8")
        return True
    except UnicodeDecodeError:
        return False
