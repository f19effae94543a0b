"""What the light tree entries share: commands that read only some fields of every entry
(dump, restore) decode them from the tree's JSON into lighter objects than Node.

LightEntry reads Node's fields but the times, with Node.from_json's conversions and type
checks, so that a tree is refused by every light entry exactly when Node refuses it;
subclasses add the times (and whatever else) their command reads.
"""
from .names import go_unquote
from .node import _is_id, _is_id_list, decode_xattrs, raw_linktarget


class LightEntry:
    """A tree entry's fields but the times, with Node's names and values; TypeError (or
    another of gojson.DECODING_ERRORS) for an entry that Node.from_json refuses."""

    __slots__ = ("name", "type", "mode", "uid", "gid", "user", "group", "inode", "device_id", "size", "links",
                 "linktarget", "xattrs", "device", "content", "subtree")

    def __init__(self, obj: dict):
        # written out flat: a restore decodes every entry of the snapshot here
        get = obj.get
        name = get("name", "")
        self.name = name = name if type(name) is str and "\\" not in name else go_unquote(name)
        self.type = kind = get("type", "")
        mode, uid, gid, inode = get("mode") or 0, get("uid") or 0, get("gid") or 0, get("inode") or 0
        device_id, size, links, device = get("device_id") or 0, get("size") or 0, get("links") or 0, get("device") or 0
        if not (type(mode) is int and type(uid) is int and type(gid) is int and type(inode) is int
                and type(device_id) is int and type(size) is int and type(links) is int and type(device) is int):
            # Node's int() of each (another JSON number, or a refusal): the numbers restic
            # writes are ints already, and checking that is cheaper than eight calls
            mode, uid, gid, inode = int(mode), int(uid), int(gid), int(inode)
            device_id, size, links, device = int(device_id), int(size), int(links), int(device)
        self.mode, self.uid, self.gid, self.inode = mode, uid, gid, inode
        self.device_id, self.size, self.links, self.device = device_id, size, links, device
        self.user = user = get("user") or ""
        self.group = group = get("group") or ""
        linktarget = get("linktarget") or ""
        if get("linktarget_raw"):
            linktarget = raw_linktarget(obj)
        self.linktarget = linktarget
        xattrs = get("extended_attributes")
        self.xattrs = xattrs = decode_xattrs(xattrs) if xattrs else []
        self.content = content = get("content")
        self.subtree = subtree = get("subtree")
        generic = get("generic_attributes")
        if not (type(name) is str and type(kind) is str and type(user) is str and type(group) is str
                and type(linktarget) is str and type(get("error") or "") is str
                and (content is None or _is_id_list(content)) and (subtree is None or _is_id(subtree))
                and (not xattrs or all(type(n) is str for n, _ in xattrs))
                and (generic is None or type(generic) is dict)):
            raise TypeError(f"a field of tree entry {name!r} has the wrong type")
