"""The native tree scanner (restique._treescan) against JSON decoding: for any bytes, scan
either declines (None, the caller decodes the JSON) or gives exactly what decoding the JSON
and reading the nodes as the callers do would give. Trees restic writes are never declined."""
import random

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from restique._treescan import scan
from restique.model import gojson
from restique.model.node import Node, encode_tree

A, B, C = "a" * 64, "0123456789abcdef" * 4, "c" * 64


def reference(raw: bytes, ordered: bool, complete: bool = False):
    """What scan must return when it answers, from the decoded JSON; None where the callers'
    JSON paths would fail or see something other than plain nodes (complete: or where check
    would report a node)."""
    try:
        obj = gojson.loads(raw)
    except ValueError:
        return None
    if not isinstance(obj, dict) or not isinstance(obj.get("nodes"), list):
        return None
    subtrees, contents, parts = [], [], []
    count = size = 0
    hardlinks = False
    previous = b""
    for node in obj["nodes"]:
        if not isinstance(node, dict) or not isinstance(node.get("type"), str):
            return None
        name = node.get("name", "")
        if not isinstance(name, str):
            return None
        kind = node["type"]
        if complete and (not name or kind not in ("file", "dir", "symlink", "socket", "chardev", "dev", "fifo")
                         or (kind == "file" and not isinstance(node.get("content"), list))
                         or (kind == "dir" and node.get("subtree") == "0" * 64)):
            return None
        if ordered:
            name_bytes = name.encode("utf-8", "surrogateescape")
            if name_bytes < previous:
                return None
            previous = name_bytes
        numbers = [node.get(k) for k in ("size", "inode", "device_id", "links")]
        if not all(n is None or (type(n) is int and 0 <= n < 10 ** 18) for n in numbers):
            return None
        n_size, inode, device, links = (n or 0 for n in numbers)
        count += 1
        if kind == "file" and node.get("content"):
            contents += node["content"]
        if kind == "dir":
            if not node.get("subtree"):
                return None
            subtrees.append(node["subtree"])
            parts.append(node["subtree"])
        if links == 1 or kind == "dir" or inode == 0:
            size += n_size
        else:
            hardlinks = True
            parts.append((inode, device, n_size))
    return subtrees, contents, count, size, parts if hardlinks else None


def check(raw: bytes) -> None:
    for ordered, complete in ((False, False), (True, False), (False, True)):
        got = scan(raw, ordered, complete)
        if got is not None:
            assert got == reference(raw, ordered, complete), raw


def tree(*nodes) -> bytes:
    return (gojson.dumps({"nodes": list(nodes)}) + "\n").encode()


def file_node(name, content=(A,), size=10, inode=5, links=1, **extra):
    return {"name": name, "type": "file", "mode": 420, "mtime": "2020-01-01T00:00:00Z", "uid": 0,
            "inode": inode, "device_id": 66, "size": size, "links": links, "content": list(content), **extra}


def dir_node(name, subtree=B, **extra):
    return {"name": name, "type": "dir", "mode": 2147484141, "inode": 9, "links": 2, "content": None,
            "subtree": subtree, **extra}


PLAIN = tree(file_node("a.txt", (A, C), size=7), dir_node("d"), file_node("e", (), size=0),
             {"name": "l", "type": "symlink", "linktarget": "x", "inode": 3, "links": 1, "size": 1},
             dir_node("z", C, generic_attributes={"subtree": A, "content": [B]}))


def test_plain_trees_are_scanned():
    assert scan(PLAIN) == ([B, C], [A, C], 5, 8, None)
    assert scan(PLAIN, True) == scan(PLAIN)
    assert scan(tree()) == ([], [], 0, 0, None)
    check(PLAIN)


def test_restique_encoded_tree_is_scanned():
    nodes = [Node(name=f"f{i}", type="file", mode=0o644, size=i, inode=100 + i, links=1,
                  content=[A] * (i % 3)) for i in range(20)]
    nodes.append(Node(name="sub", type="dir", mode=0o40755, subtree=C))
    raw = encode_tree(nodes)
    assert scan(raw, True) == ([C], [A] * sum(i % 3 for i in range(20)), 21, sum(range(20)), None)


def test_hard_links_are_listed_in_node_order():
    raw = tree(file_node("a", size=3, inode=7, links=2), dir_node("b"), file_node("c", size=4, inode=7, links=2),
               file_node("d", size=5, inode=0, links=3))
    assert scan(raw, True) == ([B], [A, A, A], 4, 5, [(7, 66, 3), B, (7, 66, 4)])
    check(raw)


@pytest.mark.parametrize("odd", [
    PLAIN.replace(b'"nodes"', b'"Nodes"'),                       # Go would match this key, dicts would not
    PLAIN.replace(b'"type":"file"', b'"Type":"file"', 1),
    PLAIN.replace(b'"name":"a.txt"', b'"name":"a.txt","name":"b"'),  # duplicate key
    PLAIN.replace(b'"name":"a.txt"', b'"n\\u0061me":"a.txt"'),   # escaped key
    PLAIN.replace(b'"name":"a.txt"', b'"name":"a\\"txt"'),        # escaped name
    PLAIN.replace(b'"name":"e"', b'"name":"\xff"'),               # invalid UTF-8 name
    PLAIN.replace(A.encode(), A.upper().encode(), 1),            # id not lowercase hex
    PLAIN.replace(A.encode(), A[:-1].encode(), 1),               # short id
    PLAIN.replace(b'"size":7', b'"size":-7'),
    PLAIN.replace(b'"size":7', b'"size":7.0'),
    PLAIN.replace(b'"size":7', b'"size":"7"'),
    PLAIN.replace(b'"size":7', b'"size":99999999999999999999'),
    PLAIN.replace(b',"subtree":"' + B.encode() + b'"', b""),      # dir without subtree
    PLAIN.replace(b'"subtree":"' + B.encode() + b'"', b'"subtree":null'),
    PLAIN.replace(b'"content":["' + A.encode(), b'"content":[1,"' + A.encode()),
    PLAIN[:-3],                                                  # cut
    PLAIN + b"x",                                                # trailing bytes
    PLAIN.replace(b"\n", b"") + b"{}",
    b'{"nodes":null}', b'{"other":[]}', b"[]", b"", b'{"nodes":[1]}', b'{"nodes":[],"nodes":[]}',
    PLAIN.replace(b'"name":"e"', b'"name":"e","x":' + b"[" * 100 + b"]" * 100),
])
def test_unusual_text_is_declined(odd):
    assert scan(odd) is None or scan(odd) == reference(odd, False)
    check(odd)


def test_names_out_of_order_are_declined_when_order_matters():
    raw = tree(file_node("b"), file_node("a"))
    assert scan(raw) is not None and scan(raw, True) is None
    check(raw)


def test_whitespace_and_skipped_values_of_any_kind():
    raw = (b' \n{ "nodes" : [ { "name" : "a" , "type" : "file" , "x" : { "y" : [ 1 , -2.5e3 , true , false ,'
           b' null , "s\\u00e9\\n" , {} , [] ] } , "content" : [ "' + A.encode() + b'" ] , "size" : 0 } ] ,'
           b' "extra" : "v" } \r\n')
    assert scan(raw) == ([], [A], 1, 0, None)
    check(raw)


_TOKENS = [b'"', b"\\", b",", b":", b"{", b"}", b"[", b"]", b"null", b"1", b"-1", b"1e5", b'"dir"', b'"file"',
           b'"subtree"', b'"content"', b'"size"', b'"links"', b'"inode"', b'"name"', b'"type"', b'"nodes"',
           b'"' + A.encode() + b'"', b" ", b"\x00", b"\xc3\xa9", b"\xff", b"\\u0000", b"tru"]


def _mutate(raw: bytes, rng: random.Random) -> bytes:
    for _ in range(rng.randint(1, 3)):
        at = rng.randrange(len(raw) + 1)
        op = rng.randrange(4)
        if op == 0:
            raw = raw[:at] + rng.choice(_TOKENS) + raw[at:]
        elif op == 1:
            raw = raw[:at] + raw[at + rng.randint(1, 8):]
        elif op == 2:
            raw = raw[:at] + rng.choice(_TOKENS) + raw[at + rng.randint(1, 8):]
        else:
            end = min(len(raw), at + rng.randint(1, 40))
            raw = raw[:at] + raw[at:end] + raw[at:]
    return raw


def test_mutated_trees_are_declined_or_exact():
    rng = random.Random(13)
    seeds = [PLAIN, tree(file_node("a", size=3, inode=7, links=2), dir_node("b"), file_node("c", inode=7, links=2))]
    answered = 0
    for _ in range(8000):
        raw = _mutate(rng.choice(seeds), rng)
        check(raw)
        answered += scan(raw) is not None
    assert answered > 40  # the harmless mutations (spaces, skipped values) are still scanned


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=300))
def test_random_bytes_never_crash(raw):
    check(raw)
    check(b'{"nodes":[' + raw)


@pytest.mark.parametrize("odd", [
    tree(file_node("")), tree({"type": "file", "content": [A]}), tree({"name": "x", "type": "door"}),
    tree({"name": "x", "type": "file"}), tree({"name": "x", "type": "file", "content": None}),
    tree(dir_node("d", "0" * 64)),
])
def test_complete_declines_what_check_reports(odd):
    assert scan(odd) is not None and scan(odd, False, True) is None
    check(odd)


def test_complete_scans_every_kind_check_accepts():
    nodes = [file_node("a"), dir_node("b")] + [{"name": kind, "type": kind} for kind in
                                               ("chardev", "dev", "fifo", "socket", "symlink")]
    assert scan(tree(*nodes), False, True) == ([B], [A], 7, 10, None)
