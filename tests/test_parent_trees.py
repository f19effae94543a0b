"""The backup holds parent trees only for the walk that follows a failed reuse check: a
re-backup of many unchanged folders reads each tree once and keeps none of them."""
from restique.operations.archiver import parent
from restique.operations.archiver.parent import KEPT_TREES, ParentTrees


class _Repo:
    blobs = None


def _trees(monkeypatch):
    loads = []

    def load(self, tree_id):
        loads.append(tree_id)
        return {"n": {"name": "n", "tree": tree_id}}

    monkeypatch.setattr(ParentTrees, "_load", load)
    monkeypatch.setattr(parent, "TreeWindows", lambda repo: None)
    return ParentTrees(_Repo()), loads


def test_loaded_trees_are_not_held(monkeypatch):
    trees, loads = _trees(monkeypatch)
    for i in range(1000):
        trees.children(f"t{i}")
    assert not trees._kept and len(loads) == 1000
    assert trees.children(None) == {} and trees.children("") == {}


def test_a_kept_tree_is_served_once(monkeypatch):
    trees, loads = _trees(monkeypatch)
    first = trees.children("a")
    trees.keep("a", first)
    assert trees.children("a") is first and loads == ["a"]
    assert trees.children("a") is not first and loads == ["a", "a"]  # not held after the walk took it


def test_kept_trees_are_bounded(monkeypatch):
    trees, loads = _trees(monkeypatch)
    for i in range(KEPT_TREES * 3):
        trees.keep(f"t{i}", trees.children(f"t{i}"))
    assert len(trees._kept) == KEPT_TREES
    assert f"t{KEPT_TREES * 3 - 1}" in trees._kept and "t0" not in trees._kept
