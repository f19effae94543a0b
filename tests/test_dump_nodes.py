"""dump's own decoding of tree entries (operations/dump_nodes.py) gives every field the
archive writers read as Node.from_json does: modification times of every shape (the
regular-expression path and GoTime's), raw link targets, extended attributes; and refuses
the same wrong types."""
import base64

import pytest

from restique.model.gotime import GoTime
from restique.model.node import Node
from restique.operations.dump_nodes import ArchivedNode, decode_archived_tree, parse_time

TIMES = [
    "2023-05-01T12:54:36.00002353Z", "2023-05-01T12:54:36Z", "2023-05-01T12:54:36+02:00",
    "2023-05-01T12:54:36.5-07:30", "2024-02-29T23:59:59.9999999999+01:00", "2023-05-01t12:54:36z",
    "2023-05-01T12:54:36-00:00", "2023-05-01T12:54:36.000+00:00", "1970-01-01T00:00:00Z",
    # GoTime's path: before 1970, the zero time, other separators, or not a time at all
    "0001-01-01T00:00:00Z", "1969-12-31T23:59:59.999999999Z", "2023-05-01 12:54:36Z",
    # refused by both: impossible dates and clocks, bad fractions, zones, digits
    "2023-02-29T00:00:00Z", "2023-13-01T00:00:00Z", "2023-05-01T24:00:00Z", "2023-05-01T12:60:00Z",
    "2023-05-01T12:54:36.Z", "2023-05-01T12:54:36.1a2Z", "2023-05-01T12:54:36+24:00",
    "2023-05-01T12:54:36+01:60", "2023-05-01T12:54:36", "2023-05-01T12:54:36.123456+0100",
    "2023-05-01T12:54:3\uff16Z", "2023-05-01T12:54:36.\uff11Z", "2023-05-01T1:54:36Z", "garbage", "",
]


@pytest.mark.parametrize("text", TIMES)
def test_times_read_as_gotime_reads_them(text):
    fast, general = parse_time(text), GoTime.lazy(text)
    assert (fast.unix_ns, fast.offset) == (general.unix_ns, general.offset)


def test_a_time_that_is_not_text_is_zero():
    assert (parse_time(None).unix_ns, parse_time(12).unix_ns) == (0, 0)


FIELDS = ("name", "type", "mode", "uid", "gid", "user", "group", "inode", "device_id", "size", "links", "linktarget",
          "xattrs", "device", "content", "subtree")


def _entries():
    raw_target = "caf\udce9".encode("utf-8", "surrogateescape")
    yield {"name": "file.txt", "type": "file", "mode": 420, "mtime": TIMES[0], "atime": TIMES[1],
           "ctime": TIMES[2], "uid": 1000, "gid": 100, "user": "u", "group": "g", "inode": 5, "size": 12,
           "links": 1, "content": ["a" * 64, "b" * 64]}
    yield {"name": "d\\u00e9", "type": "dir", "mode": 2147484141, "mtime": TIMES[9], "uid": 0, "gid": 0,
           "content": None, "subtree": "c" * 64}
    yield {"name": "link", "type": "symlink", "mode": 134218239, "mtime": TIMES[11], "linktarget": "caf\ufffd",
           "linktarget_raw": base64.b64encode(raw_target).decode(), "content": None}
    yield {"name": "x", "type": "file", "mtime": "not a time", "content": [],
           "extended_attributes": [{"name": "user.a", "value": base64.b64encode(b"1").decode()},
                                   {"name": "user.b", "value": None}]}
    yield {"name": "fifo", "type": "fifo", "size": "7"}


@pytest.mark.parametrize("obj", list(_entries()))
def test_entries_read_as_nodes_read_them(obj):
    ours, node = ArchivedNode(obj), Node.from_json(obj)
    assert [getattr(ours, f) for f in FIELDS] == [getattr(node, f) for f in FIELDS]
    assert (ours.mtime.unix_ns, ours.mtime.offset) == (node.mtime.unix_ns, node.mtime.offset)


@pytest.mark.parametrize("bad", [{"name": 5}, {"type": None}, {"user": ["u"]}, {"content": "a" * 64},
                                 {"content": ["abc"]}, {"subtree": "x"}, {"size": "many"},
                                 {"extended_attributes": [{"name": 3, "value": None}]}, {"error": 3},
                                 {"generic_attributes": [1]}, {"inode": "x"}, {"links": [1]}])
def test_wrong_types_are_refused_as_nodes_refuse_them(bad):
    obj = {"name": "f", "type": "file", "content": [], **bad}
    with pytest.raises((TypeError, ValueError)):
        Node.from_json(obj)
    with pytest.raises((TypeError, ValueError)):
        ArchivedNode(obj)


def test_a_tree_decodes_in_its_order():
    raw = b'{"nodes":[{"name":"b","type":"file","content":[]},{"name":"a","type":"dir","subtree":"' \
          + b"d" * 64 + b'"}]}\n'
    assert [(n.name, n.type) for n in decode_archived_tree(raw)] == [("b", "file"), ("a", "dir")]
