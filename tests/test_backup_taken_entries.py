"""Unchanged entries of a changed directory are written again as the parent's tree wrote
them (restique._treescan.entry_texts gives each entry's text when the whole tree is in the
encoder's exact form), so the trees must stay byte for byte what encoding fresh nodes gives:
a backup with a parent equals a --force backup, whoever wrote the parent."""
import json
import os

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from conftest import run_restic, run_restique
from restique._treescan import entry_texts
from restique.model.gotime import GoTime
from restique.model.node import EncodedNode, Node, encode_node, encode_tree

ID = "ab" * 32
T = GoTime(1_700_000_000_123_456_789)


def _file(name, **fields):
    node = Node(name, "file", 0o644, T, T, T, 1000, 100, "u", "g", 5, 7, 10, 1, "", [], None, 0, [ID])
    for key, value in fields.items():
        setattr(node, key, value)
    return node


def _plain_tree():
    return [_file("a"),
            Node("b", "dir", (1 << 31) | 0o755, T, T, T, 0, 0, subtree=ID),
            Node("c", "symlink", 0o777, T, T, T, 0, 0, links=1, linktarget="x/y"),
            Node("d", "chardev", 0o600, T, T, T, 0, 0, links=1, device=259),
            Node("e", "fifo", 0o600, T, T, T, 0, 0),
            _file("f", mode=0, uid=0, gid=0, user="", group="", inode=0, device_id=0, size=0, links=0, content=[])]


def test_texts_of_an_encoded_tree_are_its_entries():
    nodes = _plain_tree()
    texts = entry_texts(encode_tree(nodes))
    assert texts == {node.name: encode_node(node) for node in nodes}


@pytest.mark.parametrize("old, new", [
    (b',"uid"', b', "uid"'),  # whitespace
    (b'"name":"a"', b'"name":"\\u0061"'),  # an escape
    (b'"size":10', b'"size":010'),  # a leading zero
    (b'"size":10', b'"size":10.0'),
    (b'"links":1', b'"links":0'),  # a zero the encoder leaves out
    (b'"uid":1000,"gid":100', b'"gid":100,"uid":1000'),  # another field order
    (b'"inode":5', b'"inode":5,"inode":5'),
    (b'"content":null,"subtree"', b'"content":[],"subtree"'),  # a dir with a content list
    (b'"linktarget":"x/y","content":null', b'"linktarget":"x/y","content":[]'),
    (b'"links":1,"content":["', b'"links":1,"linktarget":"z","content":["'),  # a file with a target
    (b',"subtree":"' + ID.encode() + b'"', b''),  # a dir without subtree
    (b'"name":"b"', b'"name":"a"'),  # names out of order
    (b'"user":"u"', b'"user":"<u>"'),  # escaped by Go's encoder
    (b'"user":"u"', b'"user":"\xc3\xa9"'),
    (b'"content":[]', b'"content":[],"error":"x"'),
    (b'"type":"fifo"', b'"type":"door"'),
    (b']}\n', b']} \n'),
])
def test_any_other_form_gives_no_texts(old, new):
    raw = encode_tree(_plain_tree())
    assert old in raw
    assert entry_texts(raw.replace(old, new, 1)) is None


def test_empty_and_broken_trees():
    assert entry_texts(b'{"nodes":[]}\n') == {}
    assert entry_texts(b'{"nodes":null}\n') is None
    assert entry_texts(encode_tree(_plain_tree())[:-5]) is None
    assert entry_texts(b'') is None


names = st.text(st.characters(min_codepoint=32, max_codepoint=0x2030), min_size=1, max_size=8).filter(
    lambda n: n not in (".", "..") and "/" not in n)
numbers = st.one_of(st.just(0), st.integers(1, 2 ** 63))


@st.composite
def nodes(draw):
    kind = draw(st.sampled_from(["file", "dir", "symlink", "dev", "fifo"]))
    node = Node(draw(names), kind, draw(numbers), T, GoTime(draw(st.integers(0, 2 ** 62))), T,
                draw(st.integers(0, 2 ** 32)), draw(st.integers(0, 2 ** 32)), draw(st.sampled_from(["", "root", "a<b"])),
                draw(st.sampled_from(["", "wheel"])), draw(numbers), draw(numbers), draw(numbers), draw(numbers))
    if kind == "file":
        node.content = draw(st.lists(st.just(ID), max_size=3))
    elif kind == "dir":
        node.subtree = ID
    elif kind == "symlink":
        node.linktarget = draw(names)
    elif kind == "dev":
        node.device = draw(numbers)
    if draw(st.booleans()):
        node.xattrs = [("user.k", b"v")]
    return node


def _plain(text):
    """Written unescaped by both JSON encoders."""
    return text.isascii() and text.isprintable() and not set(text) & set('"\\<>&')


@settings(max_examples=300, deadline=None)
@given(st.lists(nodes(), max_size=6, unique_by=lambda n: n.name))
def test_texts_are_what_the_encoder_writes(tree):
    """For any tree the encoder writes: no texts, or each entry's text exactly as encode_node
    writes that node."""
    texts = entry_texts(encode_tree(tree))
    if texts is not None:
        assert texts == {node.name: encode_node(node) for node in tree}
    plain = all(_plain(node.name) and _plain(node.linktarget) and node.user != "a<b" and not node.xattrs
                for node in tree)
    assert (texts is not None) == plain


def test_an_encoded_node_is_encoded_again_only_while_unchanged():
    node = _file("a")
    text = encode_node(node)
    taken = EncodedNode.of(json.loads(text), text)
    assert encode_node(taken) is text  # written again as it is, not encoded
    assert (taken.name, taken.size, taken.content) == ("a", 10, [ID])  # decoded from the text
    assert encode_node(taken) is text  # reading fields keeps it
    taken.size = 11
    assert encode_node(taken) == text.replace('"size":10', '"size":11')


@pytest.fixture()
def source(tmp_path):
    src = tmp_path / "src"
    (src / "d" / "sub").mkdir(parents=True)
    for i in range(5):
        (src / "d" / f"f{i}.txt").write_text(f"content {i}\n")
    (src / "d" / "sub" / "g.txt").write_text("g\n")
    os.symlink("f0.txt", src / "d" / "link")
    os.mkfifo(src / "d" / "fifo")
    return src


def _last(repo, out):
    summary = json.loads(out.stdout.decode().strip().splitlines()[-1])
    return summary, json.loads(run_restique(repo, "cat", "snapshot", summary["snapshot_id"]).stdout)["tree"]


def _change(src):
    (src / "d" / "f2.txt").write_text("changed content 2\n")
    (src / "d" / "new.txt").write_text("new\n")


@pytest.mark.parametrize("first", ["restique", "restic"])
def test_a_changed_folder_equals_a_fresh_backup(tmp_path, source, first):
    """Parents written by restique and by restic: the unchanged files, the symlink and the fifo
    next to a changed file are taken over; the tree is the one fresh nodes give."""
    repo = tmp_path / "repo"
    run_restique(repo, "init")
    (run_restique if first == "restique" else run_restic)(repo, "backup", "src", cwd=tmp_path)
    _change(source)
    summary, tree = _last(repo, run_restique(repo, "backup", "--json", "src", cwd=tmp_path))
    assert (summary["files_new"], summary["files_changed"], summary["files_unmodified"]) == (1, 1, 5)
    assert summary["total_files_processed"] == 7
    _, fresh = _last(repo, run_restique(repo, "backup", "--json", "--force", "src", cwd=tmp_path))
    assert tree == fresh
    assert b"no errors were found" in run_restic(repo, "check", "--read-data").stdout


def test_taken_files_are_listed_as_unchanged(tmp_path, source):
    repo = tmp_path / "repo"
    run_restique(repo, "init")
    run_restique(repo, "backup", "src", cwd=tmp_path)
    _change(source)
    out = run_restique(repo, "backup", "-vv", "src", cwd=tmp_path).stdout.decode()
    for i in (0, 1, 3, 4):
        assert f"unchanged /src/d/f{i}.txt" in out
    assert "modified  /src/d/f2.txt" in out and "new       /src/d/new.txt" in out
