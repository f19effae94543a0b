"""The restore's light tree entries read every field a restore uses as Node.from_json does,
and refuse exactly the trees Node refuses."""
import json
import random

import pytest

from restique.model.gotime import GoTime
from restique.model.node import Node, TreeFormatError, decode_tree
from restique.operations.restorer.entries import RestoreEntry, decode_restore_tree, time_ns

_FIELDS = ("name", "type", "mode", "unix_mode", "uid", "gid", "user", "group", "inode", "device_id", "size",
           "links", "linktarget", "xattrs", "device", "content", "subtree")


def _node_ns(text) -> int:
    return Node.from_json({"name": "x", "type": "file", "mtime": text}).mtime.unix_ns


def _mutations(text: str, rng: random.Random):
    alphabet = "0123456789:.-+TtZz \u0663"
    for _ in range(40):
        chars = list(text)
        for _ in range(rng.randint(1, 3)):
            i = rng.randrange(len(chars) + 1)
            op = rng.randrange(3)
            if op == 0 and i < len(chars):
                del chars[i]
            elif op == 1:
                chars.insert(i, rng.choice(alphabet))
            elif i < len(chars):
                chars[i] = rng.choice(alphabet)
        yield "".join(chars)


BASE_TIMES = [
    "2026-12-03T04:19:14.405366455Z",
    "2026-12-03T04:19:14.405366455+01:00",
    "2026-12-03T04:19:14-07:30",
    "2026-12-03t04:19:14.4z",
    "2024-02-29T23:59:59.123456789123+14:00",
    "1969-12-31T23:59:59.999999999Z",
    "0001-01-01T00:00:00Z",
    "2023-02-29T10:00:00Z",  # no such day
    "2026-12-03T24:00:00Z",
    "2026-12-03T04:60:00Z",
    "2026-12-03T04:19:60Z",
    "2026-12-03T04:19:14.Z",
    "2026-12-03T04:19:14+25:00",
    "2026-12-03 04:19:14Z",
    "2262-04-11T23:47:16.854775807Z",  # the last nanosecond of a signed 64-bit count
    "2262-04-11T23:47:17Z",
    "1677-09-21T00:12:43.145224192Z",
    "9999-12-31T23:59:59.999999999-23:59",
    "0001-01-01T00:00:00+23:59",
    "0000-01-01T00:00:00Z",
    "2000-02-29T12:00:00Z",
    "1900-02-29T12:00:00Z",
    "",
    "not a time",
]


def test_times_read_as_node_reads_them():
    rng = random.Random(7)
    texts = list(BASE_TIMES)
    for base in BASE_TIMES[:6]:
        texts.extend(_mutations(base, rng))
    for text in texts * 2:  # the second round reads the minutes cached by the first
        assert time_ns(text) == _node_ns(text), text
    for value in (None, 5, [], {}, "Z" * 30):
        assert time_ns(value) == _node_ns(value)


def test_common_times_read_natively():
    from restique import _gotime

    assert _gotime.time_ns("2026-12-03T04:19:14.405366455+01:00") == _node_ns("2026-12-03T04:19:14.405366455+01:00")
    assert _gotime.time_ns("2026-12-03T04:19:14.4\u0663Z") is None  # not ASCII: GoTime decides


def _objects():
    ids = ["%064x" % i for i in range(3)]
    yield {"name": "plain", "type": "file", "mode": 0o640, "mtime": BASE_TIMES[0], "atime": BASE_TIMES[1],
           "ctime": BASE_TIMES[2], "uid": 1000, "gid": 100, "user": "u", "group": "g", "inode": 7,
           "device_id": 9, "size": 12, "links": 2, "content": ids}
    yield {"name": "suid", "type": "file", "mode": 0o755 | 1 << 23 | 1 << 22 | 1 << 20, "content": []}
    yield {"name": "dir", "type": "dir", "mode": 2147484141, "subtree": ids[0],
           "extended_attributes": [{"name": "user.a", "value": "YWI="}, {"name": "user.b"}]}
    yield {"name": "link", "type": "symlink", "linktarget": "x", "linktarget_raw": "Li4v/w=="}
    yield {"name": "q\\u00e9\\xff", "type": "chardev", "device": 2 ** 35 + 5, "generic_attributes": {"a": 1}}
    yield {"name": "empty"}


def test_entries_equal_nodes():
    objects = list(_objects())
    raw = json.dumps({"nodes": objects}).encode()
    for entry, node in zip(decode_restore_tree(raw), decode_tree(raw)):
        for field in _FIELDS:
            assert getattr(entry, field) == getattr(node, field), field
        assert (entry.atime_ns, entry.mtime_ns) == (node.atime.unix_ns, node.mtime.unix_ns)
        assert entry.mtime.unix_ns == node.mtime.unix_ns


@pytest.mark.parametrize("field,value", [
    ("name", 5), ("type", []), ("user", 1), ("group", {"a": 1}), ("linktarget", 2), ("error", 3),
    ("content", "ab"), ("content", ["x"]), ("subtree", "short"), ("generic_attributes", [1]),
    ("extended_attributes", [{"name": 3}]), ("mode", "rw"), ("uid", [1]),
])
def test_refuses_the_trees_node_refuses(field, value):
    obj = {"name": "f", "type": "file", field: value}
    raw = json.dumps({"nodes": [obj]}).encode()
    with pytest.raises(TreeFormatError):
        decode_tree(raw)
    with pytest.raises(TreeFormatError):
        decode_restore_tree(raw)


def test_not_a_tree():
    for raw in (b"[]", b'{"nodes": 5}', b"{", b'{"nodes": [5]}'):
        with pytest.raises(TreeFormatError):
            decode_restore_tree(raw)
        with pytest.raises(TreeFormatError):
            decode_tree(raw)


def test_random_times_read_as_node_reads_them():
    rng = random.Random(11)
    for _ in range(3000):
        text = "%04d-%02d-%02d%s%02d:%02d:%02d%s%s" % (
            rng.randint(1, 9999), rng.randint(0, 13), rng.randint(0, 32), rng.choice("Tt "), rng.randint(0, 25),
            rng.randint(0, 61), rng.randint(0, 61), rng.choice(["", ".", "." + str(rng.randint(0, 10 ** 12))]),
            rng.choice(["Z", "z", "", "+%02d:%02d" % (rng.randint(0, 25), rng.randint(0, 61)),
                        "-%02d:%02d" % (rng.randint(0, 25), rng.randint(0, 61))]))
        assert time_ns(text) == _node_ns(text), text
