"""A repository in a local directory, laid out exactly as restic lays it out."""
from __future__ import annotations

import itertools
import mmap
import os
import signal
import stat
import time
from typing import Iterator, Optional, Tuple

from ..errors import AlreadyExists, RestiqueError
from .base import FOLDER_TYPES, BackendNotFound, BackendShortRead, FileType, check_range, not_found
from .direct_writes import DirectAppender
from .parts import FileBody, byte_size, mark_written, write_parts

DIR_MODE = 0o700
FILE_MODE = 0o400  # restic makes repository files read-only
_tmp_serial = itertools.count()  # unique temporary names for saves from several threads
_HOST = os.uname().nodename  # socket.gethostname(), without loading socket
# A temporary file of another host, or of restic (whose names say nothing about their writer),
# is only taken for abandoned after this long: a save takes seconds, not hours.
STALE_TEMPORARY_SECONDS = 24 * 3600
# Crash-safety tests: "N[:stage]" makes the process SIGKILL itself at its Nth save, at
# one of the stages below (default "start"), or with "N:remove" just before its Nth
# removal. Unset (always, in real use) it costs one test.
KILL_VARIABLE = "RESTIQUE_TEST_KILL_AT_SAVE"
KILL_STAGES = ("start", "partial", "synced", "renamed", "remove")
# map_range maps reads from this size on: below it a copy costs less than mapping and unmapping
MAP_MIN = 64 * 1024
# madvise(MADV_POPULATE_READ) (Linux 5.14): reads every page of a mapping in, and fails where an
# access would raise SIGBUS (an I/O error, a file shortened meanwhile) instead of killing us
_POPULATE_READ = getattr(mmap, "MADV_POPULATE_READ", 22)


def _translated(exc: OSError) -> OSError:
    """The contract's not-found error for a missing file (or a missing folder on its path)."""
    if isinstance(exc, (FileNotFoundError, NotADirectoryError)):
        return BackendNotFound(exc.errno, exc.strerror, exc.filename)
    return exc


class LocalBackend:
    atomic_replace = True  # rename() replaces an existing file
    # a save's parts may be reused once written (before the fsync): local saves are never
    # retried, so nothing reads them again
    releases_written_parts = True

    def __init__(self, path: str, location: Optional[str] = None):
        self.path = path
        self.location = location or path
        self._cleaned = False  # stale temporary files are removed before the first save but a lock's

    # --- layout ---
    def _dir(self, ftype: FileType, name: str = "") -> str:
        if ftype is FileType.PACK and name:
            return os.path.join(self.path, "data", name[:2])
        return os.path.join(self.path, ftype.folder) if ftype is not FileType.CONFIG else self.path

    def _file(self, ftype: FileType, name: str) -> str:
        if ftype is FileType.CONFIG:
            return os.path.join(self.path, "config")
        return os.path.join(self._dir(ftype, name), name)

    def create(self) -> None:
        if os.path.exists(self._file(FileType.CONFIG, "")):
            raise AlreadyExists(f"create repository at {self.location} failed: config file already exists")
        try:
            os.makedirs(self.path, mode=DIR_MODE, exist_ok=True)
            for ftype in FOLDER_TYPES:
                os.makedirs(self._dir(ftype), mode=DIR_MODE, exist_ok=True)
            for i in range(256):
                os.makedirs(os.path.join(self.path, "data", "%02x" % i), mode=DIR_MODE, exist_ok=True)
        except OSError as exc:
            raise RestiqueError(f"create repository at {self.location} failed: {exc.strerror}: {exc.filename}") from None

    # --- files ---
    def start_pack(self) -> "LocalPackFile":
        """A pack file written while its pack fills (restic's packs also go to a temporary
        file first), so that memory holds only the part not yet written; commit names it."""
        self._clean_once(FileType.PACK)
        return LocalPackFile(self)

    def save(self, ftype: FileType, name: str, data) -> None:
        """Atomic: a temporary name, fsync, rename, then fsync of the folder so that the
        rename survives a power loss before anything written later (an index naming this
        pack) does."""
        kill_stage = _kill_switch.stage() if _kill_switch is not None else None
        if kill_stage == "start":
            _kill_switch.fire()
        self._clean_once(ftype)
        final = self._file(ftype, name)
        tmp = f"{final}-tmp-{_HOST}-{os.getpid()}-{next(_tmp_serial)}"
        fd = self._create(tmp)
        try:
            if kill_stage == "partial":
                write_parts(fd, _first_half(data))
                _kill_switch.fire()
            write_parts(fd, data)
            mark_written(data)  # the caller may reuse the parts' memory during the fsync
            os.fsync(fd)
        except BaseException:
            os.close(fd)
            os.unlink(tmp)
            raise
        os.close(fd)
        self._put_in_place(tmp, final, kill_stage)

    def _clean_once(self, ftype: FileType) -> None:
        if not self._cleaned and ftype is not FileType.LOCK:  # not for every command's lock:
            self._cleaned = True                               # it lists ~270 folders
            self.remove_stale_temporary_files()

    @staticmethod
    def _create(tmp: str) -> int:
        """A new temporary file's descriptor (its folder made if missing)."""
        try:
            return os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileNotFoundError:
            LocalBackend._create_folder(os.path.dirname(tmp))
            return os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)

    def _put_in_place(self, tmp: str, final: str, kill_stage: Optional[str]) -> None:
        """A synced temporary file renamed to its final name, and the rename made durable."""
        os.chmod(tmp, FILE_MODE)
        if kill_stage == "synced":
            _kill_switch.fire()
        try:
            os.rename(tmp, final)
        except FileNotFoundError:
            if os.path.exists(tmp):  # the pack's folder (data/xx) is missing
                self._create_folder(os.path.dirname(final))
                os.rename(tmp, final)
            else:
                raise
        if kill_stage == "renamed":
            _kill_switch.fire()
        _fsync_dir(os.path.dirname(final))

    @staticmethod
    def _create_folder(directory: str) -> None:
        os.makedirs(directory, mode=DIR_MODE, exist_ok=True)
        _fsync_dir(os.path.dirname(directory))

    def remove_stale_temporary_files(self) -> int:
        """Remove what interrupted saves left: temporary files of dead processes on this
        host, and any temporary file older than STALE_TEMPORARY_SECONDS. Runs once, before
        a process's first save of anything but a lock. Returns how many were removed."""
        folders = [self._dir(t) for t in FOLDER_TYPES] + [self.path]  # data/ has pack files
        try:
            data = os.path.join(self.path, "data")
            folders += [e.path for e in os.scandir(data) if e.is_dir()]
        except OSError:
            pass
        removed = 0
        for folder in folders:
            try:
                entries = [e for e in os.scandir(folder) if "-tmp-" in e.name]
            except OSError:
                continue
            for entry in entries:
                if _abandoned(entry):
                    try:
                        os.unlink(entry.path)
                        removed += 1
                    except OSError:
                        pass  # gone already, or not ours to remove: harmless either way
        return removed

    def load(self, ftype: FileType, name: str, offset: int = 0, length: Optional[int] = None) -> bytes:
        check_range(offset, length)
        try:
            f = open(self._file(ftype, name), "rb")
        except OSError as exc:
            raise _translated(exc) from None
        with f:
            if offset:
                f.seek(offset)
            data = f.read() if length is None else f.read(length)
            if not data and offset:  # nothing there: was the offset past the end?
                size = os.fstat(f.fileno()).st_size
                if offset > size:
                    raise BackendShortRead(f"{ftype.label}/{name}: offset {offset} is past the end ({size} bytes)")
        if length is not None and len(data) != length:
            raise BackendShortRead(
                f"{ftype.label}/{name}: short read, wanted {length} bytes at {offset}, got {len(data)}"
            )
        return data

    def map_range(self, ftype: FileType, name: str, offset: int, length: int):
        """load() of a range as a read-only view of the file's pages, without copying them
        (a restore reads every byte of its packs once: the copy was ~7% of its CPU).
        Small ranges, and any trouble mapping, go through load(), which reports errors."""
        check_range(offset, length)
        if length is None or length < MAP_MIN:
            return self.load(ftype, name, offset, length)
        try:
            fd = os.open(self._file(ftype, name), os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
        except OSError as exc:
            raise _translated(exc) from None
        try:
            if os.fstat(fd).st_size < offset + length:
                return self.load(ftype, name, offset, length)  # says how it falls short
            start = offset - offset % mmap.ALLOCATIONGRANULARITY
            mapped = mmap.mmap(fd, offset + length - start, access=mmap.ACCESS_READ, offset=start)
            try:
                mapped.madvise(_POPULATE_READ)
            except OSError:
                mapped.close()
                return self.load(ftype, name, offset, length)
        except OSError:
            return self.load(ftype, name, offset, length)
        finally:
            os.close(fd)
        return memoryview(mapped)[offset - start:offset - start + length]

    def stat(self, ftype: FileType, name: str) -> int:
        path = self._file(ftype, name)
        try:
            st = os.stat(path)
        except OSError as exc:
            raise _translated(exc) from None
        if not stat.S_ISREG(st.st_mode):  # a folder where a file belongs is no repository file
            raise not_found(ftype, name, path)
        return st.st_size

    def remove(self, ftype: FileType, name: str) -> None:
        if _kill_switch is not None:
            _kill_switch.before_removal()
        try:
            os.unlink(self._file(ftype, name))
        except OSError as exc:
            raise _translated(exc) from None

    def list(self, ftype: FileType) -> Iterator[Tuple[str, int]]:
        if ftype is FileType.CONFIG:
            return
        dirs = [self._dir(ftype)]
        if ftype is FileType.PACK:
            try:
                dirs = sorted(e.path for e in os.scandir(dirs[0]) if e.is_dir())
            except FileNotFoundError:
                return
        for directory in dirs:
            try:
                entries = list(os.scandir(directory))
            except FileNotFoundError:
                continue
            for entry in entries:
                if "-tmp-" in entry.name or not entry.is_file():
                    continue
                try:
                    yield entry.name, entry.stat().st_size
                except FileNotFoundError:
                    continue

    def close(self) -> None:
        pass


class LocalPackFile:
    """A pack's temporary file in data/ (restic's listing of data/ looks only into its
    sub-folders), appended to as the pack fills; commit() renames it to the pack's name in
    data/xx/, abort() removes it. Not thread-safe: its writer appends in pack order."""

    def __init__(self, backend: LocalBackend):
        self._backend = backend
        self.tmp = os.path.join(backend.path, "data", f"pack-tmp-{_HOST}-{os.getpid()}-{next(_tmp_serial)}")
        self._fd: Optional[int] = None
        self._direct: Optional[DirectAppender] = None  # on a local disk: past the page cache
        self.size = 0

    def write(self, parts) -> None:
        if self._fd is None:
            self._fd = LocalBackend._create(self.tmp)
            self._direct = DirectAppender.start(self._fd)
        if self._direct is not None:
            self._direct.append(parts)
        else:
            write_parts(self._fd, parts)
        self.size += byte_size(parts)

    def _end_direct_writes(self) -> None:
        if self._direct is not None:
            self._direct.finish()
            self._direct = None

    def commit(self, name: str, tail) -> None:
        """Append tail (the pack's header), sync, and name the file name: as save() would
        have stored the whole pack, kill-switch stages included."""
        kill_stage = _kill_switch.stage() if _kill_switch is not None else None
        if kill_stage == "start":
            _kill_switch.fire()
        try:
            self.write(tail)
            self._end_direct_writes()  # with the bytes short of a block it held
            mark_written(tail)  # as in save()
            if kill_stage == "partial":
                _kill_switch.fire()
            os.fsync(self._fd)
        except BaseException:
            self.abort()
            raise
        os.close(self._fd)
        self._fd = None
        self._backend._put_in_place(self.tmp, self._backend._file(FileType.PACK, name), kill_stage)

    def abort(self) -> None:
        """Remove the unfinished file (safe to call more than once)."""
        self._direct = None
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
            try:
                os.unlink(self.tmp)
            except OSError:
                pass  # gone already: what remains of it is removed as stale by a later save


def _fsync_dir(path: str) -> None:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    except OSError:
        return  # a folder that cannot be opened cannot be synced either (some network file systems)
    try:
        os.fsync(fd)
    except OSError:
        pass  # not supported here: the rename stands, only its durability is the file system's
    finally:
        os.close(fd)


def _abandoned(entry: os.DirEntry) -> bool:
    """Is this temporary file left over by a save that will never finish?"""
    host, _, rest = entry.name.partition("-tmp-")[2].rpartition("-")[0].rpartition("-")
    pid = rest if rest.isdigit() else ""
    if host == _HOST and pid:
        try:
            os.kill(int(pid), 0)
        except ProcessLookupError:
            return True
        except OSError:
            pass  # alive, under another user
    try:
        return time.time() - entry.stat(follow_symlinks=False).st_mtime > STALE_TEMPORARY_SECONDS
    except OSError:
        return False


class _KillSwitch:
    """SIGKILL at the Nth save (counted over every file type and thread) and stage, or
    before the Nth removal."""

    def __init__(self, spec: str):
        count, _, stage = spec.partition(":")
        self.target = int(count)
        self.stage_name = stage or "start"
        if self.stage_name not in KILL_STAGES:
            raise ValueError(f"{KILL_VARIABLE}: unknown stage {self.stage_name!r}")
        self.saves = itertools.count(1)
        self.removals = itertools.count(1)

    def stage(self) -> Optional[str]:
        if self.stage_name == "remove":
            return None
        return self.stage_name if next(self.saves) == self.target else None

    def before_removal(self) -> None:
        if self.stage_name == "remove" and next(self.removals) == self.target:
            self.fire()

    @staticmethod
    def fire() -> None:
        os.kill(os.getpid(), signal.SIGKILL)


def _first_half(data) -> bytes:
    whole = b"".join(data) if isinstance(data, (list, tuple, FileBody)) else bytes(data)
    return whole[: len(whole) // 2]


_kill_switch = _KillSwitch(os.environ[KILL_VARIABLE]) if os.environ.get(KILL_VARIABLE) else None
