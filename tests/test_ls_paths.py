"""The plain `ls` listing (list_paths: names read straight from the trees' JSON) lists the same
paths in the same order and reports the same errors as the general walk over nodes, for
ordinary trees and for damaged or unusual ones."""
import json

import pytest

from restique.errors import NotFound
from restique.operations.ls import LsOptions, list_paths, ls, tree_loader

SUB = "a" * 64
DAMAGED_SUB = "b" * 64
UNSORTED_SUB = "c" * 64
MISSING_SUB = "d" * 64
ODD_SUB = "e" * 64


def tree(*nodes) -> bytes:
    return (json.dumps({"nodes": list(nodes)}) + "\n").encode()


def node(name, kind="file", subtree=None, **extra):
    obj = {"name": name, "type": kind, **extra}
    if subtree is not None:
        obj["subtree"] = subtree
    return obj


TREES = {
    SUB: tree(node("x"), node("y", "symlink")),
    UNSORTED_SUB: tree(node("z"), node("\u00e9t\u00e9"), node("a"), node("raw\\xff")),
    DAMAGED_SUB: b'{"nodes": [{"name": 5, "type": "file"}]}',
    ODD_SUB: tree(node("ok"), node("bad-sub", "dir", subtree="XYZ")),
}
ROOTS = {
    "plain": tree(node("a", "dir", SUB), node("b"), node("c", "dir", UNSORTED_SUB), node("d")),
    "damaged below": tree(node("a", "dir", DAMAGED_SUB), node("b", "dir", MISSING_SUB), node("c", "dir", ODD_SUB),
                          node("n", "dir"), node("z", "dir", SUB)),
    "not a list": b'{"nodes": {"name": "a"}}',
    "not json": b"{",
    "entry not an object": b'{"nodes": ["a"]}',
    "empty": b'{"nodes": null}',
    "odd fields": tree({"type": "file"}, node("t", 7), node("s", "dir", subtree=None)),
}


class FakeRepo:
    def __init__(self, root):
        self.trees = dict(TREES, root=root)

    def load_blob(self, kind, tree_id):
        if tree_id not in self.trees:
            raise NotFound(f"tree {tree_id} not found")
        return self.trees[tree_id]


def listing(fn, repo, tolerant):
    errors = []
    on_error = (lambda path, exc: errors.append((path, type(exc).__name__, str(exc)))) if tolerant else None
    try:
        return fn(repo, on_error), errors
    except Exception as exc:  # noqa: BLE001 - the same exception is the point
        return (type(exc).__name__, str(exc)), errors


@pytest.mark.parametrize("tolerant", [True, False])
@pytest.mark.parametrize("root", sorted(ROOTS))
def test_same_listing_as_the_walk_over_nodes(root, tolerant):
    repo = FakeRepo(ROOTS[root])
    general = listing(lambda r, e: [p for p, _ in ls(r, "root", LsOptions(), e, tree_loader(r, True))], repo, tolerant)
    plain = listing(lambda r, e: list(list_paths(r, "root", e)), repo, tolerant)
    assert plain == general
    if root == "plain":
        assert plain[0] == ["/a", "/a/x", "/a/y", "/b", "/c", "/c/a", "/c/raw\udcff", "/c/z", "/c/\u00e9t\u00e9", "/d"]
