"""How backup targets and stdin file names enter a snapshot, side by side with restic.

Every way a path reaches the archiver (absolute, relative, with `..`, through a symlinked
directory, from --files-from, `.`-like targets, --stdin-filename) is checked against the
real restic: the snapshot's `paths` and the tree that `restic ls` shows must be the same, and
the data must be there. Where restique follows current restic (0.19+) instead of 0.14 (explicit
targets are never excluded), the test says so and checks the part both agree on.
"""
import json
import os
import socket
import subprocess

import pytest

from conftest import PASSWORD, both, clean_env, run_restic as restic, run_restique as restique
from restique.model.node import InvalidNodeName, Node, encode_tree


def init_pair(tmp_path):
    """(repository made by restique, repository made by restic)."""
    a, b = tmp_path / "repo-restique", tmp_path / "repo-restic"
    both([(restique, (a, "init"), {}), (restic, (b, "init"), {})])
    return a, b


def listing(repo, snap="latest"):
    """The paths `restic ls` shows for a snapshot (restic reads both tools' repositories)."""
    out = restic(repo, "ls", "--no-lock", snap).stdout.decode(errors="surrogateescape")
    return out.splitlines()[1:]


def latest(repo) -> dict:
    snaps = json.loads(restic(repo, "snapshots", "--json", "--no-lock").stdout)
    return max(snaps, key=lambda s: s["time"]) if snaps else {}


def count(repo) -> int:
    return len(json.loads(restic(repo, "snapshots", "--json", "--no-lock").stdout))


def backup_both(tmp_path, *args, cwd=None, input=None, check=True):
    """The same backup by restique and restic into repositories of their own."""
    a, b = init_pair(tmp_path)
    kw = {"cwd": cwd, "input": input, "check": check}
    mine, theirs = both([(restique, (a, "backup", *args), kw), (restic, (b, "backup", *args), kw)])
    return a, b, mine, theirs


def assert_same_snapshot(a, b):
    assert listing(a) == listing(b)
    assert latest(a)["paths"] == latest(b)["paths"]


@pytest.fixture
def tree(tmp_path):
    """data/{a.txt, sub/deep/c.txt}, dl2 -> data (absolute), dlink -> data/sub (relative)."""
    src = tmp_path / "src"
    (src / "data" / "sub" / "deep").mkdir(parents=True)
    (src / "data" / "a.txt").write_text("alpha\n")
    (src / "data" / "sub" / "deep" / "c.txt").write_text("hello\n")
    (src / "dl2").symlink_to(src / "data")
    (src / "dlink").symlink_to("data/sub")
    return src


# --- 1. symlinked directories inside a target ---------------------------------------------------

def test_symlinked_directory_in_an_absolute_target_is_followed(tmp_path, tree):
    target = tree / "dl2" / "sub" / "deep" / "c.txt"
    a, b, _, _ = backup_both(tmp_path, target)
    assert_same_snapshot(a, b)
    assert listing(a)[-1] == str(target)
    out = restic(a, "dump", "--no-lock", "latest", str(target)).stdout
    assert out == b"hello\n"


def test_symlinked_directory_in_a_relative_target_is_followed(tmp_path, tree):
    a, b, _, _ = backup_both(tmp_path, "dlink/deep", cwd=tree)
    assert_same_snapshot(a, b)
    assert listing(a) == ["/dlink", "/dlink/deep", "/dlink/deep/c.txt"]
    restored = tmp_path / "restored"
    restic(a, "restore", "--no-lock", "latest", "--target", restored)
    assert (restored / "dlink" / "deep" / "c.txt").read_text() == "hello\n"


def test_symlink_as_the_target_itself_is_stored_as_a_symlink(tmp_path, tree):
    a, b, _, _ = backup_both(tmp_path, "dlink", cwd=tree)
    assert_same_snapshot(a, b)
    assert listing(a) == ["/dlink"]


def test_file_in_the_middle_of_a_target_is_an_error_not_a_silent_success(tmp_path, tree):
    a, b = init_pair(tmp_path)
    # a target whose parent component is a regular file cannot exist: both refuse it
    mine = restique(a, "backup", tree / "data" / "a.txt" / "x", check=False)
    theirs = restic(b, "backup", tree / "data" / "a.txt" / "x", check=False)
    assert mine.returncode == theirs.returncode == 1
    assert count(a) == count(b) == 0


# --- 2. --stdin-filename is cleaned ---------------------------------------------------------------

@pytest.mark.parametrize("name", ["../up.txt", "./x", "a/../b", "x/.", "/abs/path.txt", "a//b", "dir/f"])
def test_stdin_filename_is_cleaned_as_restic_does(tmp_path, name):
    a, b, _, _ = backup_both(tmp_path, "--stdin", "--stdin-filename", name, input=b"hi\n")
    assert_same_snapshot(a, b)
    path = latest(a)["paths"][0]
    assert restic(a, "dump", "--no-lock", "latest", path).stdout == b"hi\n"


@pytest.mark.parametrize("name", [".", "", "/", "..", "../.."])
def test_stdin_filename_without_a_name_is_refused(tmp_path, name):
    a, b, mine, theirs = backup_both(tmp_path, "--stdin", "--stdin-filename", name, input=b"hi\n", check=False)
    assert mine.returncode == theirs.returncode == 1
    assert count(a) == count(b) == 0
    err = mine.stderr.decode()
    assert err.startswith("Fatal: invalid --stdin-filename") and err.count("\n") == 1


@pytest.mark.parametrize("name", ["", ".", "..", "a/b"])
def test_trees_never_hold_an_entry_that_cannot_be_restored(name):
    with pytest.raises(InvalidNodeName):
        encode_tree([Node(name=name, type="file")])


# --- 3. excludes and explicit targets -------------------------------------------------------------

@pytest.fixture
def logs(tmp_path):
    src = tmp_path / "logs"
    (src / "dir" / "nested").mkdir(parents=True)
    for rel in ("top.log", "top.txt", "dir/a.log", "dir/a.txt", "dir/nested/b.log", "dir/nested/b.txt"):
        (src / rel).write_text(rel)
    return src


def test_excludes_filter_everything_below_a_target_as_restic(tmp_path, logs):
    a, b, _, _ = backup_both(tmp_path, "dir", "--exclude", "*.log", cwd=logs)
    assert_same_snapshot(a, b)
    assert listing(a) == ["/dir", "/dir/a.txt", "/dir/nested", "/dir/nested/b.txt"]


def test_excludes_apply_to_the_entries_of_a_dot_target_as_restic(tmp_path, logs):
    a, b, _, _ = backup_both(tmp_path, ".", "--exclude", "*.log", "--exclude", "nested", cwd=logs)
    assert_same_snapshot(a, b)
    assert "/top.log" not in listing(a) and "/dir/nested" not in listing(a)


def test_files_from_entries_are_filtered_below_and_kept_when_named(tmp_path, logs):
    """A listed directory is filtered like any target; a listed file is kept even when an
    exclude matches it: current restic (0.19, #5767) never excludes a path the user named,
    where 0.14 dropped it."""
    listfile = tmp_path / "list"
    listfile.write_text("dir\ntop.log\ntop.txt\n")
    a, b, _, _ = backup_both(tmp_path, "--files-from", listfile, "--exclude", "*.log", cwd=logs)
    theirs = listing(b)
    assert "/top.log" not in theirs  # restic 0.14 drops the named file
    assert listing(a) == sorted(theirs + ["/top.log"])
    assert restic(a, "dump", "--no-lock", "latest", "/top.log").stdout == b"top.log"


def test_a_named_target_is_never_excluded(tmp_path, logs):
    a = tmp_path / "repo"
    restique(a, "init")
    for args in (["top.txt", "--exclude", "top.txt"], ["top.log", "--exclude-larger-than", "0"],
                 ["dir", "--exclude-if-present", "top.txt"]):
        restique(a, "backup", *args, cwd=logs)
        assert listing(a)[0] == "/" + args[0]


def test_excluding_everything_below_a_dot_target_gives_no_snapshot(tmp_path, logs):
    a, b, mine, theirs = backup_both(tmp_path, ".", "--exclude", "*", cwd=logs, check=False)
    assert mine.returncode == theirs.returncode == 1
    assert b"snapshot is empty" in mine.stderr and b"snapshot is empty" in theirs.stderr
    assert count(a) == count(b) == 0


# --- 4. relative targets with `..` ----------------------------------------------------------------

def test_leading_dotdot_is_dropped_from_the_tree(tmp_path, tree):
    a, b, _, _ = backup_both(tmp_path, "../a.txt", cwd=tree / "data" / "sub")
    assert_same_snapshot(a, b)
    assert listing(a) == ["/a.txt"]
    assert latest(a)["paths"] == [str(tree / "data" / "a.txt")]


def test_dotdot_alone_saves_the_parent_entries(tmp_path, tree):
    a, b, _, _ = backup_both(tmp_path, "..", cwd=tree / "data" / "sub")
    assert_same_snapshot(a, b)
    assert listing(a)[0] == "/a.txt"


def test_same_name_below_two_roots_gets_a_suffix(tmp_path, tree):
    (tree / "data" / "sub" / "a.txt").write_text("inner\n")
    a, b, _, _ = backup_both(tmp_path, "a.txt", "../a.txt", cwd=tree / "data" / "sub")
    assert_same_snapshot(a, b)
    assert listing(a) == ["/a.txt", "/a.txt-1"]


def test_nested_targets_and_duplicates_store_each_entry_once(tmp_path, tree):
    a, b, _, _ = backup_both(tmp_path, "data", "data/sub", "./data/sub/deep", "data", cwd=tree)
    assert_same_snapshot(a, b)
    assert len(listing(a)) == len(set(listing(a)))


# --- 5. -x and a mount point named as a target of its own ----------------------------------------

@pytest.fixture
def xdev(tmp_path):
    root = tmp_path / "xdev"
    (root / "mnt").mkdir(parents=True)
    (root / "top.txt").write_text("top")
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(root / "mnt")], check=True)
    (root / "mnt" / "inner.txt").write_text("inner")
    yield root
    subprocess.run(["umount", str(root / "mnt")], check=True)


def test_one_file_system_keeps_a_mount_point_named_as_target(tmp_path, xdev):
    a, b, _, _ = backup_both(tmp_path, "xdev", "xdev/mnt", "-x", cwd=xdev.parent)
    assert_same_snapshot(a, b)
    assert "/xdev/mnt/inner.txt" in listing(a)


def test_one_file_system_leaves_other_mounts_empty(tmp_path, xdev):
    a, b, _, _ = backup_both(tmp_path, "xdev", "-x", cwd=xdev.parent)
    assert_same_snapshot(a, b)
    assert listing(a) == ["/xdev", "/xdev/mnt", "/xdev/top.txt"]


# --- 6-8. host, size limits, marker names, empty stdin --------------------------------------------

def test_empty_host_means_this_machine(tmp_path, tree):
    a, b, _, _ = backup_both(tmp_path, "--host", "", "data", cwd=tree)
    assert latest(a)["hostname"] == latest(b)["hostname"] == socket.gethostname()


@pytest.mark.parametrize("limit", ["0", "0k", "5"])
def test_exclude_larger_than_zero_is_a_limit_not_off(tmp_path, tree, limit):
    (tree / "data" / "empty").write_text("")
    (tree / "data" / "link").symlink_to("a-target-longer-than-five-bytes")
    a, b, _, _ = backup_both(tmp_path, "data", "--exclude-larger-than", limit, cwd=tree)
    assert_same_snapshot(a, b)
    assert "/data/empty" in listing(a)
    assert "/data/a.txt" not in listing(a) and "/data/link" not in listing(a)


@pytest.mark.parametrize("spec,message", [("", "name for exclusion tagfile is empty"),
                                          (":x", "no name for exclusion tagfile provided")])
def test_exclude_if_present_needs_a_name(tmp_path, tree, spec, message):
    a, b, mine, theirs = backup_both(tmp_path, "data", "--exclude-if-present", spec, cwd=tree, check=False)
    assert mine.returncode == theirs.returncode == 1
    assert mine.stderr.decode() == f"Fatal: {message}\n"
    assert message in theirs.stderr.decode()
    assert count(a) == count(b) == 0


def test_exclude_if_present_with_an_empty_header_asks_only_for_the_file(tmp_path, tree):
    (tree / "data" / "sub" / ".nobackup").write_text("anything")
    a, b, _, _ = backup_both(tmp_path, "data", "--exclude-if-present", ".nobackup:", cwd=tree)
    assert_same_snapshot(a, b)
    assert "/data/sub/deep" not in listing(a)


@pytest.mark.parametrize("args", [["--stdin"], ["--stdin", "--stdin-filename", "db.sql"],
                                  ["--stdin-from-command", "--", "true"]])
def test_empty_stdin_saves_no_snapshot(tmp_path, args):
    a, b, mine, theirs = backup_both(tmp_path, *args, input=b"", check=False)
    assert mine.returncode == theirs.returncode == 1
    assert count(a) == count(b) == 0
    err = mine.stderr.decode()
    assert "no data read" in err and err.endswith("Fatal: unable to save snapshot: snapshot is empty\n")


# --- 9-11. command line ---------------------------------------------------------------------------

def test_verbose_level_as_value(tmp_path, tree):
    a, b = init_pair(tmp_path)
    mine = restique(a, "--verbose=2", "backup", "data", cwd=tree)
    theirs = restic(b, "backup", "--verbose=2", "data", cwd=tree)
    for out in (mine.stdout, theirs.stdout):
        assert b"new       /data/a.txt" in out


def test_quiet_and_verbose_together_are_refused(tmp_path):
    a, b = init_pair(tmp_path)
    mine = restique(a, "-q", "-v", "snapshots", check=False)
    theirs = restic(b, "-q", "-v", "snapshots", check=False)
    assert mine.returncode == theirs.returncode == 1
    assert mine.stderr == theirs.stderr == b"Fatal: --quiet and --verbose cannot be specified at the same time\n"


def test_help_without_a_command_and_help_command():
    plain = restique(None)
    assert plain.returncode == 0 and b"Usage:" in plain.stdout and b"snapshots" in plain.stdout
    for args in (["help"], ["help", "snapshots"], ["help", "key", "add"]):
        out = restique(None, *args)
        assert b"Usage:" in out.stdout
    assert b"restique snapshots" in restique(None, "help", "snapshots").stdout
    assert b"Unknown help topic" in restique(None, "help", "nosuch").stdout


def test_init_copies_chunker_parameters_from_another_repository(tmp_path):
    src, dst = tmp_path / "src", tmp_path / "dst"
    restic(src, "init")
    restique(dst, "init", "--from-repo", src, "--copy-chunker-params",
             env=clean_env(RESTIC_PASSWORD="other", RESTIC_FROM_PASSWORD=PASSWORD))
    poly = [json.loads(restic(r, "cat", "config", "--no-lock", env=clean_env(RESTIC_PASSWORD=pw)).stdout)
            ["chunker_polynomial"] for r, pw in ((src, PASSWORD), (dst, "other"))]
    assert poly[0] == poly[1]


@pytest.mark.parametrize("args,message", [
    (["--copy-chunker-params"], "Please specify a source repository location (--from-repo or --from-repository-file)"),
    (["--from-repo", "/nonexistent"], "Secondary repository must only be specified when copying the chunker parameters"),
])
def test_init_from_repo_errors(tmp_path, args, message):
    out = restique(tmp_path / "dst", "init", *args, check=False)
    assert out.returncode == 1 and out.stderr.decode() == f"Fatal: {message}\n"
    assert not (tmp_path / "dst").exists()
