"""The SFTP protocol, version 3 (draft-ietf-secsh-filexfer-02, what OpenSSH speaks): packet
types, status codes, and how request fields and file attributes are encoded and decoded.

restique speaks it itself instead of through paramiko: importing paramiko (its SSH transport,
ciphers and configuration machinery, none of which a session through the system ssh uses) cost
a third of a second and 20 MiB before the first request.
"""
import errno
import struct

# packet types
INIT, VERSION = 1, 2
OPEN, CLOSE, READ, WRITE, LSTAT, FSTAT, SETSTAT, FSETSTAT = 3, 4, 5, 6, 7, 8, 9, 10
OPENDIR, READDIR, REMOVE, MKDIR, RMDIR, REALPATH, STAT, RENAME = 11, 12, 13, 14, 15, 16, 17, 18
STATUS, HANDLE, DATA, NAME, ATTRS = 101, 102, 103, 104, 105
EXTENDED, EXTENDED_REPLY = 200, 201

# status codes
OK, EOF, NO_SUCH_FILE, PERMISSION_DENIED = 0, 1, 2, 3

# attribute flags
_SIZE, _UIDGID, _PERMISSIONS, _ACMODTIME, _EXTENDED = 0x1, 0x2, 0x4, 0x8, 0x80000000

_U32 = struct.Struct(">I")
_U64 = struct.Struct(">Q")


class ProtocolError(Exception):
    """The server sent something the protocol does not allow here."""


class Int64(int):
    """A request field sent as a 64-bit number (file offsets); a plain int is 32 bits."""


class Attributes:
    """A file's attributes as SFTP sends them; what the server did not send is None."""

    __slots__ = ("filename", "st_size", "st_uid", "st_gid", "st_mode", "st_atime", "st_mtime")

    def __init__(self, filename: str = "", st_size=None, st_uid=None, st_gid=None, st_mode=None,
                 st_atime=None, st_mtime=None):
        self.filename = filename
        self.st_size, self.st_uid, self.st_gid, self.st_mode = st_size, st_uid, st_gid, st_mode
        self.st_atime, self.st_mtime = st_atime, st_mtime

    def encode(self) -> bytes:
        flags, fields = 0, []
        if self.st_size is not None:
            flags |= _SIZE
            fields.append(_U64.pack(self.st_size))
        if self.st_uid is not None and self.st_gid is not None:
            flags |= _UIDGID
            fields.append(struct.pack(">II", self.st_uid, self.st_gid))
        if self.st_mode is not None:
            flags |= _PERMISSIONS
            fields.append(_U32.pack(self.st_mode))
        if self.st_atime is not None and self.st_mtime is not None:
            flags |= _ACMODTIME
            fields.append(struct.pack(">II", self.st_atime, self.st_mtime))
        return _U32.pack(flags) + b"".join(fields)


def encode(*fields) -> bytes:
    """Request fields one after the other: an int as 32 bits, an Int64 as 64 bits, str and
    bytes as length-prefixed strings, Attributes as attributes."""
    out = []
    for field in fields:
        if isinstance(field, Int64):
            out.append(_U64.pack(field))
        elif isinstance(field, int):
            out.append(_U32.pack(field))
        elif isinstance(field, Attributes):
            out.append(field.encode())
        else:
            data = field.encode("utf-8", "surrogateescape") if isinstance(field, str) else bytes(field)
            out.append(_U32.pack(len(data)))
            out.append(data)
    return b"".join(out)


class Reader:
    """Fields read one after the other from a packet's body."""

    __slots__ = ("data", "at")

    def __init__(self, data, at: int = 0):
        self.data = data
        self.at = at

    def _take(self, size: int):
        end = self.at + size
        if end > len(self.data):
            raise ProtocolError("a reply ends in the middle of a field")
        piece = self.data[self.at:end]
        self.at = end
        return piece

    def remaining(self) -> int:
        return len(self.data) - self.at

    def u32(self) -> int:
        return _U32.unpack(self._take(4))[0]

    def u64(self) -> int:
        return _U64.unpack(self._take(8))[0]

    def binary(self) -> bytes:
        return bytes(self._take(self.u32()))

    def text(self) -> str:
        return self.binary().decode("utf-8", "surrogateescape")

    def attributes(self, filename: str = "") -> Attributes:
        flags = self.u32()
        attrs = Attributes(filename)
        if flags & _SIZE:
            attrs.st_size = self.u64()
        if flags & _UIDGID:
            attrs.st_uid, attrs.st_gid = self.u32(), self.u32()
        if flags & _PERMISSIONS:
            attrs.st_mode = self.u32()
        if flags & _ACMODTIME:
            attrs.st_atime, attrs.st_mtime = self.u32(), self.u32()
        if flags & _EXTENDED:
            for _ in range(self.u32()):
                self.binary()
                self.binary()
        return attrs


def raise_status(reply: Reader) -> None:
    """Nothing for an OK status; else the error it stands for: EOFError at a file's end or a
    listing's, FileNotFoundError, PermissionError, or an OSError with the server's text and no
    errno for every other failure."""
    code = reply.u32()
    text = reply.text() if reply.remaining() >= 4 else ""
    if code == OK:
        return
    if code == EOF:
        raise EOFError(text)
    if code == NO_SUCH_FILE:
        raise FileNotFoundError(errno.ENOENT, text or "No such file")
    if code == PERMISSION_DENIED:
        raise PermissionError(errno.EACCES, text or "Permission denied")
    raise OSError(text or f"sftp status {code}")


def expect(kind: int, reply: Reader, expected: int) -> Reader:
    """reply, when it is of the expected type; a status raises the error it stands for, and
    any other answer (an OK status included) is a protocol error."""
    if kind == expected:
        return reply
    if kind == STATUS:
        raise_status(reply)
    raise ProtocolError(f"expected reply type {expected}, got {kind}")
