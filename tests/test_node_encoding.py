"""The fast text encoders must write exactly what the generic Go-JSON path writes."""
import json

from hypothesis import given, settings
from hypothesis import strategies as st

from restique.model import gojson
from restique.model.gotime import GoTime
from restique.model.node import Node, decode_tree, encode_node, encode_tree
from restique.repository.index import IndexFile
from restique.repository.pack import PackEntry

names = st.text(min_size=1, max_size=12) | st.sampled_from(["a<b&c>", 'q"u\\o', "caf\udce9", "tab\tx", "ünï", "\u2028"])
# a tree entry's name is never empty, "." or ".." and holds no "/" (encode_tree refuses those)
node_names = names.filter(lambda n: n not in (".", "..") and "/" not in n)
hexid = st.binary(min_size=32, max_size=32).map(bytes.hex)
times = st.builds(GoTime, st.integers(-10**18, 4 * 10**18), st.sampled_from([0, 3600, -18000, 19800]))


@st.composite
def nodes(draw):
    kind = draw(st.sampled_from(["file", "dir", "symlink", "fifo", "chardev"]))
    n = Node(
        name=draw(node_names), type=kind, mode=draw(st.integers(0, 2**32 - 1)),
        mtime=draw(times), atime=draw(times), ctime=draw(times),
        uid=draw(st.integers(0, 2**32 - 1)), gid=draw(st.integers(0, 2**32 - 1)),
        user=draw(st.sampled_from(["", "root", "ünï", "a&b"])), group=draw(st.sampled_from(["", "root"])),
        inode=draw(st.integers(0, 2**63)), device_id=draw(st.integers(0, 2**40)),
        size=draw(st.integers(0, 2**40)), links=draw(st.integers(0, 5)),
    )
    if kind == "file":
        n.content = draw(st.lists(hexid, max_size=3))
    if kind == "dir":
        n.subtree = draw(hexid)
    if kind == "symlink":
        n.linktarget = draw(names)
    if kind == "chardev":
        n.device = draw(st.integers(0, 2**20))
    if draw(st.booleans()):
        n.xattrs = [("user.x", b"v")]
    return n


@given(nodes())
@settings(max_examples=300, deadline=None)
def test_fast_node_text_equals_generic_encoding(node):
    assert encode_node(node) == gojson.dumps(node.to_json())


@given(st.lists(nodes(), max_size=5))
@settings(max_examples=50, deadline=None)
def test_tree_round_trip(ns):
    raw = encode_tree(ns)
    assert encode_tree(decode_tree(raw)) == raw


def test_index_text_equals_generic_encoding():
    idx = IndexFile(supersedes=["ab" * 32])
    idx.add_pack("cd" * 32, [PackEntry("data", "ef" * 32, 0, 100, 0), PackEntry("data", "01" * 32, 100, 50, 300)])
    idx.add_pack("23" * 32, [PackEntry("tree", "45" * 32, 0, 77, 0)])
    assert idx.encode() == gojson.encode(idx.to_json()) + b"\n"
    assert IndexFile.parse(idx.encode()).packs == idx.packs
    assert json.loads(IndexFile().encode()) == {"packs": []}
