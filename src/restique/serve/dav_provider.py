"""A read-only WebDAV view of the snapshot filesystem, for wsgidav.

Folders and regular files are shown; the filesystem's own symlinks (snapshots/latest) are
followed; symlinks, devices, fifos and sockets stored in a snapshot are left out, since
WebDAV has no way to show them (the web page lists them)."""
import io
import mimetypes
from urllib.parse import quote

from wsgidav.dav_error import HTTP_NOT_FOUND, DAVError
from wsgidav.dav_provider import DAVCollection, DAVNonCollection, DAVProvider

from ..errors import NotFound
from . import fs_paths

READ_BUFFER = 1024 * 1024
# wsgidav answers these with an empty value, which is no number (RFC 4331); unknown is a 404
_QUOTA_PROPS = ("{DAV:}quota-available-bytes", "{DAV:}quota-used-bytes")
_HREF_SAFE = "/!*'(),$-_|."  # as wsgidav: some clients choke on quoted parentheses


class SnapshotReader(io.RawIOBase):
    """A seekable binary file over a filesystem reader's read(offset, size)."""

    def __init__(self, reader, size: int):
        self._reader = reader
        self._size = size
        self._pos = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._pos, io.SEEK_END: self._size}[whence]
        self._pos = max(0, base + offset)
        return self._pos

    def tell(self) -> int:
        return self._pos

    def readinto(self, buffer) -> int:
        if self._pos >= self._size:
            return 0
        data = self._reader.read(self._pos, min(len(buffer), self._size - self._pos))
        buffer[:len(data)] = data
        self._pos += len(data)
        return len(data)


def open_file(fs, path: str, size: int):
    return io.BufferedReader(SnapshotReader(fs.open_reader(path), size), READ_BUFFER)


def _shown(entry) -> bool:
    return entry.kind in ("dir", "file") or (entry.kind == "symlink" and entry.node is None)


class _Common:
    """What folders and files answer alike: names, times, hrefs with raw bytes."""

    def _init_entry(self, entry):
        self.entry = entry

    def get_display_name(self):
        return fs_paths.display(self.entry.name)

    def get_href(self):
        return quote(self._raw_path(), safe=_HREF_SAFE)

    def get_ref_url(self):
        return quote(self._raw_path())

    def _raw_path(self) -> bytes:
        path = self.provider.share_path + self.get_preferred_path()
        return path.encode("utf-8", "surrogateescape")

    def get_last_modified(self):
        return self.entry.mtime_ns / 1e9

    def get_creation_date(self):
        return self.entry.ctime_ns / 1e9

    def support_modified(self):
        return True

    def get_property_value(self, name):
        if name in _QUOTA_PROPS:
            raise DAVError(HTTP_NOT_FOUND)
        return super().get_property_value(name)


class SnapshotFolder(_Common, DAVCollection):
    def __init__(self, path, environ, entry, fs):
        super().__init__(path, environ)
        self._init_entry(entry)
        self.fs = fs

    def get_member_names(self):
        return [m.name for m in self._members()]

    def get_member(self, name):
        return self.provider.get_resource_inst(self.path.rstrip("/") + "/" + name, self.environ)

    def get_member_list(self):
        members = []
        for entry in self._members():
            path = self.path.rstrip("/") + "/" + entry.name
            if entry.kind == "symlink":  # a virtual link: show what it points to
                member = self.provider.get_resource_inst(path, self.environ)
                if member is not None:
                    members.append(member)
                continue
            members.append(self.provider.resource_for(path, entry, self.environ))
        return members

    def _members(self):
        return [entry for entry in self.fs.list_dir(fs_paths.resolve(self.fs, self.path).path)
                if _shown(entry)]

    def get_etag(self):
        return None

    def support_etag(self):
        return False


class SnapshotFile(_Common, DAVNonCollection):
    def __init__(self, path, environ, entry, fs):
        super().__init__(path, environ)
        self._init_entry(entry)
        self.fs = fs

    def get_content_length(self):
        return self.entry.size

    def get_content_type(self):
        kind, _ = mimetypes.guess_type(fs_paths.display(self.entry.name))
        return kind or "application/octet-stream"

    def get_etag(self):
        return f"{self.entry.inode:x}-{self.entry.size:x}-{self.entry.mtime_ns:x}"

    def support_etag(self):
        return True

    def support_ranges(self):
        return True

    def get_content(self):
        return open_file(self.fs, self.entry.path, self.entry.size)


class SnapshotDAVProvider(DAVProvider):
    """The snapshot filesystem, read-only (wsgidav answers 403 to every change)."""

    def __init__(self, fs):
        super().__init__()
        self.fs = fs

    def is_readonly(self):
        return True

    def get_resource_inst(self, path, environ):
        try:
            entry = fs_paths.resolve(self.fs, path)
        except NotFound:
            return None
        return self.resource_for(path, entry, environ)

    def resource_for(self, path, entry, environ):
        if entry.kind == "dir":
            return SnapshotFolder(path, environ, entry, self.fs)
        if entry.kind == "file":
            return SnapshotFile(path, environ, entry, self.fs)
        return None
