"""The reuse check of a changed directory gives up before comparing its files in full when a
file's ctime or a subdirectory shows the change: the walk that follows compares those files
again. A difference only the full comparison sees still makes the check fail."""
import json
import os

import pytest

from restique.model.node import encode_node
from restique.operations.archiver.dir_scan import DirScans
from restique.operations.archiver.reuse import TreeReuse
from restique.operations.fs_metadata import node_from_fields

from restique import _scan


class _Parents:
    """Parent trees by id, as ParentTrees hands them out."""

    def __init__(self, trees):
        self.trees = trees

    def children(self, tree_id):
        return dict(self.trees[tree_id])

    def keep(self, tree_id, children):
        pass


def _parent_of(path, trees) -> dict:
    """The node dicts of path's tree as a parent snapshot records them now (subtrees named
    by path), added to trees."""
    nodes = {}
    for name, _err, st, link, xattrs in _scan.scan_dir(str(path), True):
        node = node_from_fields(name, st, os.fsdecode(link) if link else None, xattrs)
        if node.type == "file":
            node.content = []
        elif node.type == "dir":
            node.subtree = _parent_of(os.path.join(path, name), trees)
        nodes[name] = json.loads(encode_node(node))
    trees[str(path)] = nodes
    return str(path)


def _reuse(monkeypatch):
    compared = []
    same = TreeReuse.same

    def counting_same(self, o, st, link, xattrs):
        compared.append(o["name"])
        return same(self, o, st, link, xattrs)

    monkeypatch.setattr(TreeReuse, "same", counting_same)
    return compared


@pytest.fixture
def tree(tmp_path):
    top = tmp_path / "top"
    (top / "zz").mkdir(parents=True)
    for i in range(20):
        (top / f"f{i:02}").write_text(f"file {i}\n")
        (top / "zz" / f"g{i:02}").write_text(f"file {i}\n")
    trees = {}
    root = _parent_of(top, trees)
    return top, trees, root


def _check(top, trees, root):
    reuse = TreeReuse(_Parents(trees), lambda blob_id: True, DirScans(True), None, False, True, False)
    return reuse, reuse.events(str(top), "/top", {"type": "dir", "subtree": root}, os.lstat(top).st_dev)


def test_an_unchanged_directory_compares_each_entry_once(monkeypatch, tree):
    compared = _reuse(monkeypatch)
    reused = _check(*tree)[1]
    assert reused is not None and (reused.files, reused.dirs) == (40, 1)
    assert sorted(compared) == sorted([f"f{i:02}" for i in range(20)] + [f"g{i:02}" for i in range(20)] + ["zz"])


def test_a_changed_file_is_seen_without_comparing_the_others(monkeypatch, tree):
    top, trees, root = tree
    os.chmod(top / "f19", 0o600)  # the last in name order
    compared = _reuse(monkeypatch)
    assert _check(top, trees, root)[1] is None
    assert compared == []


def test_a_change_below_is_seen_before_the_files_are_compared(monkeypatch, tree):
    top, trees, root = tree
    (top / "zz" / "g05").write_text("changed\n")
    compared = _reuse(monkeypatch)
    reuse, reused = _check(top, trees, root)
    assert reused is None and compared == []
    assert reuse._memo == {str(top / "zz"): None}  # the walk asks for it next


def test_a_difference_without_a_ctime_change_is_still_found(monkeypatch, tree):
    top, trees, root = tree
    trees[root]["f10"]["mode"] = 0o600
    compared = _reuse(monkeypatch)
    assert _check(top, trees, root)[1] is None
    assert compared[-1] == "f10"


def test_a_new_entry_is_seen_at_a_glance(monkeypatch, tree):
    top, trees, root = tree
    del trees[root]["f03"]  # as if created after the parent snapshot
    compared = _reuse(monkeypatch)
    assert _check(top, trees, root)[1] is None
    assert compared == []
