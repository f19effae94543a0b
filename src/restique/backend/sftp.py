"""A repository on an SFTP server, reached through the system ssh, laid out as restic lays it out.

Locations, as restic accepts them: `sftp:user@host:path` (relative to the login folder, or
absolute with a leading `/`) and `sftp://user@host:port/path` (`//path` for an absolute one).
Options: `sftp.command` (the whole command that speaks SFTP on its stdin/stdout, instead of
ssh), `sftp.args` (extra arguments for ssh), `sftp.connections` (how many requests a command keeps in flight).
"""
import errno
import os
import posixpath
import secrets
import shlex
import stat
import threading
import weakref
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Dict, Iterator, List, Optional, Tuple
from urllib.parse import urlsplit

from ..errors import AlreadyExists, UsageError
from .base import FOLDER_TYPES, BackendError, BackendNotFound, BackendShortRead, FileType, check_range
from .options import BackendOptions, Option, positive_int
from .parts import FileBody
from .sftp_protocol import ProtocolError
from .sftp_session import SessionLost, SshSession

SFTP_FLAG_READ = 0x01  # open flags, as the SFTP protocol (version 3) numbers them
NEW_FILE = 0x02 | 0x08 | 0x10 | 0x20  # write, create, truncate, exclusive

DIR_MODE = 0o700
FILE_MODE = 0o400  # restic makes repository files read-only
TEMP_MARK = "-restic-temp-"  # restic's infix for files being written


@dataclass
class SftpConfig:
    user: str
    host: str
    port: str
    path: str


def parse_location(location: str) -> SftpConfig:
    """The parts of an sftp location; UsageError for one restic would refuse."""
    if location.startswith("sftp://"):
        url = urlsplit(location)
        try:
            port = str(url.port or "")
        except ValueError:
            raise UsageError(f"invalid backend {location!r}, invalid port") from None
        if not url.path:
            raise UsageError(f"invalid backend {location!r}, no directory specified")
        user, host, folder = url.username or "", url.hostname or "", url.path[1:]
    elif location.startswith("sftp:"):
        host, colon, folder = location[len("sftp:"):].partition(":")
        if not colon:
            raise UsageError("sftp: invalid format, hostname or path not found")
        user, at, name = host.rpartition("@")
        host, port = (name if at else host), ""
    else:
        raise UsageError('invalid format, does not start with "sftp:"')
    folder = posixpath.normpath(folder) if folder else "."
    if folder.startswith("~"):
        raise UsageError(
            "sftp path starts with the tilde (~) character, that fails for most sftp servers. "
            "Use a relative directory, most servers interpret this as relative to the user's home directory"
        )
    return SftpConfig(user, host, port, folder)


# the sftp.* extended options restic knows: parser and default
OPTIONS = {
    "command": Option(str, "", "specify command to create sftp connection"),
    "args": Option(str, "", "specify arguments for ssh"),
    "connections": Option(positive_int, 5, "set a limit for the number of concurrent connections (default: 5)"),
}


def ssh_command(config: SftpConfig, settings: Dict[str, object]) -> List[str]:
    """The command restic would run: `ssh host [-p port] [-l user] [args] -s sftp`."""
    command, args = settings.get("command", ""), settings.get("args", "")
    try:
        if command:
            if args:
                raise UsageError("cannot specify both sftp.command and sftp.args options")
            return shlex.split(command)
        argv = ["ssh", config.host]
        if config.port:
            argv += ["-p", config.port]
        if config.user:
            argv += ["-l", config.user]
        return argv + shlex.split(args) + ["-s", "sftp"]
    except ValueError as exc:
        raise UsageError(f"invalid sftp option: {exc}") from None


def open_sftp(location: str, options: Optional[BackendOptions] = None) -> "SftpBackend":
    """The backend for an sftp location, with the sftp.* options (-o) applied."""
    settings = (options or BackendOptions()).for_scheme("sftp", OPTIONS)
    config = parse_location(location)
    backend = SftpBackend(config, ssh_command(config, settings), location)
    backend.connections = settings["connections"]  # requests in flight at once on the one session
    return backend


class SftpBackend:
    atomic_replace = True  # posix-rename@openssh.com replaces; servers without it refuse instead

    def __init__(self, config: SftpConfig, command: List[str], location: str):
        self.config = config
        self.location = location
        self.path = config.path
        self._lock = threading.Lock()  # for close(): requests from many threads share the session
        self._session = SshSession(command, config.host or location, location)
        self._closer = weakref.finalize(self, self._session.close)

    # --- layout, as restic's default layout ---
    def _dir(self, ftype: FileType, name: str = "") -> str:
        if ftype is FileType.PACK and name:
            return posixpath.join(self.path, "data", name[:2])
        return self.path if ftype is FileType.CONFIG else posixpath.join(self.path, ftype.folder)

    def _file(self, ftype: FileType, name: str) -> str:
        if ftype is FileType.CONFIG:
            return posixpath.join(self.path, "config")
        return posixpath.join(self._dir(ftype, name), name)

    @contextmanager
    def _client(self, path: str):
        """The SFTP client for one operation, with its errors in the contract's terms."""
        session = self._session
        if session is None:
            raise SessionLost(errno.ECONNABORTED, "the sftp backend is closed", self.location)
        try:
            yield session.client
        except BackendError:  # already in the contract's terms (a short read is an EOFError)
            raise
        except FileNotFoundError as exc:
            raise BackendNotFound(errno.ENOENT, os.strerror(errno.ENOENT), path) from None
        except PermissionError as exc:
            raise PermissionError(errno.EACCES, exc.strerror or "permission denied", path) from None
        except (ProtocolError, ConnectionError, EOFError) as exc:
            if session.alive() and not isinstance(exc, (ConnectionError, EOFError)):
                raise BackendError(errno.EIO, f"sftp: {exc}", path) from None
            raise session.lost() from None
        except OSError as exc:
            if exc.errno is None and not session.alive():
                raise session.lost() from None
            if exc.errno is None:  # an SFTP failure status: the server's text
                raise BackendError(errno.EIO, str(exc) or "failure", path) from None
            raise

    # --- repository ---
    def create(self) -> None:
        with self._client(self.path) as sftp:
            try:
                sftp.lstat(self._file(FileType.CONFIG, ""))
                exists = True
            except FileNotFoundError:
                exists = False
            if exists:
                raise AlreadyExists(f"create repository at {self.location} failed: config file already exists")
            self._mkdir_all(sftp, self.path)
            folders = [self._dir(ftype) for ftype in FOLDER_TYPES]
            folders += [posixpath.join(self.path, "data", "%02x" % i) for i in range(256)]
            for folder in folders:
                self._mkdir(sftp, folder)

    @staticmethod
    def _mkdir(sftp, folder: str) -> None:
        try:
            sftp.mkdir(folder, DIR_MODE)
        except OSError:
            if not stat.S_ISDIR(sftp.stat(folder).st_mode):
                raise

    def _mkdir_all(self, sftp, folder: str) -> None:
        try:
            if stat.S_ISDIR(sftp.stat(folder).st_mode):
                return
            raise NotADirectoryError(errno.ENOTDIR, os.strerror(errno.ENOTDIR), folder)
        except FileNotFoundError:
            pass
        parent = posixpath.dirname(folder)
        if parent and parent not in (folder, "."):
            self._mkdir_all(sftp, parent)
        self._mkdir(sftp, folder)

    # --- files ---
    def save(self, ftype: FileType, name: str, data) -> None:
        final = self._file(ftype, name)
        temp = f"{final}{TEMP_MARK}{secrets.token_hex(16)}"
        parts = data if isinstance(data, (list, tuple, FileBody)) else [data]
        with self._client(temp) as sftp:
            try:
                handle = sftp.open_handle(temp, NEW_FILE)
            except FileNotFoundError:
                self._mkdir_all(sftp, posixpath.dirname(final))
                handle = sftp.open_handle(temp, NEW_FILE)
            try:
                sftp.write(handle, parts)
                sftp.fchmod(handle, FILE_MODE)
                sftp.fsync(handle)
            except BaseException:
                sftp.close_handle(handle, wait=False)
                sftp.remove(temp)
                raise
            sftp.close_handle(handle)
            self._rename(sftp, temp, final)

    @staticmethod
    def _rename(sftp, temp: str, final: str) -> None:
        try:
            sftp.posix_rename(temp, final)
        except OSError as exc:
            if exc.errno is not None:
                raise
            sftp.rename(temp, final)  # no posix-rename: a plain rename, which will not replace

    def load(self, ftype: FileType, name: str, offset: int = 0, length: Optional[int] = None) -> bytes:
        check_range(offset, length)
        path = self._file(ftype, name)
        with self._client(path) as sftp:
            handle = sftp.open_handle(path, SFTP_FLAG_READ)
            try:
                # the size only when it is needed: a read of a known length learns of a short file
                # from the reads themselves, one round trip sooner
                size = None if length else sftp.fstat(handle).st_size
                wanted = length if length is not None else size - offset
                data = sftp.read(handle, offset, wanted) if wanted > 0 else b""
                if len(data) < wanted or (size is not None and offset > size):
                    size = sftp.fstat(handle).st_size if size is None else size
                    raise BackendShortRead(
                        f"{ftype.label}/{name}: short read, wanted {wanted} bytes at {offset}, file has {size}"
                    )
            finally:
                sftp.close_handle(handle, wait=False)
            # pack reads (restore, check, copy) take the buffer as it is; other files are
            # small and some readers want bytes
            return data if ftype is FileType.PACK else bytes(data)

    def stat(self, ftype: FileType, name: str) -> int:
        path = self._file(ftype, name)
        with self._client(path) as sftp:
            attrs = sftp.stat(path)
        if not stat.S_ISREG(attrs.st_mode):  # a folder where a file belongs is no repository file
            raise BackendNotFound(errno.ENOENT, os.strerror(errno.ENOENT), path)
        return attrs.st_size

    def remove(self, ftype: FileType, name: str) -> None:
        path = self._file(ftype, name)
        with self._client(path) as sftp:
            sftp.remove(path)

    def list(self, ftype: FileType) -> Iterator[Tuple[str, int]]:
        if ftype is FileType.CONFIG:
            return
        folders = [self._dir(ftype)]
        if ftype is FileType.PACK:
            folders = sorted(posixpath.join(folders[0], entry.filename)
                             for entry in self._entries(folders[0]) if stat.S_ISDIR(entry.st_mode))
        for folder in folders:
            for entry in self._entries(folder):
                if TEMP_MARK not in entry.filename and stat.S_ISREG(entry.st_mode):
                    yield entry.filename, entry.st_size

    def _entries(self, folder: str) -> list:
        """A folder's entries with their attributes; none for a missing folder."""
        try:
            with self._client(folder) as sftp:
                return sftp.listdir_attr(folder)
        except BackendNotFound:
            return []

    def close(self) -> None:
        with self._lock:
            if self._session is not None:
                self._session = None
                self._closer()

