"""The light tree entries of dump (ArchivedNode) and restore (RestoreEntry) share their
decoding (model.light_entry): each refuses a tree exactly when Node.from_json refuses it, and
reads every field it has as Node does."""
import base64
import json
import random

import pytest

from restique.model.node import TreeFormatError, decode_tree
from restique.operations.dump_nodes import decode_archived_tree
from restique.operations.restorer.entries import decode_restore_tree

_SHARED = ("name", "type", "mode", "uid", "gid", "user", "group", "inode", "device_id", "size", "links",
           "linktarget", "xattrs", "device", "content", "subtree")
_ID = "%064x" % 7

# values of every kind JSON has, and the shapes each field holds when it is right
_ANY = [None, 0, 1, -3, 2 ** 40, 1.5, True, False, "", "7", "x", "a\\u00e9", [], [1], ["x"], {}, {"a": 1}]
_RIGHT = {
    "name": ["f", "q\\u00e9\\xff", "a b"],
    "type": ["file", "dir", "symlink"],
    "mode": [0o644, 2147484141, 0o755 | 1 << 23 | 1 << 20],
    "user": ["root"], "group": ["wheel"], "error": ["lost"],
    "linktarget": ["../x"],
    "linktarget_raw": [base64.b64encode(b"caf\xe9").decode(), "@@", "YQ"],
    "extended_attributes": [[{"name": "user.a", "value": "YWI="}], [{"name": "user.b"}], [{"name": 3}],
                            [{"name": "user.c", "value": "!"}], [{"value": "YQ=="}], ["x"], "ab", {"name": "a"}],
    "generic_attributes": [{"windows": 1}],
    "content": [[_ID], [_ID, _ID], [_ID.upper()], [_ID[:-1]], [_ID, 5], [_ID, _ID + "0"]],
    "subtree": [_ID, _ID[:-1]],
}
_FIELDS = ["name", "type", "mode", "uid", "gid", "user", "group", "inode", "device_id", "size", "links",
           "linktarget", "linktarget_raw", "extended_attributes", "generic_attributes", "device", "content",
           "subtree", "error", "mtime", "atime"]


def _decoded(decode, raw):
    try:
        return decode(raw)
    except TreeFormatError:
        return None


def _variants():
    rng = random.Random(3)
    base = {"name": "f", "type": "file", "mode": 0o644, "mtime": "2023-05-01T12:34:56.5+02:00",
            "atime": "2023-05-01T12:34:56.5+02:00", "uid": 1, "gid": 2, "content": [_ID]}
    for field in _FIELDS:
        for value in _ANY + _RIGHT.get(field, []):
            yield {**base, field: value}
    for _ in range(3000):
        obj = dict(base)
        for field in rng.sample(_FIELDS, rng.randint(1, 3)):
            obj[field] = rng.choice(_ANY + _RIGHT.get(field, []) * 3)
        yield obj


def test_light_entries_refuse_and_read_as_node():
    refused = accepted = 0
    for obj in _variants():
        raw = json.dumps({"nodes": [obj]}).encode()
        nodes = _decoded(decode_tree, raw)
        restore, dump = _decoded(decode_restore_tree, raw), _decoded(decode_archived_tree, raw)
        assert (nodes is None) == (restore is None) == (dump is None), obj
        if nodes is None:
            refused += 1
            continue
        accepted += 1
        for field in _SHARED:
            want = getattr(nodes[0], field)
            assert getattr(restore[0], field) == want and getattr(dump[0], field) == want, (field, obj)
        assert restore[0].mtime_ns == nodes[0].mtime.unix_ns and restore[0].atime_ns == nodes[0].atime.unix_ns
        assert dump[0].mtime == nodes[0].mtime
    assert refused > 500 and accepted > 500


@pytest.mark.parametrize("field,value", [("error", 3), ("generic_attributes", [1]), ("inode", "x"),
                                         ("links", [1]), ("device", "d"), ("device_id", {"a": 1})])
def test_dump_refuses_what_it_used_to_let_through(field, value):
    """Fields dump's entries did not read or check: Node refuses these trees, and so does dump."""
    raw = json.dumps({"nodes": [{"name": "f", "type": "file", "content": [], field: value}]}).encode()
    with pytest.raises(TreeFormatError):
        decode_tree(raw)
    with pytest.raises(TreeFormatError):
        decode_archived_tree(raw)
