"""One repository pair for the commands that look inside a repository (ls, find, diff, dump,
stats): the every-kind-of-entry tree of the backup tests, backed up twice (before and after a
set of changes) by restic into one repository and by restique into another.

Use it by importing the fixture into a test module: ``from browse_fixtures import browse``.
Each test then runs restic and restique on both repositories and compares their output.
"""
import os
from pathlib import Path
from types import SimpleNamespace

import pytest

from conftest import both, run_restic, run_restique
from test_backup import build_full_tree, fix_times

TOOLS = {"restic": run_restic, "restique": run_restique}


def change_tree(tree: Path) -> None:
    """Changes of every kind diff reports: added, removed, modified content, metadata only,
    a type change, and a new directory."""
    (tree / "added.txt").write_bytes(b"new in the second snapshot\n")
    (tree / "empty.txt").unlink()
    (tree / "small.txt").write_bytes(b"hello restique, changed\n")
    os.chmod(tree / "mode600.txt", 0o640)
    os.unlink(tree / "links" / "relative")
    (tree / "links" / "relative").write_bytes(b"was a symlink\n")
    (tree / "nested" / "new-dir").mkdir()
    (tree / "nested" / "new-dir" / "inner.txt").write_bytes(b"inner\n")
    fix_times(tree)


@pytest.fixture(scope="session")
def browse(tmp_path_factory):
    """SimpleNamespace(base, tree, repos={"restic": path, "restique": path},
    first={"restic": id, "restique": id}, second={...}): two snapshots in each repository,
    made by that repository's own tool from the same tree with the same relative target
    (`tree`, from base), tagged `first` and `second`."""
    base = tmp_path_factory.mktemp("browse")
    tree = base / "tree"
    build_full_tree(tree)
    repos = {tool: base / f"repo-{tool}" for tool in TOOLS}
    both([(TOOLS[tool], (repos[tool], "init"), {}) for tool in TOOLS])
    ids = {}
    for tag in ("first", "second"):
        if tag == "second":
            change_tree(tree)
        both([(TOOLS[tool], (repos[tool], "backup", "--tag", tag, "tree"), {"cwd": base}) for tool in TOOLS])
        ids[tag] = {tool: _latest_id(repos[tool]) for tool in TOOLS}
    return SimpleNamespace(base=base, tree=tree, repos=repos, first=ids["first"], second=ids["second"])


def _latest_id(repo) -> str:
    import json

    snaps = json.loads(run_restic(repo, "snapshots", "--json", "--no-lock").stdout)
    return max(snaps, key=lambda s: s["time"])["id"]
