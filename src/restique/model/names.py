"""File names in tree nodes.

restic stores a node's name as a string; names that are not valid UTF-8 are escaped Go-style
(`\\xe9`). These helpers give back the name as the file system spells it.
"""
import re

_GO_ESCAPE = re.compile(r"\\(x[0-9a-fA-F]{2}|u[0-9a-fA-F]{4}|U[0-9a-fA-F]{8}|[abfnrtv\\\"'])")
_SIMPLE = {"a": "\a", "b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t", "v": "\v", "\\": "\\", '"': '"', "'": "'"}


def go_unquote_bytes(text: str) -> bytes:
    """Undo Go's strconv.Quote escaping (without the outer quotes) into raw bytes."""
    out = bytearray()
    pos = 0
    for m in _GO_ESCAPE.finditer(text):
        out += text[pos:m.start()].encode("utf-8", "surrogateescape")
        esc = m.group(1)
        if esc[0] == "x":
            out.append(int(esc[1:], 16))
        elif esc[0] in "uU":
            out += chr(int(esc[1:], 16)).encode("utf-8", "surrogatepass")
        else:
            out += _SIMPLE[esc].encode()
        pos = m.end()
    out += text[pos:].encode("utf-8", "surrogateescape")
    return bytes(out)


def node_name(node: dict) -> str:
    """The node's name as a str (undecodable bytes as surrogate escapes, like os.fsdecode)."""
    name = node.get("name", "")
    if "\\" in name:
        return go_unquote_bytes(name).decode("utf-8", "surrogateescape")
    return name
