"""Tree nodes and trees, encoded byte for byte as restic encodes them.

A tree blob is ``{"nodes":[...]}`` plus a newline, nodes sorted by name; its id is the
SHA-256 of those bytes, so field order, omitted fields and time formatting all matter.
"""
import base64
import re
from dataclasses import dataclass, field
from typing import Callable, List, Optional, Tuple, TypeVar

from . import gojson
from .gotime import GoTime
from ..errors import IntegrityError, RestiqueError
from .names import go_quote, go_unquote

_Entry = TypeVar("_Entry")  # what decode_entries makes of each entry

# Go's os.FileMode type bits
MODE_DIR = 1 << 31
MODE_SYMLINK = 1 << 27
MODE_DEVICE = 1 << 26
MODE_NAMED_PIPE = 1 << 25
MODE_SOCKET = 1 << 24
MODE_SETUID = 1 << 23
MODE_SETGID = 1 << 22
MODE_CHAR_DEVICE = 1 << 21
MODE_STICKY = 1 << 20
MODE_IRREGULAR = 1 << 19
MODE_PERM = 0o777

@dataclass(slots=True)
class Node:
    name: str  # as the file system spells it (surrogate escapes for raw bytes)
    type: str
    mode: int = 0  # Go os.FileMode: permission bits | type bits | setuid/setgid/sticky
    mtime: GoTime = GoTime(0)
    atime: GoTime = GoTime(0)
    ctime: GoTime = GoTime(0)
    uid: int = 0
    gid: int = 0
    user: str = ""
    group: str = ""
    inode: int = 0
    device_id: int = 0
    size: int = 0
    links: int = 0
    linktarget: str = ""  # surrogate escapes for bytes that are not UTF-8
    xattrs: List[Tuple[str, bytes]] = field(default_factory=list)
    generic_attributes: Optional[dict] = None  # kept as found, never interpreted here
    device: int = 0
    content: Optional[List[str]] = None
    subtree: Optional[str] = None
    error: str = ""

    # --- permissions in Unix terms ---
    @property
    def unix_mode(self) -> int:
        """st_mode permission part: rwx bits plus setuid/setgid/sticky."""
        return unix_mode(self.mode)

    def to_json(self) -> dict:
        obj = {"name": go_quote(self.name), "type": self.type}
        if self.mode:
            obj["mode"] = self.mode
        obj["mtime"] = self.mtime.rfc3339()
        obj["atime"] = self.atime.rfc3339()
        obj["ctime"] = self.ctime.rfc3339()
        obj["uid"] = self.uid
        obj["gid"] = self.gid
        if self.user:
            obj["user"] = self.user
        if self.group:
            obj["group"] = self.group
        if self.inode:
            obj["inode"] = self.inode
        if self.device_id:
            obj["device_id"] = self.device_id
        if self.size:
            obj["size"] = self.size
        if self.links:
            obj["links"] = self.links
        if self.linktarget:
            raw = self.linktarget.encode("utf-8", "surrogateescape")
            try:
                raw.decode("utf-8")
                obj["linktarget"] = self.linktarget
            except UnicodeDecodeError:
                # Go writes the lossy string (\ufffd per bad byte) and the exact bytes
                obj["linktarget"] = self.linktarget
                obj["linktarget_raw"] = base64.b64encode(raw).decode()
        if self.xattrs:
            obj["extended_attributes"] = [
                {"name": n, "value": base64.b64encode(v).decode() if v is not None else None} for n, v in self.xattrs
            ]
        if self.generic_attributes:
            obj["generic_attributes"] = self.generic_attributes
        if self.device:
            obj["device"] = self.device
        obj["content"] = self.content
        if self.subtree:
            obj["subtree"] = self.subtree
        if self.error:
            obj["error"] = self.error
        return obj

    @classmethod
    def from_json(cls, obj: dict) -> "Node":
        """The node in a tree's JSON object; a DECODING_ERRORS exception when a field has the
        wrong type (checked where a wrong type would surface later, far from the tree).
        Written out flat, with positional fields: every walk decodes each entry here."""
        get = obj.get
        # times: parsed on first use; text that is not a time reads as GoTime(0)
        # (one object for equal texts: a backup without atimes writes atime = mtime, and a
        # GoTime is immutable, its lazy parse giving the same fields whoever asks first)
        mtime_text, atime_text, ctime_text = get("mtime"), get("atime"), get("ctime")
        mtime = _lazy_time(mtime_text) if mtime_text and type(mtime_text) is str else GoTime(0)
        atime = mtime if atime_text == mtime_text else \
            _lazy_time(atime_text) if atime_text and type(atime_text) is str else GoTime(0)
        ctime = mtime if ctime_text == mtime_text else \
            _lazy_time(ctime_text) if ctime_text and type(ctime_text) is str else GoTime(0)
        linktarget = get("linktarget") or ""
        if get("linktarget_raw"):
            linktarget = raw_linktarget(obj)
        xattrs = get("extended_attributes")
        xattrs = decode_xattrs(xattrs) if xattrs else []
        name = get("name", "")
        node = cls(
            name if type(name) is str and "\\" not in name else go_unquote(name),
            get("type", ""),
            int(get("mode") or 0),
            mtime, atime, ctime,
            int(get("uid") or 0),
            int(get("gid") or 0),
            get("user") or "",
            get("group") or "",
            int(get("inode") or 0),
            int(get("device_id") or 0),
            int(get("size") or 0),
            int(get("links") or 0),
            linktarget,
            xattrs,
            get("generic_attributes"),
            int(get("device") or 0),
            get("content"),
            get("subtree"),
            get("error") or "",
        )
        _check_types(node)
        return node


_lazy_time = GoTime.lazy

_HEX_DIGITS = re.compile("[0-9a-f]*").fullmatch


def _is_id(text) -> bool:
    return type(text) is str and len(text) == 64 and _HEX_DIGITS(text) is not None


def _is_id_list(ids) -> bool:
    """A list of 64-digit lowercase hex ids (checked in bulk: a file lists thousands)."""
    if type(ids) is not list:
        return False
    if len(ids) == 1:
        return _is_id(ids[0])
    joined = "".join(ids)  # TypeError for an entry that is not a string
    # all 64 long when the shortest is and the total is 64 each
    return len(joined) == 64 * len(ids) and (not ids or min(map(len, ids)) == 64) and bool(_HEX_DIGITS(joined))


def unix_mode(mode: int) -> int:
    """st_mode's permission part of a Go file mode: rwx bits plus setuid/setgid/sticky."""
    m = mode & MODE_PERM
    if mode & MODE_SETUID:
        m |= 0o4000
    if mode & MODE_SETGID:
        m |= 0o2000
    if mode & MODE_STICKY:
        m |= 0o1000
    return m


def raw_linktarget(obj: dict) -> str:
    """The link target of an entry that records it as linktarget_raw (bytes that are not
    UTF-8), as a str that encodes back to those bytes."""
    return base64.b64decode(obj["linktarget_raw"]).decode("utf-8", "surrogateescape")


def decode_xattrs(attributes: list) -> list:
    """An entry's extended_attributes as [(name, value bytes), ...]."""
    return [(a.get("name", ""), base64.b64decode(a["value"]) if a.get("value") else b"") for a in attributes]


def _check_types(node: Node) -> None:
    """TypeError for a field that restic's decoder would refuse and that later code would
    trip over (a name that is a number, content that is a string, an attribute that is a list)."""
    if type(node.name) is str and type(node.type) is str and type(node.user) is str and type(node.group) is str \
            and type(node.linktarget) is str and type(node.error) is str:
        content, subtree = node.content, node.subtree
        if (content is None or _is_id_list(content)) and (subtree is None or _is_id(subtree)) \
                and (not node.xattrs or all(type(name) is str for name, _ in node.xattrs)) \
                and (node.generic_attributes is None or type(node.generic_attributes) is dict):
            return
    raise TypeError(f"a field of tree entry {node.name!r} has the wrong type")


class TreeFormatError(IntegrityError, ValueError):
    """A tree blob whose JSON does not decode into nodes (a ValueError as well, so that the
    callers that name the tree in their message keep catching it)."""


def _tree_nodes(raw: bytes) -> list:
    obj = gojson.loads(raw)
    nodes = obj.get("nodes") or []
    if type(nodes) is not list:
        raise TypeError("nodes is not a list")
    return nodes


def _sort_key(node: Node) -> bytes:
    return node.name.encode("utf-8", "surrogateescape")


# Text that goes between JSON quotes unchanged twice over: go_quote leaves it alone (printable
# ASCII but for quote and backslash) and Go's encoder does too (no < > &).
_PLAIN_TEXT = re.compile(r'[ !#-%\'-;=?-\[\]-~]*').fullmatch
# ',"user":"root"' and the like: a tree repeats the few owners of its entries
_OWNER_TEXT = {}


def _owner_text(key: str, value: str) -> str:
    text = _OWNER_TEXT.get((key, value))
    if text is None:
        if len(_OWNER_TEXT) > 4096:
            _OWNER_TEXT.clear()
        text = _OWNER_TEXT[(key, value)] = ',"%s":%s' % (key, gojson.string(value))
    return text


def encode_node(n: Node) -> str:
    """gojson.dumps(n.to_json()), written directly: a backup encodes every node of the tree,
    and building the text is several times cheaper than building a dict and serialising it.
    Nodes with rarely used fields take the general path."""
    if type(n) is EncodedNode and n.text is not None:
        return n.text
    linktarget = n.linktarget
    if n.xattrs or n.generic_attributes or n.error or linktarget and not linktarget.isascii():
        return gojson.dumps(n.to_json())
    name = n.name
    if _PLAIN_TEXT(name) is None:
        name = gojson.string(go_quote(name))[1:-1]
    mtime, atime, ctime = n.mtime, n.atime, n.ctime
    # f-strings: half the cost of %-formatting (the fields are ints, so the digits are the same)
    text = f'{{"name":"{name}","type":"{n.type}"'
    if n.mode:
        text += f',"mode":{n.mode}'
    text += (f',"mtime":"{mtime._text or mtime.rfc3339()}","atime":"{atime._text or atime.rfc3339()}"'
             f',"ctime":"{ctime._text or ctime.rfc3339()}","uid":{n.uid},"gid":{n.gid}')
    if n.user:
        text += _owner_text("user", n.user)
    if n.group:
        text += _owner_text("group", n.group)
    if n.inode:
        text += f',"inode":{n.inode}'
    if n.device_id:
        text += f',"device_id":{n.device_id}'
    if n.size:
        text += f',"size":{n.size}'
    if n.links:
        text += f',"links":{n.links}'
    if linktarget:
        text += ',"linktarget":' + gojson.string(linktarget)
    if n.device:
        text += f',"device":{n.device}'
    content = n.content
    if content is None:
        text += ',"content":null'
    elif content:
        text += ',"content":["' + '","'.join(content) + '"]'
    else:
        text += ',"content":[]'
    if n.subtree:
        text += f',"subtree":"{n.subtree}"}}'
    else:
        text += "}"
    return text


class InvalidNodeName(RestiqueError):
    """A tree entry whose name no restore could create: never written to a repository."""


def check_node_name(name: str) -> None:
    if name in ("", ".", "..") or "/" in name:
        raise InvalidNodeName(f"invalid node name {name!r}: a tree entry needs a plain file name")


def _name_of(node: Node) -> str:
    return node.name


def encode_tree(nodes: List[Node]) -> bytes:
    """The tree blob for nodes (sorted by name bytewise, as restic sorts them)."""
    ascii_names = True
    for node in nodes:
        name = node.name
        if name in ("", ".", "..") or "/" in name:
            check_node_name(name)
        if ascii_names and not name.isascii():
            ascii_names = False
    # code point order is UTF-8 byte order but for surrogate escapes: ASCII names sort as they are
    ordered = sorted(nodes, key=_name_of if ascii_names else _sort_key)
    # One growing buffer, filled a batch of nodes at a time: a folder of a million entries peaks
    # at about twice its tree's size, where joining all the nodes' texts first held four times that.
    out = bytearray(b'{"nodes":[')
    for start in range(0, len(ordered), _NODES_PER_BATCH):
        if start:
            out += b","
        out += ",".join(map(encode_node, ordered[start:start + _NODES_PER_BATCH])).encode("utf-8", "surrogateescape")
    out += b"]}\n"
    return bytes(out)


_NODES_PER_BATCH = 256


def decode_entries(raw: bytes, make: Callable[[dict], _Entry]) -> List[_Entry]:
    """make(JSON object) of each entry of a tree blob; TreeFormatError when it is not a tree
    (commands that read only some fields make lighter entries than Node)."""
    try:
        return [make(n) for n in _tree_nodes(raw)]
    except gojson.DECODING_ERRORS as exc:
        raise TreeFormatError(f"invalid tree: {exc}") from None


def decode_tree(raw: bytes) -> List[Node]:
    return decode_entries(raw, Node.from_json)


_EAGER_FIELDS = ("name", "type", "subtree")
_LAZY_FIELDS = frozenset(Node.__dataclass_fields__) - set(_EAGER_FIELDS)
_set_slot = object.__setattr__


class LazyNode(Node):
    """A Node that keeps its JSON object and decodes it (Node.from_json) on the first use of
    a field other than name, type and subtree: a walk that looks only at names and types
    (`ls`, `find` by name) skips most of the decoding. Every field equals Node.from_json's."""

    __slots__ = ("_obj",)  # the JSON object until it is decoded, then None

    @classmethod
    def wrap(cls, obj: dict) -> "LazyNode":
        node = cls.__new__(cls)
        _set_slot(node, "_obj", obj)
        name = obj.get("name", "")
        _set_slot(node, "name", go_unquote(name) if "\\" in name else name)
        _set_slot(node, "type", obj.get("type", ""))
        _set_slot(node, "subtree", obj.get("subtree"))
        if not (type(name) is str and type(node.type) is str and (node.subtree is None or _is_id(node.subtree))):
            raise TypeError(f"tree entry {name!r}: name, type or subtree has the wrong type")
        return node

    def _decode(self) -> None:
        obj = object.__getattribute__(self, "_obj")
        if obj is None:
            return
        try:
            full = Node.from_json(obj)
        except gojson.DECODING_ERRORS as exc:
            raise TreeFormatError(f"tree entry {go_quote(self.name)} is damaged: {exc}") from None
        for field in _LAZY_FIELDS:
            _set_slot(self, field, getattr(full, field))
        _set_slot(self, "_obj", None)

    def __getattr__(self, field: str):
        # called only for a slot not set yet
        if field not in _LAZY_FIELDS:
            raise AttributeError(field)
        self._decode()
        return object.__getattribute__(self, field)

    def __setattr__(self, field: str, value) -> None:
        if field in _LAZY_FIELDS:
            self._decode()  # so that decoding later does not overwrite the value
        _set_slot(self, field, value)

    def __eq__(self, other):
        if not isinstance(other, Node):
            return NotImplemented
        return all(getattr(self, name) == getattr(other, name) for name in Node.__dataclass_fields__)


def decode_tree_lazy(raw: bytes) -> List[Node]:
    """decode_tree with LazyNode entries (a damaged node fails when its fields are used)."""
    return decode_entries(raw, LazyNode.wrap)


class EncodedNode(LazyNode):
    """A LazyNode whose tree entry text is known: an entry of the parent snapshot's tree that
    is unchanged, written again as it was (the caller vouches that encode_node would write
    the same text). It keeps the text, not the JSON object (decoded from the text if a field
    is asked for): a backup holds the unchanged entries of every folder not written yet, and
    the objects are most of their memory. Setting a field drops the text."""

    __slots__ = ("text",)

    @classmethod
    def of(cls, obj: dict, text: str) -> "EncodedNode":
        node = cls.wrap(obj)
        _set_slot(node, "_obj", text)  # a str until decoded: see _decode
        _set_slot(node, "text", text)
        return node

    def _decode(self) -> None:
        obj = object.__getattribute__(self, "_obj")
        if type(obj) is str:
            _set_slot(self, "_obj", gojson.loads(obj))
        LazyNode._decode(self)

    def __setattr__(self, field: str, value) -> None:
        _set_slot(self, "text", None)
        LazyNode.__setattr__(self, field, value)
