"""The tar stream of `dump`, header for header as restic writes it.

restic hands each entry to Go's archive/tar without choosing a format, so every header is
USTAR when the entry fits (ASCII names up to 100 bytes, or up to 256 split into prefix and
name; numbers that fit their octal fields), and PAX otherwise: an extended header
`<dir>/PaxHeaders.0/<file>` with sorted `len key=value` records (path, linkpath, uname,
gname, uid, gid, size, mtime, and one `SCHILY.xattr.<name>` per extended attribute, POSIX
ACLs as `SCHILY.acl.access`/`.default` text), followed by a header whose strings keep only
their ASCII bytes. Modification times are rounded to the second; access and change times
are not written. Hard links are written as separate regular files; the archive ends with
two zero blocks and is not padded to a record size.

Writing the same snapshot gives the same bytes as restic's `dump`.
"""
import struct
from typing import Dict, Iterable, Optional, Tuple

from ..errors import RestiqueError
from ..model.node import MODE_PERM, MODE_SETGID, MODE_SETUID, MODE_STICKY, Node

BLOCK = 512
_ZERO_BLOCK = bytes(BLOCK)
_NAME, _PREFIX, _LINK, _OWNER = 100, 155, 100, 32
_GO_ZERO_TIME_NS = -62135596800 * 1_000_000_000  # time.Time{}: January 1, year 1, UTC
_TYPES = {"file": b"0", "symlink": b"2", "dir": b"5"}


class TarError(RestiqueError):
    """An entry restic's tar writer would refuse too (a NUL in a name, content of the wrong
    length)."""


def _is_ascii(s: bytes) -> bool:
    return s.isascii() and b"\0" not in s


def _to_ascii(s: bytes) -> bytes:
    """Go's toASCII: bytes of multi-byte or invalid UTF-8 sequences and NULs dropped."""
    if _is_ascii(s):
        return s
    return bytes(c for c in s if 0 < c < 0x80)


def _fits_octal(value: int, width: int) -> bool:
    return value >= 0 and (width >= 22 or value < 1 << (3 * (width - 1)))


def _split_ustar(name: bytes) -> Optional[Tuple[bytes, bytes]]:
    """(prefix, name) when a long ASCII path fits USTAR's two fields, as Go splits it."""
    length = len(name)
    if length <= _NAME or not _is_ascii(name):
        return None
    if length > _PREFIX + 1:
        length = _PREFIX + 1
    elif name[length - 1:length] == b"/":
        length -= 1
    i = name.rfind(b"/", 0, length)
    suffix_len = len(name) - i - 1
    if i <= 0 or suffix_len > _NAME or suffix_len == 0 or i > _PREFIX:
        return None
    return name[:i], name[i + 1:]


def _field(s: bytes, width: int) -> bytes:
    """Go's formatString: truncated when too long, and a trailing slash left by the
    truncation replaced by a NUL (readers would take the entry for a directory)."""
    if len(s) <= width:
        return s
    s = s[:width]
    if s[-1:] == b"/":
        n = len(s[:-1].rstrip(b"/"))
        s = s[:n] + b"\0" + s[n + 1:]
    return s


def _octal(value: int, width: int) -> bytes:
    """Go's formatOctal: zero-padded, NUL-terminated; 0 when it does not fit (PAX carries it)."""
    return b"%0*o\0" % (width - 1, value if _fits_octal(value, width) else 0)


# name, mode, uid, gid, size, mtime, checksum, type, link name, magic+version, user, group,
# device major and minor, name prefix; struct pads each with NULs
_BLOCK = struct.Struct("100s8s8s8s12s12s8sc100s8s32s32s16s155s12x")
_DEVICES = b"0000000\x000000000\x00"
_CONSTANT_SUM = sum(b"        " + b"ustar\x0000" + _DEVICES)  # of the fields every USTAR block has


def _block(name: bytes, linkname: bytes, mode: int, uid: int, gid: int, size: int, mtime: int,
           typeflag: bytes, uname: bytes, gname: bytes, prefix: bytes = b"", devices: bytes = _DEVICES) -> bytes:
    block = _BLOCK.pack(_field(name, _NAME), _octal(mode, 8), _octal(uid, 8), _octal(gid, 8),
                        _octal(size, 12), _octal(mtime, 12), b"        ", typeflag, _field(linkname, _LINK),
                        b"ustar\x0000", _field(uname, _OWNER), _field(gname, _OWNER), devices, prefix)
    return block[:148] + b"%06o\x00 " % sum(block) + block[156:]


def _pax_record(key: bytes, value: bytes) -> bytes:
    size = len(key) + len(value) + 3
    size += len(str(size))
    record = b"%d %s=%s\n" % (size, key, value)
    if len(record) != size:
        record = b"%d %s=%s\n" % (len(record), key, value)
    return record


def format_linux_acl(raw: bytes) -> Optional[str]:
    """A Linux POSIX ACL xattr as POSIX.1e long text with numeric ids (current restic's
    formatLinuxACL); None when it cannot be parsed."""
    if len(raw) < 4 or (len(raw) - 4) % 8 or struct.unpack_from("<I", raw)[0] != 2:
        return None
    tags = {0x01: "user:", 0x02: "user:", 0x04: "group:", 0x08: "group:", 0x10: "mask:", 0x20: "other:"}
    lines = []
    for tag, perm, ident in struct.iter_unpack("<HHI", raw[4:]):
        if tag not in tags:
            return None
        who = tags[tag] + (str(ident) if tag in (0x02, 0x08) else "")
        bits = "".join(c if perm & m else "-" for c, m in (("r", 4), ("w", 2), ("x", 1)))
        lines.append(f"{who}:{bits}\n")
    return "".join(lines)


def xattr_records(node: Node) -> Dict[bytes, bytes]:
    """restic's PAX records for a node's extended attributes."""
    records: Dict[bytes, bytes] = {}
    for name, value in node.xattrs:
        value = value or b""
        acl_key = {"system.posix_acl_access": b"SCHILY.acl.access",
                   "system.posix_acl_default": b"SCHILY.acl.default"}.get(name)
        if acl_key:
            text = format_linux_acl(value)
            if text is not None:  # restic skips ACLs it cannot parse
                records[acl_key] = text.encode()
        else:
            records[b"SCHILY.xattr." + name.encode("utf-8", "surrogateescape")] = value
    return records


def _unix_perm(mode: int) -> int:
    perm = mode & MODE_PERM
    perm |= (0o4000 if mode & MODE_SETUID else 0) | (0o2000 if mode & MODE_SETGID else 0)
    return perm | (0o1000 if mode & MODE_STICKY else 0)


def entry_header(name: bytes, node: Node) -> bytes:
    """The header of one entry (name with a directory's trailing slash): one USTAR block,
    or a PAX extended header with its records and then the main block, as Go's tar writer
    chooses them (allowedFormats)."""
    return _general_header(name, node)


class HeaderBuilder:
    """entry_header() for a whole archive, with the parts most entries share (mode, owner,
    type: a few dozen combinations in a snapshot) built once: most entries are plain USTAR
    blocks, assembled here from cached pieces and a checksum over the few bytes that vary.
    Anything else (PAX, extended attributes, odd numbers) takes entry_header's path."""

    def __init__(self):
        # (mode, uid, gid, user, group, type) -> (mode+uid+gid fields, the type flag and the
        # fields from the magic to the device numbers, their checksum with the constant
        # fields), or () when such entries need more than a plain USTAR block
        self._shared: Dict[tuple, Tuple] = {}

    def __call__(self, name: bytes, node: Node) -> bytes:
        kind = node.type
        key = (node.mode, node.uid, node.gid, node.user, node.group, kind)
        shared = self._shared.get(key)
        if shared is None:
            shared = _shared_fields(node)
            if len(self._shared) < 4096:  # bounded, whatever the snapshot holds
                self._shared[key] = shared
        if not shared or node.xattrs:
            return _general_header(name, node)
        if kind == "symlink":
            linkname = node.linktarget.encode("utf-8", "surrogateescape")
            if len(linkname) > _LINK or not _is_ascii(linkname):
                return _general_header(name, node)
        else:
            linkname = b""
        size = node.size
        ns = node.mtime.unix_ns
        mtime = 0 if ns == _GO_ZERO_TIME_NS else (ns + 500_000_000) // 1_000_000_000
        if not (0 <= size < 0o100000000000 and 0 <= mtime < 0o100000000000) or not _is_ascii(name):
            return _general_header(name, node)
        prefix = b""
        if len(name) > _NAME:
            split = _split_ustar(name)
            if split is None:
                return _general_header(name, node)
            prefix, name = split
        numbers = b"%011o\x00%011o\x00" % (size, mtime)
        fixed, tail, fixed_sum = shared
        checksum = fixed_sum + sum(name) + sum(prefix) + sum(linkname) + sum(numbers)
        return b"".join((name.ljust(_NAME, b"\0"), fixed, numbers, b"%06o\x00 " % checksum, tail[:1],
                         linkname.ljust(_LINK, b"\0"), tail[1:], prefix.ljust(_PREFIX + 12, b"\0")))


def _shared_fields(node: Node) -> Tuple:
    """The fields HeaderBuilder shares between entries of node's mode, owner and type, or ()
    when they need more than a plain USTAR block."""
    uname = node.user.encode("utf-8", "surrogateescape")
    gname = node.group.encode("utf-8", "surrogateescape")
    uid, gid = node.uid, node.gid
    if not (len(uname) <= _OWNER and len(gname) <= _OWNER and _is_ascii(uname + gname)
            and 0 <= uid < 0o10000000 and 0 <= gid < 0o10000000):
        return ()
    typeflag = _TYPES.get(node.type, b"0")
    fixed = b"%07o\x00%07o\x00%07o\x00" % (_unix_perm(node.mode), uid, gid)
    # the type flag, then (after the link name) magic, owner names and device numbers
    tail = typeflag + b"ustar\x0000" + uname.ljust(_OWNER, b"\0") + gname.ljust(_OWNER, b"\0") + _DEVICES
    return fixed, tail, sum(b"        ") + sum(fixed) + sum(tail)


def _general_header(name: bytes, node: Node) -> bytes:
    typeflag = _TYPES.get(node.type, b"0")  # other types: Go promotes TypeRegA to TypeReg
    linkname = node.linktarget.encode("utf-8", "surrogateescape") if node.type == "symlink" else b""
    uname = node.user.encode("utf-8", "surrogateescape")
    gname = node.group.encode("utf-8", "surrogateescape")
    ns = node.mtime.unix_ns
    # Go's Round(time.Second), halves up; the zero time is written as 0 and never needs PAX
    mtime = None if ns == _GO_ZERO_TIME_NS else (ns + 500_000_000) // 1_000_000_000
    mode, uid, gid, size = _unix_perm(node.mode), node.uid, node.gid, node.size
    records = xattr_records(node) if node.xattrs else None
    strings = name + linkname + uname + gname
    if (not records and len(name) <= _NAME and len(linkname) <= _LINK and len(uname) <= _OWNER
            and len(gname) <= _OWNER and _is_ascii(strings) and 0 <= uid < 0o10000000 and 0 <= gid < 0o10000000 and 0 <= size < 0o100000000000
            and (mtime is None or 0 <= mtime < 0o100000000000)):
        numbers = b"%07o\x00%07o\x00%07o\x00%011o\x00%011o\x00" % (mode, uid, gid, size, mtime or 0)
        block = _BLOCK.pack(name, numbers[:8], numbers[8:16], numbers[16:24], numbers[24:36], numbers[36:],
                            b"        ", typeflag, linkname, b"ustar\x0000", uname, gname, _DEVICES, b"")
        checksum = _CONSTANT_SUM + sum(strings) + sum(numbers) + typeflag[0]
        return block[:148] + b"%06o\x00 " % checksum + block[156:]
    pax: Dict[bytes, bytes] = {}
    ustar = True
    for value, width, key in ((name, _NAME, b"path"), (linkname, _LINK, b"linkpath"),
                              (uname, _OWNER, b"uname"), (gname, _OWNER, b"gname")):
        if b"\0" in value:
            raise TarError(f"archive/tar: cannot encode header: invalid PAX record: {key.decode()}")
        if not value.isascii() or len(value) > width:
            if key != b"path" or _split_ustar(value) is None:
                ustar = False
            pax[key] = value
    for value, width, key in ((uid, 8, b"uid"), (gid, 8, b"gid"), (size, 12, b"size"), (mtime, 12, b"mtime")):
        if value is not None and not _fits_octal(value, width):
            ustar = False
            pax[key] = str(value).encode()
    if ustar and not records:  # a long ASCII name split into prefix and name
        prefix, name = _split_ustar(name) or (b"", name)
        return _block(name, linkname, mode, uid, gid, size, mtime or 0, typeflag, uname, gname, prefix)
    for key, value in (records or {}).items():
        pax.setdefault(key, value)
    return (_pax_header(name, pax)
            + _block(_to_ascii(name), _to_ascii(linkname), mode, uid, gid, size, mtime or 0, typeflag,
                     _to_ascii(uname), _to_ascii(gname)))


def _pax_header_name(name: bytes) -> bytes:
    """Go's path.Join(dir, "PaxHeaders.0", file), made ASCII, cut to 100 bytes, no trailing
    slash."""
    cut = name.rfind(b"/") + 1
    parts = [p for p in (name[:cut].rstrip(b"/"), b"PaxHeaders.0", name[cut:]) if p]
    return _to_ascii(b"/".join(parts))[:_NAME].rstrip(b"/")


def _pax_header(name: bytes, pax: Dict[bytes, bytes]) -> bytes:
    """The extended header entry: a block of its own, then the sorted records, padded."""
    data = b"".join(_pax_record(k, pax[k]) for k in sorted(pax))
    block = _block(_pax_header_name(name), b"", 0, 0, 0, len(data), 0, b"x", b"", b"", devices=b"")
    return block + data + _ZERO_BLOCK[:-len(data) % BLOCK]


class TarWriter:
    """Writes entries to a binary stream; close() writes the end of the archive (it does not
    close the stream)."""

    def __init__(self, out):
        self.out = out
        self.entries = 0
        self.bytes = 0
        self._header = HeaderBuilder()

    def add(self, name: bytes, node: Node, chunks: Iterable[bytes]) -> None:
        """One entry: name is its path in the archive without the trailing slash of a
        directory; chunks its content in order (nothing for directories and links)."""
        kind = node.type
        if kind == "dir":
            name += b"/"
        write = self.out.write
        header = self._header(name, node)
        write(header)
        size = node.size if kind != "dir" and kind != "symlink" else 0
        written = 0
        for chunk in chunks:
            written += len(chunk)
            if written > size:
                raise TarError(f"{name.decode('utf-8', 'replace')}: content is longer than its recorded size "
                               f"({size} bytes)")
            write(chunk)
        if written != size:
            raise TarError(f"{name.decode('utf-8', 'replace')}: content is {written} bytes, "
                           f"its recorded size {size}")
        padding = -size % BLOCK
        if padding:
            write(_ZERO_BLOCK[:padding])
        self.bytes += len(header) + size + padding
        self.entries += 1

    def close(self) -> None:
        self.out.write(_ZERO_BLOCK * 2)
        self.bytes += 2 * BLOCK
