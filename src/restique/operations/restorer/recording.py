"""What the finish step needs from the plan walk, kept compactly so the finish step replays it
rather than walking the snapshot again (loading and decoding every tree a second time was
most of a restore's Python time; a tree cache large enough to avoid it costs far more memory).

Every finish event of the walk (an entry visited, a directory left, a tree that could not be
loaded) is one fixed-size record in a bytearray, and the entry's name in another (its UTF-8
bytes; 44 bytes and the name an entry instead of ~170); the fields that are not numbers
(extended attributes, link targets, owner names, --delete's name lists) and those only few
entries need (a hard link's inode and device, a device's number) go in a side table. An entry whose fields do not fit a record (a damaged or hostile tree) keeps
its node, so that the finish step meets it, and reports it, just as it would have.
"""
import os
import struct
import threading
from typing import Callable, Dict, List, Optional

from ...errors import RestiqueError
from ...model.node import Node
from ..walker import join

_VISIT, _LEAVE, _LEAVE_ROOT, _ERROR = range(4)
_TYPES = ("file", "dir", "symlink", "dev", "chardev", "fifo")
_TYPE_CODE = {name: code for code, name in enumerate(_TYPES)}
_FILE = _TYPE_CODE["file"]
# event, type, selected, content, unix mode, parent directory, name length, uid, gid, links,
# atime, mtime
_RECORD = struct.Struct("<BBBBIIIIIIqq")
_CONTENT = 3  # the offset in a record of the content byte: one of these
NO_CONTENT = 0  # not a regular file whose metadata the finish step sets
CONTENT_DONE = 1  # written by this restore, or found right
CONTENT_PENDING = 2  # handed to the content writers, not done yet
CONTENT_FAILED = 3  # failed, and the file this restore created for it is to be removed
CONTENT_FAILED_UNTOUCHED = 4  # failed before anything was created
CONTENT_SET = 5  # written, and its owner, times and mode set by the writer that finished it
WAIT_SECONDS = 0.5  # between the replay's looks at whether the writers stopped


class EntryMeta:
    """The fields of a node the finish step uses (times as nanoseconds)."""

    __slots__ = ("type", "unix_mode", "uid", "gid", "user", "group", "atime_ns", "mtime_ns",
                 "links", "inode", "device_id", "device", "xattrs", "linktarget", "content")

    @classmethod
    def from_node(cls, node: Node) -> "EntryMeta":
        meta = cls()
        meta.type, meta.unix_mode = node.type, node.unix_mode
        meta.uid, meta.gid, meta.user, meta.group = node.uid, node.gid, node.user, node.group
        meta.atime_ns, meta.mtime_ns = node.atime.unix_ns, node.mtime.unix_ns
        meta.links, meta.inode, meta.device_id, meta.device = node.links, node.inode, node.device_id, node.device
        meta.xattrs, meta.linktarget = node.xattrs, node.linktarget
        meta.content = NO_CONTENT
        return meta


class _Extra:
    """The side-table entry of one record."""

    __slots__ = ("xattrs", "linktarget", "user", "group", "inode", "device_id", "device", "names",
                 "node", "error")

    def __init__(self):
        self.xattrs, self.linktarget, self.user, self.group = [], "", "", ""
        self.inode = self.device_id = self.device = 0
        self.names = self.node = self.error = None


class FinishRecording:
    """Filled by the plan walk (visit, leave, error: the finish callbacks' arguments), then
    replayed to the finish callbacks in the same order. by_name: keep owner names; names:
    keep each directory's names (--delete needs them).

    The replay may run while the content writers still work: a file handed to them is
    CONTENT_PENDING until they tell content_finished(), and the replay waits for that
    before it hands the file on (its metadata, or its removal, comes after its content)."""

    def __init__(self, root_target: str, by_name: bool, names: bool):
        self._root = root_target
        self._by_name = by_name
        self._keep_names = names
        self._records = bytearray()
        self._names = bytearray()  # every record's name (an error's location), one after another
        self._extras: Dict[int, _Extra] = {}
        self._dirs: List[tuple] = [("/", root_target)]  # (location, target) of parents
        self._dir_index: Dict[str, int] = {root_target: 0}
        self._content_changed = threading.Condition()

    def visit(self, node: Node, target: str, location: str, parent: str) -> tuple:
        """Record a visited entry; returns its directory's (location, target), one pair per
        directory that the plan's files share."""
        index = self._parent(parent, location)
        self._add(_VISIT, node, index, 1, None)
        return self._dirs[index]

    def finish_content(self, state: int = CONTENT_DONE) -> int:
        """The entry just visited is a regular file whose metadata the finish step sets once
        its content is right (CONTENT_DONE) or written (CONTENT_PENDING); returns its record's
        number for content_finished()."""
        self._records[len(self._records) - _RECORD.size + _CONTENT] = state
        return len(self._records) // _RECORD.size - 1

    def content_finished(self, record: int, state: int) -> None:
        """From the content writers: the file of record is CONTENT_DONE, CONTENT_SET or failed."""
        self.contents_finished((record,), state)

    def contents_finished(self, records, state: int) -> None:
        """content_finished() for several records: one wake-up for all."""
        size, length = _RECORD.size, len(self._records)
        for record in records:
            offset = record * size + _CONTENT
            if offset < length:  # (else replayed and let go of: nothing waits for it)
                self._records[offset] = state  # one byte: set whole under the GIL
        with self._content_changed:
            self._content_changed.notify_all()

    def plain_metadata(self, record: int) -> Optional[tuple]:
        """(uid, gid, atime_ns, mtime_ns, mode) of record's regular file if that is all of its
        metadata (no extended attributes, owner names or other hard links), else None: the
        finish step then sets it. For a writer, while the file is pending."""
        if self._by_name or record in self._extras:
            return None
        fields = _RECORD.unpack_from(self._records, record * _RECORD.size)
        if fields[1] != _FILE or fields[9] > 1:
            return None
        return fields[7], fields[8], fields[10], fields[11], fields[4]

    def _content(self, record: int, stopped: Callable[[], bool]) -> int:
        """The content state of record once it is no longer pending. stopped(): True once
        the writers have ended (it raises their unexpected errors)."""
        offset = record * _RECORD.size + _CONTENT
        with self._content_changed:
            while self._records[offset] == CONTENT_PENDING:
                ended = stopped()  # before the look: a writer tells of a file before it ends
                if self._records[offset] != CONTENT_PENDING:
                    break
                if ended:
                    raise RestiqueError("restore: the content writers ended with a file not written")
                self._content_changed.wait(WAIT_SECONDS)
            return self._records[offset]

    def leave(self, node: Optional[Node], target: str, location: str, names, selected=True) -> None:
        if node is None:
            self._add(_LEAVE_ROOT, None, 0, 1, names)
        else:
            self._add(_LEAVE, node, self._parent(os.path.dirname(target), location), selected, names)

    def error(self, location: str, exc: Exception) -> None:
        self._extra(len(self._records) // _RECORD.size).error = exc
        self._records += _RECORD.pack(_ERROR, 0, 0, 0, 0, 0, self._name(location), 0, 0, 0, 0, 0)

    def _name(self, name: str) -> int:
        """Keep name; its length in bytes, for its record."""
        encoded = name.encode("utf-8", "surrogatepass")  # any str, back as it was
        self._names += encoded
        return len(encoded)

    def _parent(self, parent_target: str, location: str) -> int:
        index = self._dir_index.get(parent_target)
        if index is None:
            index = self._dir_index[parent_target] = len(self._dirs)
            self._dirs.append((location.rsplit("/", 1)[0] or "/", parent_target))
        return index

    def _extra(self, i: int) -> _Extra:
        extra = self._extras.get(i)
        if extra is None:
            extra = self._extras[i] = _Extra()
        return extra

    def _add(self, event: int, node: Optional[Node], parent: int, selected: bool, names) -> None:
        i = len(self._records) // _RECORD.size
        if self._keep_names and names is not None:
            self._extra(i).names = names
        if node is None:
            self._records += _RECORD.pack(event, 0, selected, 0, 0, parent, 0, 0, 0, 0, 0, 0)
            return
        name_length = self._name(node.name)
        try:
            try:  # a walk's entries.RestoreEntry has its times read already
                atime_ns, mtime_ns = node.atime_ns, node.mtime_ns
            except AttributeError:  # a model.node.Node
                atime_ns, mtime_ns = node.atime.unix_ns, node.mtime.unix_ns
            record = _RECORD.pack(event, _TYPE_CODE[node.type], selected, 0, node.unix_mode, parent,
                                  name_length, node.uid, node.gid, node.links, atime_ns, mtime_ns)
            if node.xattrs or node.linktarget or self._by_name or node.links > 1 or node.device:
                extra = self._extra(i)
                extra.xattrs, extra.linktarget = node.xattrs, node.linktarget
                extra.inode, extra.device_id, extra.device = node.inode, node.device_id, node.device
                if self._by_name:
                    extra.user, extra.group = node.user, node.group
        except Exception:  # noqa: BLE001 - an unusual entry: the finish step meets the node itself
            record = _RECORD.pack(event, 0, selected, 0, 0, parent, name_length, 0, 0, 0, 0, 0)
            self._extra(i).node = node
        self._records += record

    def replay(self, visit_node: Callable, leave_dir: Callable, report_error: Callable,
               guard: Callable, stopped: Callable[[], bool] = lambda: True) -> None:
        """Call the finish callbacks as the walk would have: visit_node(meta, target, location,
        parent_target), leave_dir(meta or None, target, location, names, selected),
        report_error(location, exc) for a tree that could not be loaded; each through guard.
        A visit of a file with pending content waits for it (see _content)."""
        extras, dirs, all_names = self._extras, self._dirs, self._names
        name_end = 0
        for i, fields in enumerate(_RECORD.iter_unpack(self._records)):
            event = fields[0]
            name_start, name_end = name_end, name_end + fields[6]
            name = all_names[name_start:name_end].decode("utf-8", "surrogatepass")
            if fields[_CONTENT] == CONTENT_PENDING:
                fields = fields[:_CONTENT] + (self._content(i, stopped),) + fields[_CONTENT + 1:]
            if fields[_CONTENT] == CONTENT_SET:
                continue  # a file with nothing left to do (most of a restore's entries)
            extra = extras.get(i)
            if event == _ERROR:
                report_error(name, extra.error)
                continue
            names = extra.names if extra is not None else None
            if event == _LEAVE_ROOT:
                guard("/", leave_dir, None, self._root, "/", names, True)
                continue
            parent_location, parent_target = dirs[fields[5]]
            location, target = join(parent_location, name), join(parent_target, name)
            if extra is not None and extra.node is not None:
                guard(location, _from_node, extra.node, event, target, location, parent_target,
                      names, fields[2], fields[3], visit_node, leave_dir)
                continue
            meta = _meta(fields, extra)
            if event == _VISIT:
                guard(location, visit_node, meta, target, location, parent_target)
            else:
                guard(location, leave_dir, meta, target, location, names, bool(fields[2]))
        self._records, self._names = bytearray(), bytearray()  # replayed once: free them


def _meta(fields, extra: Optional[_Extra]) -> EntryMeta:
    meta = EntryMeta()
    meta.unix_mode, (meta.uid, meta.gid, meta.links, meta.atime_ns, meta.mtime_ns) = fields[4], fields[7:]
    meta.type = _TYPES[fields[1]]
    meta.content = fields[_CONTENT]
    if extra is None:
        meta.xattrs, meta.linktarget, meta.user, meta.group = (), "", "", ""
        meta.inode = meta.device_id = meta.device = 0
    else:
        meta.xattrs, meta.linktarget, meta.user, meta.group = extra.xattrs, extra.linktarget, extra.user, extra.group
        meta.inode, meta.device_id, meta.device = extra.inode, extra.device_id, extra.device
    return meta


def _from_node(node: Node, event: int, target: str, location: str, parent: str, names, selected,
               content, visit_node: Callable, leave_dir: Callable) -> None:
    meta = EntryMeta.from_node(node)  # raises what using the node raises
    meta.content = content
    if event == _VISIT:
        visit_node(meta, target, location, parent)
    else:
        leave_dir(meta, target, location, names, bool(selected))
