"""The FUSE kernel protocol (linux/fuse.h, layouts of protocol 7.31): the request header, the
operations a read-only filesystem answers, and its replies packed as the kernel reads them.

Requests are read from the FUSE device one at a time: a 40-byte header (length, operation,
unique id, inode, caller's uid/gid/pid) and the operation's arguments. A reply is one write:
a 16-byte header (length, negative errno, the request's unique id) and the result.
"""
import errno
import struct

MAJOR, MINOR = 7, 31

IN_HEADER = struct.Struct("<IIQQ")  # length, opcode, unique, nodeid (uid, gid, pid follow)
IN_HEADER_SIZE = 40
OUT_HEADER = struct.Struct("<IiQ")  # length, -errno, unique

LOOKUP, FORGET, GETATTR, READLINK = 1, 2, 3, 5
OPEN, READ, STATFS, RELEASE = 14, 15, 17, 18
GETXATTR, LISTXATTR, FLUSH, INIT = 22, 23, 25, 26
OPENDIR, READDIR, RELEASEDIR, ACCESS = 27, 28, 29, 34
INTERRUPT, DESTROY, BATCH_FORGET, READDIRPLUS = 36, 38, 42, 44

NOTIFY_INVAL_INODE = 2

# INIT flags asked for (each only if the kernel offers it)
ASYNC_READ = 1 << 0  # reads of one file may be answered in any order
EXPORT_SUPPORT = 1 << 4  # lookups of "." and ".."
AUTO_INVAL_DATA = 1 << 12  # a changed mtime drops cached pages and listings
DO_READDIRPLUS = 1 << 13  # listings carry each entry's attributes: no lookup per entry
PARALLEL_DIROPS = 1 << 18  # lookups and listings of one folder at the same time
WANTED_FLAGS = ASYNC_READ | EXPORT_SUPPORT | AUTO_INVAL_DATA | DO_READDIRPLUS | PARALLEL_DIROPS

MAX_WRITE = 4096  # nothing is written; the least the kernel takes
READ_SIZE = 16384  # bytes read per request: more than the largest request (a lookup's name)

INIT_IN = struct.Struct("<IIII")  # major, minor, max_readahead, flags
INIT_OUT = struct.Struct("<IIIIHHIIHHII24x")  # 64 bytes
READ_IN = struct.Struct("<QQI")  # fh, offset, size (also readdir's)
FORGET_IN = struct.Struct("<Q")  # nlookup
BATCH_FORGET_IN = struct.Struct("<I4x")  # count, then count FORGET_ONE
FORGET_ONE = struct.Struct("<QQ")  # nodeid, nlookup
XATTR_IN = struct.Struct("<I4x")  # size (then the name, NUL-terminated)
XATTR_OUT = struct.Struct("<I4x")
STATFS_OUT = struct.Struct("<QQQQQIII28x")  # blocks bfree bavail files ffree, bsize namelen frsize
INVAL_INODE_OUT = struct.Struct("<Qqq")  # nodeid, offset, length

# fuse_attr: ino size blocks atime mtime ctime, their nsec, mode nlink uid gid rdev blksize flags
_ATTR = "QQQqqqIIIIIIIIII"
ATTR_OUT = struct.Struct("<QI4x" + _ATTR)  # valid, valid_nsec, attr: 104 bytes
ENTRY_OUT = struct.Struct("<QQQQII" + _ATTR)  # nodeid generation entry_valid attr_valid nsecs attr: 128
DIRENTPLUS = struct.Struct("<QQQQII" + _ATTR + "QQII")  # entry_out, then ino off namelen type: 152
_NS = 1_000_000_000
NAME_PADDING = [b"\0" * (-n % 8) for n in range(8)]  # by name length % 8


class FuseError(Exception):
    """Answer the request with this errno."""

    def __init__(self, code: int):
        super().__init__(code)
        self.errno = code


class Attributes:
    """What the kernel is told about one inode, packed once: its fuse_attr fields and how
    long the kernel may keep them (and the name's entry)."""

    __slots__ = ("fields", "timeout", "dirent_type")

    def __init__(self, inode: int, mode: int, links: int, uid: int, gid: int, size: int, rdev: int,
                 atime_ns: int, mtime_ns: int, ctime_ns: int, timeout: int):
        asec, ansec = divmod(atime_ns, _NS)
        msec, mnsec = divmod(mtime_ns, _NS)
        csec, cnsec = divmod(ctime_ns, _NS)
        self.fields = (inode, size, (size + 511) // 512, asec, msec, csec, ansec, mnsec, cnsec, mode, links,
                       uid, gid, rdev & 0xFFFFFFFF, 4096, 0)
        self.timeout = timeout  # whole seconds
        self.dirent_type = (mode >> 12) & 0o17

    def entry_out(self) -> bytes:
        return ENTRY_OUT.pack(self.fields[0], 0, self.timeout, self.timeout, 0, 0, *self.fields)

    def attr_out(self) -> bytes:
        return ATTR_OUT.pack(self.timeout, 0, *self.fields)

    def direntplus(self, name: bytes, next_offset: int) -> bytes:
        """One readdirplus record: the entry with its attributes, then the name padded to 8."""
        fields = self.fields
        return (DIRENTPLUS.pack(fields[0], 0, self.timeout, self.timeout, 0, 0, *fields,
                                fields[0], next_offset, len(name), self.dirent_type)
                + name + NAME_PADDING[len(name) & 7])


def direntplus(name: bytes, inode: int, mode: int, links: int, uid: int, gid: int, size: int, rdev: int,
               atime_ns: int, mtime_ns: int, ctime_ns: int, timeout: int, next_offset: int) -> bytes:
    """Attributes(...).direntplus(name, next_offset) in one step, for listings of many entries."""
    msec, mnsec = divmod(mtime_ns, _NS)
    asec, ansec = (msec, mnsec) if atime_ns == mtime_ns else divmod(atime_ns, _NS)
    csec, cnsec = (msec, mnsec) if ctime_ns == mtime_ns else divmod(ctime_ns, _NS)
    return (DIRENTPLUS.pack(inode, 0, timeout, timeout, 0, 0, inode, size, (size + 511) >> 9, asec, msec, csec,
                            ansec, mnsec, cnsec, mode, links, uid, gid, rdev & 0xFFFFFFFF, 4096, 0,
                            inode, next_offset, len(name), (mode >> 12) & 0o17)
            + name + NAME_PADDING[len(name) & 7])


def dot_direntplus(name: bytes, inode: int, next_offset: int) -> bytes:
    """`.` or `..`: listed with their inode number alone (the kernel neither links nor counts them)."""
    attrs = Attributes(inode, 0o40555, 0, 0, 0, 0, 0, 0, 0, 0, 0)
    return attrs.direntplus(name, next_offset)


def init_reply(request: bytes) -> bytes:
    """The answer to the kernel's INIT: protocol 7.31 with WANTED_FLAGS as far as offered."""
    major, minor, max_readahead, offered = INIT_IN.unpack_from(request, IN_HEADER_SIZE)
    if major != MAJOR:
        raise FuseError(errno.EPROTO)
    return INIT_OUT.pack(MAJOR, min(minor, MINOR), max_readahead, offered & WANTED_FLAGS, 0, 0, MAX_WRITE, 1,
                         0, 0, 0, 0)


def reply(unique: int, payload: bytes = b"", error: int = 0) -> bytes:
    return OUT_HEADER.pack(16 + len(payload), -error, unique) + payload


def inval_inode(inode: int) -> bytes:
    """A notice that the kernel's cached attributes, pages and listing of inode are stale."""
    payload = INVAL_INODE_OUT.pack(inode, 0, 0)
    return OUT_HEADER.pack(16 + len(payload), NOTIFY_INVAL_INODE, 0) + payload


def statfs_out() -> bytes:
    return STATFS_OUT.pack(0, 0, 0, 0, 0, 4096, 255, 4096)


def request_name(request: bytes, start: int) -> bytes:
    """The NUL-terminated name at start."""
    end = request.index(b"\0", start)
    return request[start:end]
