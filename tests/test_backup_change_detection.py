"""How a re-backup decides that a file changed, side by side with restic: a new ctime or inode
counts as a change unless --ignore-ctime / --ignore-inode (or, as in current restic, the
variables RESTIC_IGNORE_CTIME / RESTIC_IGNORE_INODE) say otherwise."""
import json
import os
import shutil

import pytest

from conftest import clean_env, run_restic, run_restique

MTIME_NS = 1_600_000_000_123_456_789


def counts(proc) -> tuple:
    s = json.loads(proc.stdout.splitlines()[-1])
    return s["files_new"], s["files_changed"], s["files_unmodified"]


@pytest.fixture
def source(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    for name in ("a.txt", "b.txt", "c.txt"):
        (src / name).write_text(name * 100)
        os.utime(src / name, ns=(MTIME_NS, MTIME_NS))
    return src


def _both_backed_up(tmp_path, source):
    repos = {"restic": tmp_path / "restic-repo", "restique": tmp_path / "restique-repo"}
    for run, repo in ((run_restic, repos["restic"]), (run_restique, repos["restique"])):
        run(repo, "init")
        run(repo, "backup", source)
    return repos


def _new_ctime(path):
    os.chmod(path, os.stat(path).st_mode)  # same mode: only the ctime moves


def _new_inode(path):
    copy = path.with_name(path.name + ".new")
    shutil.copy2(path, copy)
    os.replace(copy, path)
    os.utime(path, ns=(MTIME_NS, MTIME_NS))


@pytest.mark.parametrize("change, flags, expected", [
    (_new_ctime, (), (0, 1, 2)),
    (_new_ctime, ("--ignore-ctime",), (0, 0, 3)),
    (_new_inode, (), (0, 1, 2)),
    (_new_inode, ("--ignore-ctime",), (0, 1, 2)),
    (_new_inode, ("--ignore-inode",), (0, 0, 3)),
], ids=["ctime", "ctime-ignored", "inode", "inode-ctime-ignored", "inode-ignored"])
def test_changes_counted_as_restic_counts_them(tmp_path, source, change, flags, expected):
    repos = _both_backed_up(tmp_path, source)
    change(source / "b.txt")
    ours = run_restique(repos["restique"], "backup", "--json", *flags, source)
    theirs = run_restic(repos["restic"], "backup", "--json", *flags, source)
    assert counts(ours) == counts(theirs) == expected


@pytest.mark.parametrize("variable, change", [("RESTIC_IGNORE_CTIME", _new_ctime), ("RESTIC_IGNORE_INODE", _new_inode)])
@pytest.mark.parametrize("value, ignored", [("true", True), ("1", True), ("T", True), ("false", False),
                                            ("yes", False), ("", False)])
def test_the_environment_sets_the_default(tmp_path, source, variable, change, value, ignored):
    repo = tmp_path / "repo"
    run_restique(repo, "init")
    run_restique(repo, "backup", source)
    change(source / "b.txt")
    proc = run_restique(repo, "backup", "--json", source, env=clean_env(**{variable: value}))
    assert counts(proc) == ((0, 0, 3) if ignored else (0, 1, 2))
