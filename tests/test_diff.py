"""`restique diff` against the real restic 0.14, and the comparison library on hand-made trees.

The CLI tests run both programs on both repositories of the browse fixture (each backed up
by its own tool, two snapshots with every kind of change between them) and compare stdout,
stderr and exit codes line for line. What restic 0.14 lacks (`latest` and `ID:subfolder`
in diff, the "?" bitrot modifier) is checked against its documented meaning. The library
tests build trees blob by blob in memory to reach what a backup cannot easily produce.
"""
import json

import pytest

from browse_fixtures import browse  # noqa: F401  (the session fixture)
from conftest import PASSWORD, restic_and_restique, run_restic, run_restique


def short(full_id: str) -> str:
    return full_id[:8]


def assert_same(restic, restique):
    assert restique.stdout.decode(errors="replace").splitlines() == \
        restic.stdout.decode(errors="replace").splitlines()
    assert restique.stdout == restic.stdout
    assert restique.stderr == restic.stderr
    assert restique.returncode == restic.returncode


# --------------------------------------------------------------------------------------------
# the CLI against restic 0.14


# each run pays the key derivation, so the repository restique wrote (stronger keys) gets fewer
@pytest.mark.parametrize("tool, reverse, metadata", [
    ("restic", False, False), ("restic", True, False), ("restic", False, True), ("restic", True, True),
    ("restique", False, False), ("restique", True, True),
], ids=["restic-plain", "restic-reverse", "restic-metadata", "restic-reverse-metadata",
        "restique-plain", "restique-reverse-metadata"])
def test_text_output_matches_restic(browse, tool, reverse, metadata):
    a, b = short(browse.first[tool]), short(browse.second[tool])
    if reverse:
        a, b = b, a
    flags = ["--metadata"] if metadata else []
    restic, restique = restic_and_restique(browse.repos[tool], "--no-lock", "diff", *flags, a, b)
    assert restic.returncode == 0, restic.stderr
    assert_same(restic, restique)
    lines = restique.stdout.decode(errors="replace").splitlines()
    assert lines[0] == f"comparing snapshot {a} to {b}:"
    changes = lines[2:lines.index("", 2)]
    modifiers = set("".join(line[:5].strip() for line in changes))
    assert modifiers == ({"+", "-", "M", "T", "U"} if metadata else {"+", "-", "M", "T"})


@pytest.mark.parametrize("tool, reverse", [("restic", False), ("restic", True), ("restique", True)],
                         ids=["restic", "restic-reverse-metadata", "restique-reverse-metadata"])
def test_json_output_matches_restic(browse, tool, reverse):
    a, b = browse.first[tool], browse.second[tool]  # full IDs, echoed in the statistics
    if reverse:
        a, b = b, a
    flags = ["--metadata"] if reverse else []
    restic, restique = restic_and_restique(browse.repos[tool], "--no-lock", "--json", "diff", *flags, a, b)
    assert restic.returncode == 0, restic.stderr
    assert_same(restic, restique)


def test_json_follows_the_documented_schema(browse):
    """The current scripting documentation: `change` lines, then one `statistics` object."""
    tool = "restic"
    a, b = short(browse.first[tool]), browse.second[tool][:12]
    out = run_restique(browse.repos[tool], "--json", "diff", "--metadata", a, b).stdout
    messages = [json.loads(line) for line in out.decode().splitlines()]
    *changes, statistics = messages
    assert changes
    for change in changes:
        assert list(change) == ["message_type", "path", "modifier"]
        assert change["message_type"] == "change"
        assert change["path"].startswith("/")
        assert change["modifier"] in ("+", "-") or set(change["modifier"]) <= set("TM?U")
    assert list(statistics) == ["message_type", "source_snapshot", "target_snapshot",
                                "changed_files", "added", "removed"]
    assert statistics["message_type"] == "statistics"
    assert (statistics["source_snapshot"], statistics["target_snapshot"]) == (a, b)  # as given
    for side in ("added", "removed"):
        assert list(statistics[side]) == ["files", "dirs", "others", "data_blobs", "tree_blobs", "bytes"]
        assert all(isinstance(v, int) and v >= 0 for v in statistics[side].values())
    assert statistics["changed_files"] == sum(1 for c in changes if "M" in c["modifier"])


@pytest.mark.parametrize("json_output", [False, True], ids=["text", "json"])
def test_quiet_prints_only_the_statistics(browse, json_output):
    tool = "restic"
    flags = ["--json"] if json_output else []
    args = ["--no-lock", "-q", *flags, "diff", short(browse.first[tool]), short(browse.second[tool])]
    restic, restique = restic_and_restique(browse.repos[tool], *args)
    assert_same(restic, restique)
    assert b"comparing" not in restique.stdout and b"/tree/" not in restique.stdout


def test_shortest_prefixes_and_a_snapshot_with_itself(browse):
    tool = "restic"
    first, second = browse.first[tool], browse.second[tool]
    n = next(n for n in range(1, 64) if first[:n] != second[:n])
    restic, restique = restic_and_restique(browse.repos[tool], "--no-lock", "diff", first[:n], second[:n])
    assert_same(restic, restique)
    restic, restique = restic_and_restique(browse.repos[tool], "--no-lock", "diff", first[:n], first)
    assert_same(restic, restique)
    assert b"0 new,     0 removed,     0 changed" in restique.stdout


@pytest.mark.parametrize("args", [
    ["FIRST"],
    [],
    ["FIRST", "SECOND", "FIRST"],
    ["FIRST", "ffffffff"],
    ["deadbeef", "SECOND"],
    ["", "SECOND"],  # an empty prefix matches both snapshots
    ["--bogus", "FIRST", "SECOND"],
], ids=["one-id", "no-id", "three-ids", "unknown-second", "unknown-first", "ambiguous", "bad-flag"])
def test_errors_match_restic(browse, args):
    tool = "restic"
    names = {"FIRST": short(browse.first[tool]), "SECOND": short(browse.second[tool])}
    args = [names.get(a, a) for a in args]
    restic, restique = restic_and_restique(browse.repos[tool], "--no-lock", "diff", *args)
    assert restic.returncode == 1
    assert_same(restic, restique)


def test_wrong_password_and_missing_repository(browse, tmp_path):
    from conftest import clean_env

    tool = "restic"
    args = ["--no-lock", "diff", short(browse.first[tool]), short(browse.second[tool])]
    env = clean_env(RESTIC_PASSWORD="wrong")
    restic, restique = restic_and_restique(browse.repos[tool], *args, env=env)
    assert (restique.returncode, restique.stderr) == (12, b"Fatal: wrong password or no key found\n")
    assert restic.returncode != 0
    missing = run_restique(tmp_path / "nothing", *args, check=False)
    assert missing.returncode == 10 and missing.stderr.startswith(b"Fatal: ")


# --------------------------------------------------------------------------------------------
# what restic 0.14's diff lacks: `latest` and `ID:subfolder`, checked against their meaning


def test_latest_is_the_newest_snapshot(browse):
    tool = "restic"
    first, second = short(browse.first[tool]), short(browse.second[tool])
    expected = run_restic(browse.repos[tool], "--no-lock", "diff", first, second)
    got = run_restique(browse.repos[tool], "--no-lock", "diff", first, "latest")
    assert got.stdout == expected.stdout and got.stderr == b""
    reverse = run_restique(browse.repos[tool], "--no-lock", "diff", "latest", first)
    assert reverse.stdout.splitlines()[0] == f"comparing snapshot {second} to {first}:".encode()


def _subfolder_changes(full_output: bytes, folder: str) -> list:
    """The change lines of a whole-snapshot diff below folder, with paths made relative to
    it, as a diff of that folder alone prints them."""
    out = []
    for line in full_output.splitlines()[2:]:
        if not line:
            break
        modifier, path = line[:5], line[5:]
        if path.startswith(folder.encode() + b"/") and path != folder.encode() + b"/":
            out.append(modifier + path[len(folder):])
    return out


@pytest.mark.parametrize("tool, metadata", [("restic", False), ("restique", True)],
                         ids=["restic-plain", "restique-metadata"])
def test_subfolder_compares_those_folders(browse, tool, metadata):
    first, second = short(browse.first[tool]), short(browse.second[tool])
    flags = ["--metadata"] if metadata else []
    whole = run_restic(browse.repos[tool], "--no-lock", "diff", *flags, first, second).stdout
    got = run_restique(browse.repos[tool], "--no-lock", "diff", *flags,
                       f"{first}:/tree/nested", f"{second}:tree/nested").stdout.splitlines()
    assert got[:2] == [f"comparing snapshot {first} to {second}:".encode(), b""]
    changes = got[2:got.index(b"", 2)]
    assert changes == _subfolder_changes(whole, "/tree/nested")
    assert b"+    /new-dir/inner.txt" in changes


def test_subfolder_statistics_count_the_blobs_of_one_side(browse):
    """Blobs referenced below one folder and not below the other, sized from the index."""
    from restique.operations.walker import find_tree_directory, walk
    from restique.repository.repository import open_repository

    tool = "restic"
    specs = [f"{browse.first[tool]}:tree/nested", "latest:/tree/nested"]
    out = run_restique(browse.repos[tool], "--no-lock", "--json", "diff", *specs).stdout
    statistics = json.loads(out.splitlines()[-1])
    assert (statistics["source_snapshot"], statistics["target_snapshot"]) == tuple(specs)

    with open_repository(str(browse.repos[tool]), PASSWORD) as repo:
        repo.load_index()
        sides = []
        for sid in (browse.first[tool], browse.second[tool]):
            root = repo.load_json("snapshot", sid)["tree"]
            tree = find_tree_directory(repo, root, "tree/nested")
            data, trees = set(), {tree}
            for _, node in walk(repo, tree):
                if node.type == "file":
                    data.update(node.content or ())
                elif node.type == "dir":
                    trees.add(node.subtree)
            sides.append((data, trees))
        (data_a, trees_a), (data_b, trees_b) = sides

        def expected(data, trees):
            size = sum(repo.index.lookup("data", d).size for d in data) + \
                sum(repo.index.lookup("tree", t).size for t in trees)
            return len(data), len(trees), size

    added, removed = statistics["added"], statistics["removed"]
    assert (added["data_blobs"], added["tree_blobs"], added["bytes"]) == expected(data_b - data_a, trees_b - trees_a)
    assert (removed["data_blobs"], removed["tree_blobs"], removed["bytes"]) == \
        expected(data_a - data_b, trees_a - trees_b)
    assert (added["files"], added["dirs"], removed["files"], removed["dirs"]) == (1, 1, 0, 0)


@pytest.mark.parametrize("spec, message", [
    ("FIRST:tree/nope", b"Fatal: path tree/nope: not found\n"),
    ("FIRST:/tree/small.txt", b"Fatal: path tree/small.txt: not a directory\n"),
    ("ffffffff:tree", b'Fatal: no matching ID found for prefix "ffffffff"\n'),
], ids=["missing", "not-a-directory", "unknown-id"])
def test_subfolder_errors(browse, spec, message):
    tool = "restic"
    first, second = short(browse.first[tool]), short(browse.second[tool])
    got = run_restique(browse.repos[tool], "--no-lock", "diff", spec.replace("FIRST", first), second,
                       check=False)
    assert (got.returncode, got.stderr) == (1, message)
    if b"path" in message:  # the heading comes first, as restic prints it before the lookup
        assert got.stdout == f"comparing snapshot {first} to {second}:\n\n".encode()


# --------------------------------------------------------------------------------------------
# the library on hand-made trees


@pytest.fixture
def memory_repo():
    from restique.backend.memory import MemoryBackend
    from restique.repository.repository import init_repository

    repo = init_repository(MemoryBackend(), PASSWORD, kdf_params=(1 << 10, 8, 1))
    yield repo
    repo.close()


class Trees:
    """Builds trees in a repository: files from bytes, folders from lists of entries."""

    def __init__(self, repo):
        self.repo = repo

    def file(self, name, data: bytes, mtime=1, utc_offset=0, **fields):
        from restique.model.gotime import GoTime
        from restique.model.node import Node

        blob = self.repo.save_blob("data", data)[0]
        return Node(name=name, type="file", mode=0o644, mtime=GoTime(mtime * 10**9, utc_offset),
                    size=len(data), content=[blob], **fields)

    def dir(self, name, entries):
        from restique.model.node import MODE_DIR, Node

        return Node(name=name, type="dir", mode=MODE_DIR | 0o755, subtree=self.tree(entries))

    def tree(self, entries) -> str:
        from restique.model.node import encode_tree

        return self.repo.save_blob("tree", encode_tree(list(entries)))[0]


def run_diff(repo, tree_a, tree_b, metadata=False):
    from restique.operations.diff import DiffOptions, diff_trees

    repo.flush()
    changes, warnings = [], []
    stats = diff_trees(repo, tree_a, tree_b, DiffOptions(metadata=metadata), changes.append, warnings.append)
    return [(c.modifier, c.path) for c in changes], stats, warnings


def test_bitrot_and_metadata_modifiers(memory_repo):
    t = Trees(memory_repo)
    a = t.tree([t.file("rot", b"old"), t.file("touched", b"same", mtime=1), t.file("edited", b"v1", mtime=1)])
    b = t.tree([t.file("rot", b"new"), t.file("touched", b"same", mtime=2), t.file("edited", b"v2", mtime=2)])
    changes, stats, _ = run_diff(memory_repo, a, b)
    assert changes == [("M", "/edited"), ("M?", "/rot")]
    assert stats.changed_files == 2
    changes, _, _ = run_diff(memory_repo, a, b, metadata=True)
    assert changes == [("M", "/edited"), ("M?", "/rot"), ("U", "/touched")]
    # the same instant written in another time zone is the same metadata, as Go's Time.Equal
    zoned = t.tree([t.file("f", b"x", mtime=5), t.file("g", b"y", mtime=5, xattrs=[("user.a", b"1"), ("user.b", b"2")])])
    moved = t.tree([t.file("f", b"x", mtime=5, utc_offset=3600),
                    t.file("g", b"y", mtime=5, xattrs=[("user.b", b"2"), ("user.a", b"1")])])
    changes, _, _ = run_diff(memory_repo, zoned, moved, metadata=True)
    assert changes == []


def test_a_blob_in_both_trees_counts_in_neither(memory_repo):
    """A removed folder's file whose content an unchanged folder also holds removes no blob."""
    t = Trees(memory_repo)
    keep = t.dir("keep", [t.file("a", b"shared")])
    gone = t.dir("gone", [t.file("b", b"shared"), t.file("c", b"only here")])
    a = t.tree([gone, keep])
    b = t.tree([keep, t.file("new", b"only there")])
    changes, stats, _ = run_diff(memory_repo, a, b)
    assert changes == [("-", "/gone/"), ("-", "/gone/b"), ("-", "/gone/c"), ("+", "/new")]
    removed, added = stats.removed, stats.added
    assert (removed.files, removed.dirs, removed.data_blobs, removed.tree_blobs) == (2, 1, 1, 2)
    assert (added.files, added.dirs, added.data_blobs, added.tree_blobs) == (1, 0, 1, 1)
    tree_size = lambda tree_id: memory_repo.index.lookup("tree", tree_id).size  # noqa: E731
    assert removed.bytes == len(b"only here") + tree_size(a) + tree_size(gone.subtree)


def test_type_change_and_added_folders(memory_repo):
    t = Trees(memory_repo)
    a = t.tree([t.dir("x", [t.file("inner", b"i")]), t.file("y", b"file")])
    b = t.tree([t.file("x", b"now a file"), t.dir("y", [t.dir("sub", [t.file("deep", b"d")])])])
    changes, stats, _ = run_diff(memory_repo, a, b)
    assert changes == [("T", "/x"), ("T", "/y/")]  # restic does not look into the old/new folder
    assert (stats.added.files, stats.removed.files, stats.changed_files) == (0, 0, 0)
    c = t.tree([t.dir("y", [t.dir("sub", [t.file("deep", b"d")])])])
    changes, stats, _ = run_diff(memory_repo, t.tree([]), c)
    assert changes == [("+", "/y/"), ("+", "/y/sub/"), ("+", "/y/sub/deep")]
    assert (stats.added.dirs, stats.added.files, stats.added.tree_blobs) == (2, 1, 3)


def test_unchanged_folders_are_not_compared_and_each_tree_is_read_once(memory_repo, monkeypatch):
    t = Trees(memory_repo)
    same = t.dir("same", [t.dir(f"d{i}", [t.file("f", b"x%d" % i, mtime=i)]) for i in range(5)])
    a = t.tree([same, t.file("z", b"1", mtime=1)])
    b = t.tree([same, t.file("z", b"2", mtime=2)])
    memory_repo.flush()
    loads = []
    real_load = memory_repo.load_blob
    monkeypatch.setattr(memory_repo, "load_blob", lambda kind, i: loads.append(i) or real_load(kind, i))
    changes, stats, _ = run_diff(memory_repo, a, b, metadata=True)
    assert changes == [("M", "/z")]
    assert len(loads) == len(set(loads))
    assert (stats.added.data_blobs, stats.removed.data_blobs, stats.added.tree_blobs) == (1, 1, 1)


def test_deep_folders_and_unreadable_subtrees(memory_repo):
    from restique.model.node import MODE_DIR, Node

    t = Trees(memory_repo)
    deep = [t.file("leaf", b"leaf")]
    for _ in range(1500):  # deeper than Python's recursion limit
        deep = [t.dir("d", deep)]
    changes, stats, _ = run_diff(memory_repo, t.tree([]), t.tree(deep))
    assert len(changes) == 1501 and changes[-1][1].count("/d") == 1500
    broken = Node(name="broken", type="dir", mode=MODE_DIR | 0o755, subtree="ab" * 32)
    changes, stats, warnings = run_diff(memory_repo, t.tree([]), t.tree([broken, t.file("ok", b"ok")]))
    assert changes == [("+", "/broken/"), ("+", "/ok")]
    assert stats.errors == 1 and warnings[0].startswith("error: ")
    assert warnings[1:] == ["unable to find blob size for <tree/abababab>"]
