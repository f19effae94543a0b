"""The zip stream of `dump`, laid out as restic writes it with Go's archive/zip.

Each entry is a local header without sizes (flag 0x8) followed by its data and a data
descriptor (sizes in 8 bytes once a file reaches 4 GiB); directories have no descriptor.
Everything is stored uncompressed, as restic 0.14 does (current restic deflates files, but
zlib deflates incompressible data at a few MB/s, far slower than reading the repository).
Links have their target as content, other entries are empty. Times go into the MS-DOS
fields in the zone the node was recorded in, plus an extended-timestamp extra field (0x5455)
with the Unix time; the mode goes into the external attributes with the "made by Unix"
version. Names are flagged UTF-8 only when they need it. The central directory (zip64
records when needed) is kept in a spooled temporary file, so memory stays flat however many
entries there are. Writing the same snapshot gives the same bytes as restic 0.14's `dump`.
"""
import struct
import tempfile
import zlib

from ..model.node import (MODE_CHAR_DEVICE, MODE_DEVICE, MODE_DIR, MODE_IRREGULAR, MODE_NAMED_PIPE, MODE_PERM,
                          MODE_SETGID, MODE_SETUID, MODE_SOCKET, MODE_STICKY, MODE_SYMLINK, Node)

_U32_MAX = 0xFFFFFFFF
_VERSION_20, _VERSION_45 = 20, 45
_MADE_BY_UNIX = 3 << 8 | _VERSION_20
_FLAG_DESCRIPTOR, _FLAG_UTF8 = 0x8, 0x800
_STORE = 0
_GO_ZERO_TIME_NS = -62135596800 * 1_000_000_000
_MODE_TYPE = MODE_DIR | MODE_SYMLINK | MODE_NAMED_PIPE | MODE_SOCKET | MODE_DEVICE | MODE_CHAR_DEVICE | MODE_IRREGULAR
_UNIX_TYPES = {MODE_DIR: 0o040000, MODE_SYMLINK: 0o120000, MODE_NAMED_PIPE: 0o010000, MODE_SOCKET: 0o140000,
               MODE_DEVICE: 0o060000, MODE_DEVICE | MODE_CHAR_DEVICE: 0o020000}
_SPOOL_BYTES = 8 * 1024 * 1024


def unix_mode(mode: int) -> int:
    """Go's fileModeToUnixMode: st_mode bits of an os.FileMode."""
    m = _UNIX_TYPES.get(mode & _MODE_TYPE, 0o100000)
    m |= (0o4000 if mode & MODE_SETUID else 0) | (0o2000 if mode & MODE_SETGID else 0)
    return m | (0o1000 if mode & MODE_STICKY else 0) | (mode & MODE_PERM)


def _needs_utf8_flag(name: bytes) -> bool:
    """Go's detectUTF8: set the flag only for valid UTF-8 that is not plain CP-437-safe ASCII."""
    try:
        text = name.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return any(c < " " or c > "}" or c == "\\" for c in text)


def _dos_time(node: Node):
    """(date, time) MS-DOS fields of the wall clock in the node's zone, and the Unix seconds."""
    import time

    seconds = node.mtime.unix_ns // 1_000_000_000
    t = time.gmtime(seconds + node.mtime.offset)
    date = (t.tm_mday + (t.tm_mon << 5) + ((t.tm_year - 1980) << 9)) & 0xFFFF
    clock = (t.tm_sec // 2 + (t.tm_min << 5) + (t.tm_hour << 11)) & 0xFFFF
    return date, clock, seconds


class _Entry:
    """What the central directory needs of one entry."""

    __slots__ = ("name", "flags", "method", "date", "time", "extra", "attrs", "offset", "crc", "csize", "usize",
                 "version")

    def __init__(self, name: bytes, node: Node, offset: int):
        self.name = name
        self.offset = offset
        self.flags = _FLAG_UTF8 if _needs_utf8_flag(name) else 0
        is_dir = node.type == "dir"
        self.method = _STORE
        if not is_dir:
            self.flags |= _FLAG_DESCRIPTOR
        self.date = self.time = 0
        self.extra = b""
        if node.mtime.unix_ns != _GO_ZERO_TIME_NS:
            self.date, self.time, seconds = _dos_time(node)
            self.extra = struct.pack("<HHBI", 0x5455, 5, 1, seconds & _U32_MAX)
        self.attrs = unix_mode(node.mode) << 16 | (0x10 if node.mode & MODE_DIR else 0)
        if not node.mode & 0o200:
            self.attrs |= 0x01  # MS-DOS read-only
        self.crc = self.csize = self.usize = 0
        self.version = _VERSION_20

    @property
    def zip64(self) -> bool:
        return self.csize >= _U32_MAX or self.usize >= _U32_MAX

    def local_header(self) -> bytes:
        return struct.pack("<IHHHHHIIIHH", 0x04034B50, _VERSION_20, self.flags, self.method, self.time, self.date,
                           0, 0, 0, len(self.name), len(self.extra)) + self.name + self.extra

    def descriptor(self) -> bytes:
        if self.zip64:
            return struct.pack("<IIQQ", 0x08074B50, self.crc, self.csize, self.usize)
        return struct.pack("<IIII", 0x08074B50, self.crc, self.csize, self.usize)

    def central_record(self) -> bytes:
        extra = self.extra
        if self.zip64 or self.offset >= _U32_MAX:
            sizes = (_U32_MAX, _U32_MAX)
            extra += struct.pack("<HHQQQ", 0x0001, 24, self.usize, self.csize, self.offset)
        else:
            sizes = (self.csize, self.usize)
        return struct.pack("<IHHHHHHIIIHHHHHII", 0x02014B50, _MADE_BY_UNIX, self.version, self.flags, self.method,
                           self.time, self.date, self.crc, *sizes, len(self.name), len(extra), 0, 0, 0,
                           self.attrs, min(self.offset, _U32_MAX)) + self.name + extra


class ZipWriter:
    """Writes entries to a binary stream; close() writes the central directory (it does not
    close the stream)."""

    def __init__(self, out):
        self.out = out
        self.bytes = 0
        self.entries = 0
        self._central = tempfile.SpooledTemporaryFile(_SPOOL_BYTES)

    def _write(self, data) -> None:
        self.out.write(data)
        self.bytes += len(data)

    def add(self, name: bytes, node: Node, chunks) -> None:
        """One entry: name without the trailing slash of a directory; chunks the content."""
        if node.type == "dir":
            name += b"/"
        entry = _Entry(name, node, self.bytes)
        self._write(entry.local_header())
        if node.type != "dir":
            if node.type == "symlink":
                chunks = [node.linktarget.encode("utf-8", "surrogateescape")]
            self._write_data(entry, chunks)
            self._write(entry.descriptor())
        self._central.write(entry.central_record())
        self.entries += 1

    def _write_data(self, entry: _Entry, chunks) -> None:
        crc = size = 0
        for chunk in chunks:
            crc = zlib.crc32(chunk, crc)
            size += len(chunk)
            self._write(chunk)
        entry.crc, entry.usize, entry.csize = crc, size, size
        if entry.zip64:
            entry.version = _VERSION_45

    def close(self) -> None:
        start = self.bytes
        self._central.seek(0)
        while True:
            block = self._central.read(1 << 20)
            if not block:
                break
            self._write(block)
        self._central.close()
        records, size, offset = self.entries, self.bytes - start, start
        if records >= 0xFFFF or size >= _U32_MAX or offset >= _U32_MAX:
            end = self.bytes
            self._write(struct.pack("<IQHHIIQQQQ", 0x06064B50, 44, _VERSION_45, _VERSION_45, 0, 0,
                                    records, records, size, offset))
            self._write(struct.pack("<IIQI", 0x07064B50, 0, end, 1))
            records, size, offset = 0xFFFF, _U32_MAX, _U32_MAX
        self._write(struct.pack("<IHHHHIIH", 0x06054B50, 0, 0, records, records, size, offset, 0))
