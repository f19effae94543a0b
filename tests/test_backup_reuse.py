"""Unchanged directories reuse the parent's subtree; any change below them must not be
missed. The check: after each change, the tree of a normal (parent-using) backup equals the
tree of a `--force` backup, which builds every node afresh."""
import json
import os

import pytest

from conftest import run_restic, run_restique


def _tree_of_last(repo, out) -> str:
    summary = json.loads(out.stdout.decode().strip().splitlines()[-1])
    snap = json.loads(run_restique(repo, "cat", "snapshot", summary["snapshot_id"]).stdout)
    return snap["tree"]


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    base = tmp_path_factory.mktemp("reuse")
    src = base / "src"
    for d in ("a/b/c", "a/x", "z"):
        (src / d).mkdir(parents=True)
    for i, d in enumerate(("a", "a/b", "a/b/c", "a/x", "z")):
        (src / d / f"f{i}.txt").write_text(f"content {i}\n")
    os.symlink("f0.txt", src / "a" / "link")
    repo = base / "repo"
    run_restique(repo, "init")
    # a relative target keeps the directories above it (whose times change whenever
    # something else is created in /tmp) out of the snapshot
    run_restique(repo, "backup", "src", cwd=base)
    return repo, src


CHANGES = {
    "chmod": lambda s: os.chmod(s / "a/b/c/f2.txt", 0o600),
    "content same size": lambda s: (s / "a/b/c/f2.txt").write_text("CONTENT 2\n"),
    "xattr": lambda s: os.setxattr(s / "a/x/f3.txt", "user.k", b"v"),
    "new file": lambda s: (s / "z/new.txt").write_text("new\n"),
    "removed file": lambda s: os.unlink(s / "a/b/f1.txt"),
    "symlink target": lambda s: (os.unlink(s / "a/link"), os.symlink("f9.txt", s / "a/link")),
    "mtime": lambda s: os.utime(s / "a/b/c", ns=(1_600_000_000_123_456_789,) * 2),
    "new dir": lambda s: (s / "a/b/c/d").mkdir(),
}


@pytest.mark.parametrize("change", list(CHANGES))
def test_changed_trees_equal_a_fresh_backup(setup, change):
    repo, src = setup
    CHANGES[change](src)
    normal = run_restique(repo, "backup", "--json", "src", cwd=src.parent)
    fresh = run_restique(repo, "backup", "--json", "--force", "src", cwd=src.parent)
    assert _tree_of_last(repo, normal) == _tree_of_last(repo, fresh), change
    again = run_restique(repo, "backup", "--json", "src", cwd=src.parent)
    assert _tree_of_last(repo, again) == _tree_of_last(repo, fresh)
    summary = json.loads(again.stdout.decode().strip().splitlines()[-1])
    assert summary["files_new"] == summary["files_changed"] == 0
    assert summary["dirs_changed"] == 0 and summary["tree_blobs"] == 0


def test_repository_checks_after_reuse(setup):
    repo, _ = setup
    assert b"no errors were found" in run_restic(repo, "check", "--read-data").stdout
