"""encode_node's direct text and encode_tree's ordering against the generic Go-JSON path, over
names and owners built from the characters that need care (quotes, backslashes, < > &, control
characters, U+2028, undecodable bytes as surrogate escapes (a file system's
undecodable bytes: U+DC80-U+DCFF), astral and non-printable code points)."""
from hypothesis import given, settings
from hypothesis import strategies as st

from restique.model import gojson
from restique.model.gotime import GoTime
from restique.model.node import Node, decode_tree, encode_node, encode_tree

ODD = ['"', "\\", "<", ">", "&", "\x00", "\x01", "\t", "\n", "\x1f", "\x7f", "\u2028", "\u2029", "\u200b",
       "\udc80", "\udcff", "\udce9", "é", "ü", "\U0001f600", "\ufffd", "\ue000", "'", "%", "=", "?", "[", "]",
       "~", " ", "a", "Z", "0", "/"]
odd_text = st.lists(st.sampled_from(ODD), min_size=1, max_size=6).map("".join)
ascii_text = st.text(st.characters(min_codepoint=0, max_codepoint=127), min_size=1, max_size=8)
names = (odd_text | ascii_text).filter(lambda n: n not in (".", "..") and "/" not in n)
hexid = st.binary(min_size=32, max_size=32).map(bytes.hex)
lazy_times = st.sampled_from(["2023-11-14T23:13:20.123456789+01:00", "2001-02-03T04:05:06Z", "garbage"]).map(GoTime.lazy)
times = st.builds(GoTime, st.integers(-10**18, 4 * 10**18), st.sampled_from([0, 3600, -18000])) | lazy_times
numbers = st.integers(0, 2**32) | st.just(0)


@st.composite
def nodes(draw):
    kind = draw(st.sampled_from(["file", "dir", "symlink", "fifo", "socket", "dev", "chardev", "irregular", ""]))
    n = Node(draw(names), kind, draw(numbers), draw(times), draw(times), draw(times), draw(numbers), draw(numbers),
             draw(st.just("") | odd_text | ascii_text), draw(st.just("") | odd_text | ascii_text),
             draw(st.integers(0, 2**63)), draw(numbers), draw(st.integers(0, 2**40)), draw(numbers))
    if kind == "file":
        n.content = draw(st.none() | st.lists(hexid, max_size=3))
    if kind == "dir":
        n.subtree = draw(hexid)
    if kind == "symlink":
        n.linktarget = draw(names)
    if kind in ("dev", "chardev"):
        n.device = draw(numbers)
    if draw(st.integers(0, 9)) == 0:
        n.error = draw(odd_text)
    return n


@given(nodes())
@settings(max_examples=800, deadline=None)
def test_node_text_equals_generic_encoding(node):
    assert encode_node(node) == gojson.dumps(node.to_json())


@given(st.lists(nodes(), max_size=8, unique_by=lambda n: n.name))
@settings(max_examples=200, deadline=None)
def test_tree_is_sorted_by_name_bytes_and_round_trips(ns):
    raw = encode_tree(ns)
    ordered = sorted(ns, key=lambda n: n.name.encode("utf-8", "surrogateescape"))
    generic = '{"nodes":[' + ",".join(gojson.dumps(n.to_json()) for n in ordered) + "]}\n"
    assert raw == generic.encode()
    # Go writes other strings' undecodable bytes as U+FFFD: only names and link targets come back exact
    assert [(n.name, n.linktarget) for n in decode_tree(raw)] == [(n.name, n.linktarget) for n in ordered]


def test_large_tree_spans_batches():
    ns = [Node(f"f{i:05d}", "file", 0o644, GoTime(i), GoTime(i), GoTime(i), content=[]) for i in range(1000)]
    raw = encode_tree(list(reversed(ns)))
    assert raw == ('{"nodes":[' + ",".join(gojson.dumps(n.to_json()) for n in ns) + "]}\n").encode()
