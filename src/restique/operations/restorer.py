"""Restoring a snapshot tree into a directory, as restic's restorer does.

Three steps:

1. **Plan** (first walk over the tree): create the directories, decide for every entry what
   the overwrite mode allows, look at existing files (which of their blobs already hold the
   right content), and collect the files whose content must be written.
2. **Content**: group every needed data blob by pack; read each pack once (its needed byte
   range in one or a few large reads), decrypt and check each blob once and write it with
   ``os.pwrite`` to every (file, offset) that uses it. Packs go to a small thread pool; the
   crypto, zstd and SHA-256 work releases the GIL. Memory is bounded by the workers' reads.
3. **Finish** (second walk): create symlinks, fifos, devices and hard links, then set
   ownership, extended attributes, times and modes; a directory's metadata is set when its
   walk ends, after everything inside it, so its mtime sticks. ``delete`` removes what the
   snapshot doesn't have at that moment.

Per-entry failures are reported (``error(location, message)``) and the restore goes on; a file
whose content could not be restored is removed rather than left with holes. Locations are
snapshot paths below the restored tree ("/srv/data/file"), as restic reports them.
"""
import errno
import hashlib
import os
import stat
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional, Tuple

from ..backend.base import FileType
from ..errors import RestiqueError, UsageError
from ..model.node import Node
from ..repository.index import BlobLocation
from .fs_io import error_message, open_for_reading, os_message, pwrite_all, remove_path
from .restore_selection import Selection
from .walker import TreeLoader, join, walk_events

OVERWRITE_MODES = ("always", "if-changed", "if-newer", "never")

# what happened to an item (restic's restorer.ItemAction)
DIR_RESTORED = "dir restored"
FILE_RESTORED = "file restored"
FILE_UPDATED = "file updated"
FILE_UNCHANGED = "file unchanged"
OTHER_RESTORED = "other restored"
DELETED = "deleted"

MAX_READ = 8 * 1024 * 1024  # largest single read from a pack (bounds memory per worker)
MAX_GAP = 512 * 1024  # unneeded bytes between two blobs that are cheaper to read than to skip
_CONTENT, _META_ONLY = 1, 2  # what the finish step does for a regular file


@dataclass
class RestoreStats:
    """Counts as restic's restore progress keeps them (files/dirs/others together)."""

    files_total: int = 0
    files_restored: int = 0
    files_skipped: int = 0
    files_deleted: int = 0
    bytes_total: int = 0
    bytes_restored: int = 0
    bytes_skipped: int = 0
    files_verified: int = 0
    seconds: float = 0.0
    errors: List[Tuple[str, str]] = field(default_factory=list)

    @property
    def complete(self) -> bool:
        return self.files_restored == self.files_total and self.bytes_restored == self.bytes_total


class RestoreProgress:
    """Receives what happens during a restore. Calls come from several threads, one at a time."""

    def item(self, action: str, location: str, size: int) -> None:
        """An entry is done: action is one of DIR_RESTORED ... DELETED."""

    def error(self, location: str, message: str) -> None:
        """An entry failed; the restore goes on."""


# --- small helpers -------------------------------------------------------------------------

def _valid_name(name: str) -> bool:
    return bool(name) and name not in (".", "..") and "/" not in name and "\0" not in name


def _is_zero(data) -> bool:
    return not data or (data[0] == 0 and data[-1] == 0 and data.count(0) == len(data))


class _File:
    """A regular file whose content is restored."""

    __slots__ = ("location", "target", "size", "_content", "matches", "fresh", "sparse",
                 "remaining", "failed", "created", "action")

    def __init__(self, location, target, size, content, matches, fresh):
        self.location = location
        self.target = target
        self.size = size
        self._content = bytes.fromhex("".join(content))  # 32 bytes per blob id: compact
        self.matches = matches  # per blob: does the existing file hold it already (or None)
        self.fresh = fresh  # its directory was created by this restore
        self.sparse = False
        self.remaining = 0  # blobs still to write
        self.failed = False
        self.created = False
        self.action = FILE_RESTORED if matches is None else FILE_UPDATED

    @property
    def content(self) -> List[str]:
        raw = self._content
        return [raw[i:i + 32].hex() for i in range(0, len(raw), 32)]


class _Blob:
    """A blob to restore: where it is, and every (file, offset) that needs it."""

    __slots__ = ("loc", "offset", "length", "dests")

    def __init__(self, loc: BlobLocation):
        self.loc = loc
        self.offset = loc.offset
        self.length = loc.length
        self.dests: List[Tuple[_File, int]] = []


class _Frame:
    """A directory on the walk's current path."""

    __slots__ = ("location", "node", "target", "selected", "restored", "names")

    def __init__(self, location, node, target, selected):
        self.location = location
        self.node = node
        self.target = target
        self.selected = selected
        self.restored = False
        self.names: List[str] = []


# --- the restorer --------------------------------------------------------------------------

class Restorer:
    def __init__(self, repo, tree_id: str, target: str, selection: Optional[Selection] = None,
                 overwrite: str = "always", delete: bool = False, dry_run: bool = False,
                 sparse: bool = False, progress: Optional[RestoreProgress] = None,
                 workers: Optional[int] = None, ownership_by_name: bool = False):
        if overwrite not in OVERWRITE_MODES:
            raise UsageError(f"invalid overwrite behavior {overwrite!r}, must be one of (always|if-changed|if-newer|never)")
        self.repo = repo
        self.tree_id = tree_id
        self.target = os.path.abspath(target)
        self.select = selection or Selection()
        self.overwrite = overwrite
        self.delete = delete
        self.dry_run = dry_run
        self.sparse = sparse
        self.progress = progress or RestoreProgress()
        # 2 workers, 3 on big machines: more only add GIL contention for small blobs
        self.workers = workers or min(3, max(2, (os.cpu_count() or 2) // 2))
        self.by_name = ownership_by_name
        self.stats = RestoreStats()
        self.root = os.geteuid() == 0
        self._lock = threading.Lock()
        self._loader = TreeLoader(repo, cache_bytes=4 * 1024 * 1024, evict=False)
        self._files: List[_File] = []
        self._file_state: Dict[str, int] = {}  # location -> _CONTENT / _META_ONLY
        self._failed: set = set()  # locations of files whose content failed
        self._skipped: set = set()  # locations of other entries the overwrite mode leaves alone
        self._hardlinks: Dict[Tuple[int, int], Tuple[str, str]] = {}  # (dev, inode) -> (location, target)
        self._ensured: set = set()
        self._fresh: set = set()  # directories this run created: nothing to overwrite in them
        self._reported: set = set()

    # --- reporting ---
    def _error(self, location: str, error) -> None:
        message = error if isinstance(error, str) else error_message(error)
        with self._lock:
            if (location, message) in self._reported:
                return  # e.g. a tree that fails to load in both walks
            self._reported.add((location, message))
            self.stats.errors.append((location, message))
            self.progress.error(location, message)

    def _add(self, size: int) -> None:
        self.stats.files_total += 1
        self.stats.bytes_total += size

    def _done(self, action: str, location: str, size: int = 0, count_bytes: bool = False) -> None:
        with self._lock:
            self.stats.files_restored += 1
            if count_bytes:
                self.stats.bytes_restored += size
            self.progress.item(action, location, size)

    def _skip(self, location: str, size: int, action: str = FILE_UNCHANGED) -> None:
        with self._lock:
            self.stats.files_skipped += 1
            self.stats.bytes_skipped += size
            self.progress.item(action, location, size)

    # --- the run ---
    def run(self, verify: bool = False) -> RestoreStats:
        t0 = time.monotonic()
        self.index = self.repo.load_index()
        if not self.dry_run:
            try:
                os.makedirs(self.target, 0o700, exist_ok=True)
            except OSError as exc:
                raise RestiqueError(f"cannot create target directory: {error_message(exc)}") from None
            if not os.path.isdir(self.target):
                raise RestiqueError(f"cannot create target directory: {self.target} is not a directory")
        self._traverse(self._plan_dir, self._plan_node, None)
        if self.dry_run:
            for f in self._files:
                self._done(f.action, f.location, f.size, count_bytes=True)
        else:
            self._restore_content()
        self._traverse(None, self._finish_node, self._finish_dir)
        self.stats.seconds = time.monotonic() - t0
        if verify and not self.stats.errors and not self.dry_run:
            self.verify()
        return self.stats

    def _traverse(self, enter_dir, visit_node, leave_dir) -> None:
        """restic's traverseTree: selected directories are entered (enter_dir), selected
        other entries visited, and a directory is left (leave_dir, with the names the
        snapshot has in it) if it was selected or anything below it was restored."""
        frames = [_Frame("/", None, self.target, False)]
        descend: Dict[str, bool] = {}

        def on_error(location: str, exc: Exception) -> None:
            self._error(location, exc)
            if len(frames) > 1 and frames[-1].location == location:
                frame = frames.pop()  # never entered: no leaving event comes
                if frame.selected and leave_dir:
                    self._guard(location, leave_dir, frame.node, frame.target, location, None)

        events = walk_events(self.repo, self.tree_id, "/", lambda p, n: descend.pop(p, False),
                             on_error, self._loader)
        for location, node, leaving in events:
            if leaving:
                frame = frames.pop()
                if frame.restored:
                    frames[-1].restored = True
                if (frame.selected or frame.restored) and leave_dir:
                    self._guard(location, leave_dir, node, frame.target, location, frame.names,
                                frame.selected)
                continue
            parent = frames[-1]
            parent.names.append(node.name)
            if not _valid_name(node.name):
                self._error(parent.location, f"invalid child node name {node.name}")
                self.delete = False  # something is off; deleting could hit the wrong files
                continue
            if node.type == "socket":
                continue  # sockets cannot be restored
            target = os.path.join(parent.target, node.name)
            is_dir = node.type == "dir"
            selected, child_may = self.select(location, is_dir)
            if selected:
                parent.restored = True
            if is_dir:
                if selected and enter_dir:
                    self._guard(location, enter_dir, node, target, location)
                if child_may:
                    descend[location] = True
                    frames.append(_Frame(location, node, target, selected))
                elif selected and leave_dir:
                    self._guard(location, leave_dir, node, target, location, None, True)
            elif selected:
                self._guard(location, visit_node, node, target, location, parent.target)
        root = frames[0]
        if root.restored and leave_dir:
            self._guard("/", leave_dir, None, self.target, "/", root.names, True)

    def _guard(self, location: str, fn: Callable, *args) -> None:
        try:
            fn(*args)
        except (OSError, RestiqueError) as exc:
            self._error(location, exc)

    # --- step 1: plan ---
    def _ensure_dir(self, path: str) -> None:
        if self.dry_run or path in self._ensured:
            return
        try:
            st = os.lstat(path)
            if not stat.S_ISDIR(st.st_mode):
                os.unlink(path)  # a file where the snapshot has a directory
                os.makedirs(path, 0o700, exist_ok=True)
                self._fresh.add(path)
        except FileNotFoundError:
            os.makedirs(path, 0o700, exist_ok=True)
            self._fresh.add(path)
        self._ensured.add(path)

    def _plan_dir(self, node: Node, target: str, location: str) -> None:
        self._add(0)
        self._ensure_dir(target)

    def _should_overwrite(self, node: Node, target: str, fresh: bool) -> bool:
        if fresh or self.overwrite in ("always", "if-changed"):
            return True
        try:
            st = os.lstat(target)
        except FileNotFoundError:
            return True
        if self.overwrite == "if-newer":
            return node.mtime.unix_ns > st.st_mtime_ns
        return False

    def _plan_node(self, node: Node, target: str, location: str, parent: str) -> None:
        self._ensure_dir(parent)
        fresh = parent in self._fresh
        if node.type == "file" and node.links > 1 and node.inode:  # no inode: can't tell links apart
            key = (node.device_id, node.inode)
            if key in self._hardlinks:  # restored as a link to the first one
                if self._should_overwrite(node, target, fresh):
                    self._add(0)
                else:
                    self._skipped.add(location)
                    self._skip(location, 0)
                return
            self._hardlinks[key] = (location, target)
        if node.type != "file":
            if self._should_overwrite(node, target, fresh):
                self._add(0)
            else:
                self._skipped.add(location)
                self._skip(location, node.size)
            return
        if not self._should_overwrite(node, target, fresh):
            self._skip(location, node.size)
            return
        matches = None if fresh else self._existing_content(node, target)
        if matches is not None and matches.size_ok and all(matches):
            self._file_state[location] = _META_ONLY
            self._skip(location, node.size)
            return
        self._file_state[location] = _CONTENT
        self._add(node.size)
        self._files.append(_File(location, target, node.size, node.content or [], matches, fresh))

    def _existing_content(self, node: Node, target: str) -> Optional["_Matches"]:
        """Which blobs an existing regular file at target already holds, or None if there is
        nothing usable there (missing, not a regular file, or hard linked elsewhere)."""
        try:
            fd = open_for_reading(target)
        except OSError:
            return None
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode) or st.st_nlink > 1:
                return None
            content = node.content or []
            matches = _Matches([False] * len(content))
            matches.size_ok = st.st_size == node.size
            if self.overwrite == "if-changed" and matches.size_ok and st.st_mtime_ns == node.mtime.unix_ns:
                matches[:] = [True] * len(content)  # trusted: same size and mtime
                return matches
            offset = 0
            for i, blob_id in enumerate(content):
                loc = self.index.lookup("data", blob_id)
                if loc is None:
                    break
                data = os.pread(fd, loc.size, offset)
                if len(data) < loc.size:
                    break
                matches[i] = hashlib.sha256(data).hexdigest() == blob_id
                offset += loc.size
            return matches
        finally:
            os.close(fd)

    # --- step 2: content ---
    def _restore_content(self) -> None:
        packs: Dict[str, Dict[str, _Blob]] = {}  # in order of first use
        lookup = self.index.lookup
        for f in self._files:
            f.sparse = self.sparse and f.matches is None  # holes only in files written from scratch
            offset = 0
            already = 0
            for i, blob_id in enumerate(f.content):
                loc = lookup("data", blob_id)
                if loc is None:
                    self._fail(f, f"Unknown blob {blob_id}")
                    break
                size = loc.size
                if f.matches is not None and f.matches[i]:
                    already += size
                else:
                    pack = packs.get(loc.pack_id)
                    if pack is None:
                        pack = packs[loc.pack_id] = {}
                    blob = pack.get(blob_id)
                    if blob is None:
                        blob = pack[blob_id] = _Blob(loc)
                    blob.dests.append((f, offset))
                    f.remaining += 1
                offset += size
            if f.failed:
                continue
            if f.remaining != 1:
                # a file with one blob to write is created by the worker that writes it; the
                # others now, so that workers writing different parts never race to create it
                try:
                    os.close(self._open_file(f))
                except OSError as exc:
                    self._fail(f, exc)
                    continue
            if already:
                with self._lock:
                    self.stats.bytes_restored += already
            if f.remaining == 0:
                self._done(f.action, f.location, f.size)

        if packs:
            with ThreadPoolExecutor(self.workers, thread_name_prefix="restore") as pool:
                futures = [pool.submit(self._restore_pack, pack_id, packs.pop(pack_id))
                           for pack_id in list(packs)]
                try:
                    for fut in futures:
                        fut.result()
                except BaseException:
                    for fut in futures:
                        fut.cancel()
                    raise
        for f in self._files:
            if f.failed:
                self._failed.add(f.location)
                if f.created:
                    try:
                        os.unlink(f.target)  # no half-restored file that looks like the real one
                    except OSError:
                        pass

    def _open_file(self, f: _File, written: int = 0) -> int:
        """Create (or, to update it in place, open) f's target at its final size; returns a
        descriptor open for writing. written: how many bytes from the start the caller
        writes right away (no need to set the size first if that is all of it)."""
        flags = os.O_WRONLY | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0)
        if f.matches is None:
            flags |= os.O_CREAT | os.O_TRUNC
            if not f.fresh:
                try:
                    st = os.lstat(f.target)
                    if not stat.S_ISREG(st.st_mode) or st.st_nlink > 1:
                        remove_path(f.target, self.delete)
                except FileNotFoundError:
                    pass
        try:
            fd = os.open(f.target, flags, 0o600)
        except PermissionError:  # a read-only file: its mode is set again later
            os.chmod(f.target, 0o600)
            fd = os.open(f.target, flags, 0o600)
        f.created = True
        try:
            if f.matches is not None:
                if os.fstat(fd).st_size != f.size:
                    os.ftruncate(fd, f.size)
            elif f.size and (f.size != written or f.sparse):
                os.ftruncate(fd, f.size)
                if not f.sparse and f.size >= 1 << 20:
                    try:
                        os.posix_fallocate(fd, 0, f.size)
                    except OSError:
                        pass  # not supported here: the writes allocate
        except BaseException:
            os.close(fd)
            raise
        return fd

    def _fail(self, f: _File, error) -> None:
        with self._lock:
            if f.failed:
                return
            f.failed = True
        self._error(f.location, error)

    def _blob_written(self, f: _File, size: int) -> None:
        with self._lock:
            self.stats.bytes_restored += size
            f.remaining -= 1
            if f.remaining or f.failed:
                return
            self.stats.files_restored += 1
            self.progress.item(f.action, f.location, f.size)

    def _restore_pack(self, pack_id: str, blobs: Dict[str, _Blob]) -> None:
        ordered = sorted(blobs.items(), key=lambda kv: kv[1].offset)
        # how many of its blobs each file gets from this pack: its descriptor closes after the last
        uses: Dict[_File, int] = {}
        for _, blob in ordered:
            for f, _ in blob.dests:
                uses[f] = uses.get(f, 0) + 1
        fds: Dict[_File, int] = {}
        try:
            for start, end, group in _read_ranges(ordered):
                try:
                    data = self.repo.backend.load(FileType.PACK, pack_id, start, end - start)
                except (OSError, EOFError, RestiqueError) as exc:
                    message = _pack_error(pack_id, exc)
                    for _, blob in group:
                        for f, _ in blob.dests:
                            self._fail(f, message)
                    continue
                view = memoryview(data)
                for blob_id, blob in group:
                    self._write_blob(pack_id, blob_id, blob, view[blob.offset - start:blob.offset - start + blob.length],
                                     uses, fds)
                del view, data
        finally:
            for fd in fds.values():
                os.close(fd)

    def _write_blob(self, pack_id, blob_id, blob, sealed, uses, fds) -> None:
        live = [(f, off) for f, off in blob.dests if not f.failed]
        if live:
            try:
                plain = self.repo.blobs.decode(blob_id, sealed, blob.loc)
            except (RestiqueError, ValueError, EOFError) as exc:  # damaged data, never a crash
                for f, _ in live:
                    self._fail(f, exc)
            else:
                zero = self.sparse and _is_zero(plain)
                for f, off in live:
                    try:
                        if zero and f.sparse and not f.created:
                            os.close(self._open_file(f))  # the hole needs the file
                        elif not (zero and f.sparse):
                            fd = fds.get(f)
                            if fd is None:
                                if f.created:
                                    fd = os.open(f.target, os.O_WRONLY | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0))
                                else:  # its only blob: the write sets the size
                                    fd = self._open_file(f, len(plain) if off == 0 else 0)
                                fds[f] = fd
                            pwrite_all(fd, plain, off)
                        self._blob_written(f, len(plain))
                    except OSError as exc:
                        self._fail(f, exc)
        for f, _ in blob.dests:  # close descriptors no longer needed
            uses[f] -= 1
            if uses[f] == 0:
                fd = fds.pop(f, None)
                if fd is not None:
                    os.close(fd)

    # --- step 3: special files, hard links, metadata, deletions ---
    def _finish_node(self, node: Node, target: str, location: str, parent: str) -> None:
        if location in self._skipped:
            return
        fresh = parent in self._fresh
        if node.type == "file":
            if node.links > 1 and node.inode:
                first_location, first_target = self._hardlinks.get((node.device_id, node.inode), (location, target))
                if first_location != location:
                    self._link(node, first_location, first_target, target, location, fresh)
                    return
            state = self._file_state.get(location)
            if state and location not in self._failed:
                self._metadata(node, target, location, fresh)
            return
        if not self.dry_run:
            if not fresh:
                try:
                    remove_path(target, self.delete)  # --delete may replace a non-empty directory
                except OSError as exc:
                    raise RestiqueError(os_message("remove", target, exc)) from None
            self._create_special(node, target)
        self._done(OTHER_RESTORED, location)
        self._metadata(node, target, location, fresh)

    def _create_special(self, node: Node, target: str) -> None:
        try:
            if node.type == "symlink":
                os.symlink(node.linktarget, target)
            elif node.type == "fifo":
                os.mkfifo(target, 0o600)
            elif node.type == "dev":
                os.mknod(target, stat.S_IFBLK | 0o600, node.device)
            elif node.type == "chardev":
                os.mknod(target, stat.S_IFCHR | 0o600, node.device)
            else:
                raise RestiqueError(f"filetype {node.type!r} not implemented")
        except OSError as exc:
            op = {"symlink": f"symlink {node.linktarget}", "fifo": "mkfifo"}.get(node.type, "mknod")
            raise RestiqueError(os_message(op, target, exc)) from None

    def _link(self, node: Node, source_location: str, source: str, target: str, location: str,
              fresh: bool) -> None:
        if source_location in self._failed:
            raise RestiqueError(f"cannot create hard link to {source_location}: it was not restored")
        if not self.dry_run:
            try:
                if not fresh:
                    remove_path(target, self.delete)
                os.link(source, target)
            except OSError as exc:
                raise RestiqueError(os_message(f"link {source}", target, exc)) from None
        self._done(OTHER_RESTORED, location)
        self._metadata(node, target, location, fresh)

    def _finish_dir(self, node: Optional[Node], target: str, location: str, names, selected=True) -> None:
        if self.delete and names is not None:
            self._remove_unexpected(target, location, names)
        if node is None:
            return
        if not selected:  # a parent of restored entries: restored, though not selected itself
            self._add(0)
        if self._metadata(node, target, location, target in self._fresh):
            self._done(DIR_RESTORED, location)

    def _remove_unexpected(self, target: str, location: str, names: List[str]) -> None:
        try:
            entries = os.listdir(target)
        except FileNotFoundError:
            return
        keep = set(names)
        for entry in sorted(entries):
            if entry in keep:
                continue
            if not self.select(join(location, entry), False)[0]:
                continue
            path = os.path.join(target, entry)
            doomed = [path]
            if os.path.isdir(path) and not os.path.islink(path):
                for dirpath, dirnames, filenames in os.walk(path):
                    doomed += [os.path.join(dirpath, n) for n in dirnames + filenames]
            if not self.dry_run:
                remove_path(path, True)
            for p in reversed(doomed):
                with self._lock:
                    self.stats.files_deleted += 1
                    self.progress.item(DELETED, p, 0)

    def _metadata(self, node: Node, path: str, location: str, fresh: bool = False) -> bool:
        """Owner, extended attributes, times and mode, in restic's order; the first failure
        is reported. Without root, permission errors are expected and ignored. fresh: path
        was created by this run (so it has no extended attributes to remove)."""
        if self.dry_run:
            return True
        first: Optional[str] = None
        is_link = node.type == "symlink"
        uid, gid = node.uid, node.gid
        if self.by_name:
            uid, gid = _uid_by_name(node.user), _gid_by_name(node.group)
        try:
            os.chown(path, uid, gid, follow_symlinks=False)
        except OSError as exc:
            if self.root or exc.errno not in (errno.EPERM, errno.EACCES):
                first = os_message("lchown", path, exc)
        err = self._xattrs(node, path, is_link, fresh)
        first = first or err
        try:
            os.utime(path, ns=(node.atime.unix_ns, node.mtime.unix_ns), follow_symlinks=False)
        except OSError as exc:
            first = first or f"failed to restore timestamp of {path!r}: {error_message(exc)}"
        if not is_link:
            try:
                os.chmod(path, node.unix_mode)
            except OSError as exc:
                if self.root or exc.errno not in (errno.EPERM, errno.EACCES):
                    first = first or os_message("chmod", path, exc)
        if first:
            self._error(location, first)
            return False
        return True

    def _xattrs(self, node: Node, path: str, is_link: bool, fresh: bool) -> Optional[str]:
        ignorable = (errno.ENOTSUP, errno.EOPNOTSUPP, errno.ENODATA)
        expected = set()
        for name, value in node.xattrs:
            expected.add(name)
            try:
                os.setxattr(path, name, value or b"", follow_symlinks=False)
            except OSError as exc:
                if exc.errno in ignorable or (is_link and exc.errno == errno.EPERM):
                    continue
                if not self.root and exc.errno in (errno.EPERM, errno.EACCES):
                    continue
                return os_message(f"setxattr {name}", path, exc)
        if fresh:
            return None
        try:
            present = os.listxattr(path, follow_symlinks=False)
        except OSError:
            return None
        for name in present:
            if name in expected or not name.startswith(("user.", "trusted.")):
                continue  # security.* and system.* belong to the system, not the snapshot
            try:
                os.removexattr(path, name, follow_symlinks=False)
            except OSError as exc:
                if exc.errno not in ignorable + (errno.EPERM, errno.EACCES):
                    return os_message(f"removexattr {name}", path, exc)
        return None

    # --- verification ---
    def verify(self) -> int:
        """Re-read every file whose content was restored and check each blob's SHA-256."""
        files = [f for f in self._files if not f.failed]
        sizes: Dict[str, int] = {}
        for f in files:
            for blob_id in f.content:
                if blob_id not in sizes:
                    loc = self.index.lookup("data", blob_id)
                    sizes[blob_id] = loc.size if loc else -1
        with ThreadPoolExecutor(self.workers, thread_name_prefix="verify") as pool:
            for f, problem in zip(files, pool.map(lambda f: _verify_file(f, sizes), files)):
                if problem:
                    self._error(f.location, problem)
                else:
                    self.stats.files_verified += 1
        return self.stats.files_verified


class _Matches(list):
    """Per-blob match flags of an existing file, plus whether its size is right."""

    size_ok = True


def _verify_file(f: _File, sizes: Dict[str, int]) -> Optional[str]:
    try:
        fd = open_for_reading(f.target)
    except OSError as exc:
        return os_message("open", f.target, exc)
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            return f"Expected {f.target} to be a regular file"
        if st.st_size != f.size:
            return f"Invalid file size for {f.target}: expected {f.size}, got {st.st_size}"
        content = f.content
        buf = bytearray(max([sizes[b] for b in content] + [0]))
        view = memoryview(buf)
        offset = 0
        with os.fdopen(os.dup(fd), "rb", buffering=0) as stream:
            for blob_id in content:
                n = sizes[blob_id]
                if n < 0:
                    return f"Unable to fetch blob {blob_id}"
                got = stream.readinto(view[:n])
                while got < n:
                    more = stream.readinto(view[got:n])
                    if not more:
                        return f"Invalid file size for {f.target}: expected {f.size}, got {offset + got}"
                    got += more
                if hashlib.sha256(view[:n]).hexdigest() != blob_id:
                    return f"Unexpected content in {f.target}, starting at offset {offset}"
                offset += n
        return None
    except OSError as exc:
        return os_message("read", f.target, exc)
    finally:
        os.close(fd)


def _read_ranges(ordered: List[Tuple[str, _Blob]]):
    """Group blobs sorted by offset into (start, end, blobs) reads: neighbours closer than
    MAX_GAP share a read, no read is larger than MAX_READ (unless one blob is)."""
    group: List[Tuple[str, _Blob]] = []
    start = end = 0
    for item in ordered:
        blob = item[1]
        b_end = blob.offset + blob.length
        if group and (blob.offset - end > MAX_GAP or b_end - start > MAX_READ):
            yield start, end, group
            group = []
        if not group:
            start = blob.offset
        group.append(item)
        end = max(end, b_end) if len(group) > 1 else b_end
    if group:
        yield start, end, group


def _pack_error(pack_id: str, exc: BaseException) -> str:
    if isinstance(exc, FileNotFoundError):
        return f"pack {pack_id[:10]} is missing: {error_message(exc)}"
    if isinstance(exc, EOFError):
        return f"pack {pack_id[:10]} is truncated: {exc}"
    return f"reading pack {pack_id[:10]}: {error_message(exc)}"


def _uid_by_name(name: str) -> int:
    import pwd

    try:
        return pwd.getpwnam(name).pw_uid if name else -1
    except KeyError:
        return -1


def _gid_by_name(name: str) -> int:
    import grp

    try:
        return grp.getgrnam(name).gr_gid if name else -1
    except KeyError:
        return -1


def restore_snapshot(repo, tree_id: str, target: str, include=None, exclude=None,
                     overwrite: str = "always", delete: bool = False, dry_run: bool = False,
                     verify: bool = False, sparse: bool = False,
                     progress: Optional[RestoreProgress] = None, workers: Optional[int] = None,
                     ownership_by_name: bool = False) -> RestoreStats:
    """Restore the tree tree_id (a snapshot's root tree, or a subfolder's) below target.

    include/exclude: pattern strings (restic's --include/--exclude syntax) or pattern
    matchers; only one of the two. overwrite: always | if-changed | if-newer | never.
    delete: remove what the snapshot doesn't have (only below selected paths). verify: re-read
    the restored files afterwards (skipped after errors). sparse: leave all-zero blobs as
    holes. Per-entry failures go to progress.error and RestoreStats.errors; the caller
    decides what they mean for its exit code.
    """
    restorer = Restorer(repo, tree_id, target, Selection(include, exclude), overwrite, delete,
                        dry_run, sparse, progress, workers, ownership_by_name)
    return restorer.run(verify=verify)
