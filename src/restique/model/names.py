"""File names and link targets as restic stores them.

A node's name is written as Go's strconv.Quote would write it, without the outer quotes:
backslash and double quote are escaped, non-printable characters become \\n, \\x1f, \\u200b ...,
and bytes that are not valid UTF-8 become \\xNN. Python keeps such names as str with
surrogate escapes (os.fsdecode); these helpers convert both ways.
"""
import re

_SIMPLE_OUT = {7: "\\a", 8: "\\b", 12: "\\f", 10: "\\n", 13: "\\r", 9: "\\t", 11: "\\v", 0x5C: "\\\\", 0x22: '\\"'}
# everything but printable ASCII other than backslash and quote; written as that complement
# because a class up to U+10FFFF takes 25 ms to compile, paid by every command that loads this
_NEEDS_QUOTING = re.compile(r'[^ !#-\[\]-~]')


def go_quote(name: str) -> str:
    """strconv.Quote(name)[1:-1] for a file system name (str with surrogate escapes)."""
    if name.isascii() and name.isprintable() and "\\" not in name and '"' not in name:
        return name  # the common case, decided without a regex scan
    if not _NEEDS_QUOTING.search(name):
        return name
    out = []
    for ch in name:
        cp = ord(ch)
        if 0xDC80 <= cp <= 0xDCFF:  # an undecodable byte, from surrogateescape
            out.append("\\x%02x" % (cp - 0xDC00))
        elif cp in _SIMPLE_OUT:
            out.append(_SIMPLE_OUT[cp])
        elif ch.isprintable() or ch == " ":
            out.append(ch)
        elif cp < 0x20 or cp == 0x7F:
            out.append("\\x%02x" % cp)
        elif 0xD800 <= cp <= 0xDFFF:
            out.append("\\ufffd")  # Go sees an invalid rune here
        elif cp < 0x10000:
            out.append("\\u%04x" % cp)
        else:
            out.append("\\U%08x" % cp)
    return "".join(out)


_GO_ESCAPE = re.compile(r"\\(x[0-9a-fA-F]{2}|u[0-9a-fA-F]{4}|U[0-9a-fA-F]{8}|[0-7]{3}|[abfnrtv\\\"'])")
_SIMPLE_IN = {"a": "\a", "b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t", "v": "\v", "\\": "\\", '"': '"', "'": "'"}


def go_unquote(text: str) -> str:
    """Inverse of go_quote: the name as a str with surrogate escapes for raw bytes."""
    if "\\" not in text:
        return text
    out = bytearray()
    pos = 0
    for m in _GO_ESCAPE.finditer(text):
        out += text[pos:m.start()].encode("utf-8", "surrogateescape")
        esc = m.group(1)
        if esc[0] == "x":
            out.append(int(esc[1:], 16))
        elif esc[0] in "uU":
            out += chr(int(esc[1:], 16)).encode("utf-8", "surrogatepass")
        elif esc[0] in "01234567":
            out.append(int(esc, 8) & 0xFF)
        else:
            out += _SIMPLE_IN[esc].encode()
        pos = m.end()
    out += text[pos:].encode("utf-8", "surrogateescape")
    return out.decode("utf-8", "surrogateescape")


def display(name: str) -> str:
    """A name for JSON output: invalid UTF-8 shown as U+FFFD, as Go's encoder does."""
    return name.encode("utf-8", "surrogateescape").decode("utf-8", "replace")


def unsafe_name(name: str) -> bool:
    """True for a tree entry name that is not one plain path component: empty, ``.``, ``..``,
    or holding a slash (or a NUL, which no file system name holds). restic's restorer refuses
    such names ("invalid child node name"); anything that turns tree entries into paths on
    this machine (restore, dump, mount) must refuse them too, or a hostile repository could
    write outside the target."""
    return name in ("", ".", "..") or "/" in name or "\0" in name


def child_name_problem(name: str, previous: str | None) -> str | None:
    """Why a tree entry must not be turned into a path on this machine, in restic's words, or
    None. previous: the name of the entry just before it in the same tree (trees are sorted by
    name, so a duplicate follows its twin). Two entries of one name would let the first (a
    symlink) stand where the second's contents go."""
    if unsafe_name(name):
        return f"invalid child node name {name}"
    if name == previous:
        return f"duplicate child node name {name}"
    return None
