"""`restique find` against the real restic 0.14 on both repositories of the browse fixture (one
made by restic, one by restique): name and path patterns, -i, --long, --json, --oldest/--newest
in restic's time formats, --snapshot, --host/--tag/--path, --blob/--tree/--pack with whole IDs
and prefixes, --show-pack-id; then what current restic does differently (snapshot order, the
inode in --json, the root tree, unknown snapshot IDs), a subtree repeated under two paths (which
restic 0.14 skips the second time), a damaged tree, bad input, and the library call.

restic 0.14 searches the snapshots in the order it happens to load them; it is given them
explicitly, newest first, which is the order restique (as current restic) always uses.
"""
import json
import shutil
from types import SimpleNamespace

import pytest

from browse_fixtures import browse  # noqa: F401 (the session fixture)
from conftest import PASSWORD, both, run_restic, run_restique
from test_snapshots import use_cheap_key

REPOS = ("restic", "restique")
# restic 0.14 ignores linktarget_raw and shows the lossy target; restique shows the bytes
LOSSY_TARGET = " -> /tmp/\ufffd\ufffd".encode()
RAW_TARGET = b" -> /tmp/\xff\xfe"


@pytest.fixture(scope="module")
def env(browse, tmp_path_factory):  # noqa: F811
    """Copies of the browse repositories with a cheap key, and the IDs the tests search for,
    read with restic: root trees, the trees of /tree/nested (which differ between the
    snapshots, as every tree of them does but the empty one), the empty tree, the blobs of
    small.txt and of the hard-linked files, a pack of data blobs and a pack of trees."""
    base = tmp_path_factory.mktemp("find")
    repos = {}
    for tool in REPOS:
        repos[tool] = base / tool
        shutil.copytree(browse.repos[tool], repos[tool])
        use_cheap_key(repos[tool])
    ids = both([(_object_ids, (repos[tool],), {}) for tool in REPOS])
    snap = json.loads(run_restic(repos["restic"], "snapshots", "--json", "--no-lock").stdout)[0]
    return SimpleNamespace(base=base, repos=repos, first=browse.first, second=browse.second,
                           ids=dict(zip(REPOS, ids)), host=snap["hostname"], path=snap["paths"][0])


def _restic_text(repo, *args) -> str:
    return run_restic(repo, *args, "--no-lock").stdout.decode()


def _tree(repo, tree_id):
    return {n["name"]: n for n in json.loads(_restic_text(repo, "cat", "blob", tree_id))["nodes"]}


def _subtree(repo, tree_id, path):
    for name in path.split("/"):
        tree_id = _tree(repo, tree_id)[name]["subtree"]
    return tree_id


def _object_ids(repo):
    snapshots = sorted(json.loads(_restic_text(repo, "snapshots", "--json")), key=lambda s: s["time"])
    first_root, second_root = (s["tree"] for s in snapshots)
    first = _tree(repo, _subtree(repo, first_root, "tree"))
    second = _tree(repo, _subtree(repo, second_root, "tree"))
    packs = {}  # pack id -> {(type, blob id)}, from every index file
    for index_id in _restic_text(repo, "list", "index").split():
        for pack in json.loads(_restic_text(repo, "cat", "index", index_id))["packs"]:
            packs.setdefault(pack["id"], set()).update((b["type"], b["id"]) for b in pack["blobs"])
    assert set(packs) == set(_restic_text(repo, "list", "packs").split())
    small = first["small.txt"]["content"][0]
    return SimpleNamespace(
        first_root=first_root, second_root=second_root, nested_first=first["nested"]["subtree"],
        nested_second=second["nested"]["subtree"],
        empty=_subtree(repo, first["nested"]["subtree"], "a/b/empty-dir"),
        small=small, hardlink=first["hardlink-1.txt"]["content"][0], packs=packs,
        data_pack=next(p for p, blobs in packs.items() if ("data", small) in blobs),
        tree_pack=next(p for p, blobs in packs.items() if {t for t, _ in blobs} == {"tree"}))


NEWEST_FIRST = ["-s", "{second}", "-s", "{first}"]


def _args(env, tool, template):
    return [a.format(first=env.first[tool], second=env.second[tool], host=env.host, path=env.path,
                     i=env.ids[tool]) for a in template]


def _normalise(stdout: bytes) -> bytes:
    return stdout.replace(RAW_TARGET, LOSSY_TARGET)


def _show(proc) -> str:
    return f"exit {proc.returncode}\nstdout:\n{proc.stdout.decode(errors='replace')[-3000:]}\n" \
           f"stderr:\n{proc.stderr.decode(errors='replace')[-3000:]}"


def _run_all(env, template, restic_template=None, tools=REPOS):
    """{tool: (restic's result, restique's result)} for `find` with template on each repository;
    restic gets restic_template (default: template after the snapshots, newest first)."""
    if restic_template is None:
        restic_template = NEWEST_FIRST + list(template)
    calls = []
    for tool in tools:  # without locks: each lock costs restic a fifth of a second here
        repo = env.repos[tool]
        calls.append((run_restic, (repo, "--no-lock", "find", *_args(env, tool, restic_template)), {"check": False}))
        calls.append((run_restique, (repo, "--no-lock", "find", *_args(env, tool, template)), {"check": False}))
    results = both(calls)
    return {tool: (results[2 * n], results[2 * n + 1]) for n, tool in enumerate(tools)}


def _blocks(stdout: bytes):
    """The per-snapshot blocks of find's pattern output, in restic's unordered fashion."""
    return sorted(stdout.rstrip(b"\n").split(b"\n\n"))


# --------------------------------------------------------------------------------------------
# file patterns: text output, line for line with restic 0.14

TEXT_CASES = [
    ["*.txt"],
    ["nested/a"],  # a directory's name: everything below it matches too
    ["/tree/nested/*"],
    ["a/**"],
    ["**/deep.txt", "links/*"],
    ["caf?.txt", "dir-*"],  # names that are not UTF-8
    ["!small.txt"],  # restic's find drops the `!`
    [""],  # the empty pattern matches everything
    ["-i", "SMALL.TXT", "CAF*", "Nested/A/B"],
    ["--long", "*"],
    ["-q", "*.txt", "sticky"],
]


@pytest.mark.parametrize("template", TEXT_CASES, ids=" ".join)
def test_patterns_match_restic(env, template):
    for tool, (expected, got) in _run_all(env, template).items():
        assert expected.returncode == 0, _show(expected)
        assert got.returncode == 0, _show(got)
        assert _normalise(got.stdout) == expected.stdout, tool
        assert got.stderr == expected.stderr == b""


# restic 0.14 leaves these out; current restic shows them (and so does restique)
CURRENT_ONLY_FIELDS = ("inode", "linktarget_raw")


def _without_current_fields(doc):
    for group in doc:
        for match in group["matches"]:
            for key in CURRENT_ONLY_FIELDS:
                match.pop(key, None)
    return doc


@pytest.mark.parametrize("template", [["--json", "--long", "links", "chardev", "*.txt"],
                                      ["--json", "nosuchfile"], ["--json", "-i", "CAF*"]], ids=" ".join)
def test_json_matches_restic(env, template):
    for tool, (expected, got) in _run_all(env, template).items():
        assert got.returncode == 0, _show(got)
        assert got.stdout.endswith(b"]\n")
        assert _without_current_fields(json.loads(got.stdout)) == json.loads(expected.stdout), tool


def test_json_schema_of_current_restic(env):
    """The match object as current restic documents it: path and permissions first, the node's
    fields in its order without name, content, subtree, device and attributes, with inode."""
    order = ["path", "permissions", "type", "mode", "mtime", "atime", "ctime", "uid", "gid", "user",
             "group", "inode", "device_id", "size", "links", "linktarget", "linktarget_raw"]
    proc = run_restique(env.repos["restique"], "find", "--json", "*")
    groups = json.loads(proc.stdout)
    assert [g["snapshot"] for g in groups] == [env.second["restique"], env.first["restique"]]
    for group in groups:
        assert list(group) == ["matches", "hits", "snapshot"]
        assert group["hits"] == len(group["matches"]) > 20
        for match in group["matches"]:
            keys = list(match)
            assert keys == [k for k in order if k in keys], keys
            assert match["inode"] > 0
        raw = [m for m in group["matches"] if m["path"] == "/tree/links/non-utf8-target"]
        assert raw[0]["linktarget_raw"] == "L3RtcC///g=="  # /tmp/\xff\xfe


def test_human_readable_sizes(env):
    proc = run_restique(env.repos["restique"], "find", "-l", "--human-readable", "-s", env.first["restique"],
                        "random20m.bin", "small.txt", "empty.txt")
    lines = proc.stdout.decode().splitlines()[1:]
    assert [line.split()[3:5] for line in lines] == [["0", "B"], ["20.000", "MiB"], ["15", "B"]]


# --------------------------------------------------------------------------------------------
# --oldest / --newest in restic's time formats (local time; this machine's zone)

TIME_CASES = [
    ["--oldest", "2020-09-13 12:27:05", "*"],
    ["--newest", "13.09.2020 12:27", "*"],
    ["-O", "Sun Sep 13 12:26:50 +0100 CET 2020", "-N", "2020-09-13 12:27:08.5 UTC", "*"],
    ["--oldest", "2020-09-13", "--newest", "13.09.2020 12:26:50 +0000", "*.txt", "nested"],
]


@pytest.mark.parametrize("template", TIME_CASES, ids=" ".join)
def test_time_filters_match_restic(env, template):
    for tool, (expected, got) in _run_all(env, template).items():
        assert expected.returncode == 0, _show(expected)
        assert got.stdout == expected.stdout, tool


# --------------------------------------------------------------------------------------------
# which snapshots

SELECTION_CASES = [
    # (restique's arguments, restic's arguments or None for the same after NEWEST_FIRST, unordered)
    (["-s", "{first}", "*.txt"], ["-s", "{first}", "*.txt"], False),
    (["-s", "{first:.8}", "--snapshot", "{second}", "small.txt"], None, False),  # newest first
    (["-s", "latest", "-s", "{second:.10}", "small.txt"], ["-s", "{second}", "small.txt"], False),
    (["--reverse", "small.txt", "added.txt"], ["-s", "{first}", "-s", "{second}", "small.txt", "added.txt"], False),
    (["--tag", "first", "*.txt"], ["--tag", "first", "*.txt"], False),
    (["--tag", "first,second", "--tag", "nosuchtag", "*"], ["--tag", "first,second", "--tag", "nosuchtag", "*"], False),
    (["--host", "{host}", "--path", "{path}", "small.txt"], ["--host", "{host}", "--path", "{path}", "small.txt"], True),
    (["-H", "nosuchhost", "--tag", "second", "*"], ["-H", "nosuchhost", "--tag", "second", "*"], False),
]


@pytest.mark.parametrize("template,restic_template,unordered", SELECTION_CASES, ids=lambda c: str(c))
def test_snapshot_selection_matches_restic(env, template, restic_template, unordered):
    for tool, (expected, got) in _run_all(env, template, restic_template).items():
        assert got.returncode == 0, _show(got)
        if unordered:
            assert _blocks(got.stdout) == _blocks(expected.stdout), tool
        else:
            assert got.stdout == expected.stdout, tool


# --------------------------------------------------------------------------------------------
# restic objects

OBJECT_CASES = [
    ["--blob", "{i.small}"],
    ["--blob", "{i.hardlink:.8}"],  # two files in each snapshot
    ["--blob", "{i.small:.8}", "{i.hardlink}"],
    ["--tree", "{i.empty}"],  # in both snapshots
    ["--tree", "{i.nested_first:.8}"],  # only in the first
    ["--blob", "--show-pack-id", "{i.small:.8}"],
    ["--tree", "--show-pack-id", "{i.empty}"],
    ["--json", "--blob", "{i.hardlink}"],
    ["--json", "--tree", "{i.empty:.8}"],
    ["--pack", "{i.data_pack}"],
    ["--json", "--pack", "{i.data_pack:.8}"],
    ["--blob", "0000000000000000000000000000000000000000000000000000000000000000"],
    ["--json", "--tree", "00000000"],
]


@pytest.mark.parametrize("template", OBJECT_CASES, ids=" ".join)
def test_objects_match_restic(env, template):
    for tool, (expected, got) in _run_all(env, template).items():
        assert expected.returncode == 0, _show(expected)
        assert got.returncode == 0, _show(got)
        assert got.stdout == expected.stdout, tool
        assert got.stderr == b""


def _records(stdout: bytes):
    """The `Found blob|tree` records of find's object output."""
    return [b"Found " + r for r in stdout.split(b"Found ")[1:]]


def _tree_records(stdout: bytes):
    """(tree id, path, snapshot short id) of each `Found tree` record."""
    out = []
    for record in _records(stdout):
        found, path, snapshot = record.decode(errors="replace").splitlines()[:3]
        assert found.startswith("Found tree ") and path.startswith(" ... path ")
        out.append((found.split()[2], path[len(" ... path "):], snapshot.split()[3]))
    return out


def test_trees_as_current_restic_finds_them(env):
    """Every occurrence of every tree in every snapshot (restic 0.14 stops a snapshot's walk
    once it has seen as many trees as were asked for), the root trees included, and the trees
    of a pack (0.14 looks for them among the data blobs, where they never are)."""
    tool = "restique"
    i = env.ids[tool]
    repo = env.repos[tool]
    roots, several, pack, pack_json = both([
        (run_restique, (repo, "find", "--tree", i.first_root, i.second_root[:8]), {}),
        (run_restique, (repo, "find", "--tree", i.empty, i.nested_first[:5], i.nested_second), {}),
        (run_restique, (repo, "find", "--pack", i.tree_pack), {}),
        (run_restique, (repo, "find", "--json", "--pack", i.tree_pack[:12]), {}),
    ])
    first, second = env.first[tool][:8], env.second[tool][:8]
    assert _tree_records(roots.stdout) == [(i.second_root, "/", second), (i.first_root, "/", first)]
    empty_dir = "/tree/nested/a/b/empty-dir"
    assert _tree_records(several.stdout) == [
        (i.nested_second, "/tree/nested", second), (i.empty, empty_dir, second),
        (i.nested_first, "/tree/nested", first), (i.empty, empty_dir, first)]
    trees_in_pack = {blob_id for kind, blob_id in i.packs[i.tree_pack] if kind == "tree"}
    records = _tree_records(pack.stdout)
    assert records and {tree_id for tree_id, _, _ in records} <= trees_in_pack
    objects = json.loads(pack_json.stdout)
    assert [(o["id"], o["path"], o["snapshot"][:8]) for o in objects] == records
    assert all(list(o) == ["object_type", "id", "path", "snapshot", "time"] and o["object_type"] == "tree"
               for o in objects)


def test_id_prefixes_of_any_length(env):
    """A prefix stands for the objects starting with it, whatever its length (restic 0.14
    only knows 8 digits); --show-pack-id then shows where each of them is (on stderr with
    --json, where restic would break the JSON document with it)."""
    tool = "restic"
    i = env.ids[tool]
    full, short, longer, as_json = both([
        (run_restique, (env.repos[tool], "find", "--blob", "--show-pack-id", i.small), {}),
        (run_restique, (env.repos[tool], "find", "--blob", "--show-pack-id", i.small[:6].upper()), {}),
        (run_restique, (env.repos[tool], "find", "--blob", "--show-pack-id", i.small[:20]), {}),
        (run_restique, (env.repos[tool], "find", "--json", "--blob", "--show-pack-id", i.small[:7]), {}),
    ])
    assert full.stdout == short.stdout == longer.stdout
    where = f"Object belongs to pack {i.data_pack}\n".encode()
    assert where in full.stdout and where in as_json.stderr
    assert {o["id"] for o in json.loads(as_json.stdout)} == {i.small}


# --------------------------------------------------------------------------------------------
# a subtree under two paths, a damaged tree

@pytest.fixture(scope="module")
def repeated(tmp_path_factory):
    """A repository (made by restic) whose tree holds the same subtree twice, at t/x/same and
    t/y/same (hard links, so that even the inodes agree), and in a second snapshot a third
    time at t/z/same. restic 0.14 walks such a subtree once and skips it afterwards when
    nothing in it matched the first time, even where a path pattern would match it."""
    import os

    base = tmp_path_factory.mktemp("repeated")
    for name in ("f1", "f2"):
        (base / "t/x/same").mkdir(parents=True, exist_ok=True)
        (base / "t/x/same" / name).write_text(name)
        # an atime in the future: reading the file for the backup never changes it
        os.utime(base / "t/x/same" / name, ns=(1_900_000_000_000_000_000, 1_600_000_000_000_000_000))
        for other in ("y", "z"):
            (base / "t" / other / "same").mkdir(parents=True, exist_ok=True)
            os.link(base / "t/x/same" / name, base / "t" / other / "same" / name)
    shutil.move(base / "t/z", base / "z-later")
    repo = base / "repo"
    run_restic(repo, "init")
    use_cheap_key(repo)
    run_restic(repo, "backup", "t", cwd=base)
    shutil.move(base / "z-later", base / "t/z")
    run_restic(repo, "backup", "t", cwd=base)
    assert len(set(_same_subtrees(repo).values())) == 1  # one tree, three places
    return SimpleNamespace(repo=repo, root="/t")


def _same_subtrees(path):
    """{path: subtree id} of t/x/same, t/y/same and t/z/same in the latest snapshot."""
    from restique.operations.snapshot_lookup import find_snapshot
    from restique.operations.walker import walk
    from restique.repository.repository import open_repository

    with open_repository(str(path), PASSWORD) as repo:
        _, tree = find_snapshot(repo, "latest")
        found = {path: node.subtree for path, node in walk(repo, tree) if path.endswith("/same")}
    assert len(found) == 3
    return found


@pytest.mark.parametrize("pattern,below", [
    ("y/same/*", ["y/same/f1", "y/same/f2"]),
    ("z/same/*", ["z/same/f1", "z/same/f2"]),
    ("y", ["y", "y/same", "y/same/f1", "y/same/f2"]),
    ("f1", ["x/same/f1", "y/same/f1", "z/same/f1"]),
])
def test_subtree_seen_before_is_still_searched(repeated, pattern, below):
    newest, oldest = both([(run_restique, (repeated.repo, "find", "-q", pattern), {}),
                           (run_restique, (repeated.repo, "find", "-q", "--reverse", pattern), {})])
    expected = {sn: [f"{repeated.root}/{p}" for p in below if sn == "second" or not p.startswith("z")]
                for sn in ("first", "second")}
    assert newest.stdout.decode().splitlines() == expected["second"] + expected["first"]
    assert oldest.stdout.decode().splitlines() == expected["first"] + expected["second"]


@pytest.fixture(scope="module")
def damaged(env, tmp_path_factory):
    """A copy of the restic-made repository in which the tree of /tree/nested of the first
    snapshot (only there) cannot be decrypted."""
    from restique.repository.repository import open_repository

    repo = tmp_path_factory.mktemp("damaged") / "repo"
    shutil.copytree(env.repos["restic"], repo)
    tree_id = env.ids["restic"].nested_first
    with open_repository(str(repo), PASSWORD) as r:
        loc = r.load_index().lookup("tree", tree_id)
    pack = repo / "data" / loc.pack_id[:2] / loc.pack_id
    pack.chmod(0o644)
    with open(pack, "r+b") as f:
        f.seek(loc.offset + 20)
        byte = f.read(1)
        f.seek(loc.offset + 20)
        f.write(bytes([byte[0] ^ 0xFF]))
    return SimpleNamespace(repo=repo, tree_id=tree_id)


@pytest.mark.parametrize("args", [["*.txt"], ["--reverse", "*.txt"], ["--json", "*.txt"],
                                  ["--blob", "{i.hardlink}"]], ids=" ".join)
def test_damaged_tree_is_reported_and_the_rest_searched(env, damaged, args):
    args = _args(env, "restic", args)
    intact, got = both([(run_restique, (env.repos["restic"], "find", *args), {}),
                        (run_restique, (damaged.repo, "--no-cache", "find", *args), {"check": False})])
    assert got.returncode == 1, _show(got)
    assert got.stderr.decode(errors="replace").splitlines() == [
        f"Unable to load tree {damaged.tree_id} at /tree/nested: decrypting blob {damaged.tree_id} failed: "
        "ciphertext verification failed",
        f" ... which belongs to snapshot {env.first['restic']}",
        "Fatal: There were 1 errors"]
    first_block = f"snapshot {env.first['restic'][:8]}".encode()
    if "--json" in args:
        groups = json.loads(intact.stdout)
        for group in groups:
            if group["snapshot"] == env.first["restic"]:
                group["matches"] = [m for m in group["matches"] if not m["path"].startswith("/tree/nested/")]
                group["hits"] = len(group["matches"])
        assert json.loads(got.stdout) == groups
    else:
        blocks = intact.stdout.split(b"\n\n")
        expected = [b"\n".join(line for line in block.split(b"\n") if not line.startswith(b"/tree/nested/"))
                    if first_block in block else block for block in blocks]
        assert got.stdout == b"\n\n".join(expected)
        assert (got.stdout != intact.stdout) == ("--blob" not in args)  # the blob is not below /tree/nested


# --------------------------------------------------------------------------------------------
# bad input

SAME_AS_RESTIC = [
    [],
    ["--oldest", "last week", "x"],
    ["--newest", "2020-02-30", "x"],
    ["--blob", "--tree", "abc"],
    ["--pack", "00000000"],
    ["--blob", "0000000000000000000000000000000000000000000000000000000000000000"],
]


@pytest.mark.parametrize("template", SAME_AS_RESTIC, ids=" ".join)
def test_bad_input_as_restic(env, template):
    expected, got = _run_all(env, template, template, tools=["restic"])["restic"]
    assert (got.returncode, got.stdout, got.stderr) == (expected.returncode, expected.stdout, expected.stderr)


RESTIQUE_ERRORS = [
    # restic 0.14 prints a Go stack trace for a malformed pattern
    (["[", "*.txt"], "Fatal: invalid pattern(s) provided: ["),
    # restic 0.14 searches for these and, of course, finds nothing
    (["--blob", "xyz"], 'Fatal: invalid ID "xyz": an ID or ID prefix is 1 to 64 hexadecimal digits'),
    (["--tree", "0" * 65], f'Fatal: invalid ID "{"0" * 65}": an ID or ID prefix is 1 to 64 hexadecimal digits'),
    # current restic stops here; 0.14 warns and searches nothing
    (["-s", "nosuch", "x"], 'Fatal: no matching ID found for prefix "nosuch"'),
    (["-s", "latest", "--tag", "nosuch", "x"], "Fatal: no snapshot matched given filter (Paths:[] Tags:[[nosuch]] Hosts:[])"),
    (["-s", "latest:/tree", "x"], "Fatal: <snapshot>:<subfolder> syntax not allowed"),
    (["--oldest", "2021-01-01", "--newest", "2020-01-01", "x"], "Fatal: --oldest must specify a time before --newest"),
]


@pytest.mark.parametrize("args,message", RESTIQUE_ERRORS, ids=lambda c: str(c))
def test_bad_input_is_refused(env, args, message):
    proc = run_restique(env.repos["restique"], "--no-lock", "find", *args, check=False)
    assert (proc.returncode, proc.stdout, proc.stderr.decode()) == (1, b"", message + "\n")


# --------------------------------------------------------------------------------------------
# the library call

def test_library_call(env):
    from restique.operations.find import FindOptions, FoundEntry, find
    from restique.operations.find_objects import FoundObject, ObjectPack
    from restique.repository.repository import open_repository

    i = env.ids["restique"]
    first, second = env.first["restique"], env.second["restique"]
    with open_repository(str(env.repos["restique"]), PASSWORD) as repo:
        entries = list(find(repo, FindOptions(patterns=["SMALL.txt"], ignore_case=True)))
        assert all(isinstance(e, FoundEntry) for e in entries)
        assert [(e.snapshot.id, e.path, e.node.name) for e in entries] == [
            (second, "/tree/small.txt", "small.txt"), (first, "/tree/small.txt", "small.txt")]
        found = list(find(repo, FindOptions(patterns=[i.hardlink[:7]], kind="blob", snapshots=[first],
                                            show_pack_id=True)))
    objects, packs = found[:-1], found[-1:]
    assert [(o.kind, o.id, o.path, o.snapshot.id) for o in objects if isinstance(o, FoundObject)] == [
        ("blob", i.hardlink, "/tree/hardlink-1.txt", first), ("blob", i.hardlink, "/tree/hardlink-2.txt", first)]
    assert all(o.parent_tree == objects[0].parent_tree for o in objects)
    assert isinstance(packs[0], ObjectPack) and packs[0].id == i.hardlink
    assert ("data", i.hardlink) in i.packs[packs[0].location.pack_id]


@pytest.mark.parametrize("patterns", [["f1"], ["same"], ["*"], [""], ["y/same/*"], ["/t/x"], ["f*", "same"]],
                         ids=" ".join)
@pytest.mark.parametrize("budget", [0, 3, 32768], ids=lambda b: f"memo{b}")
def test_replayed_subtrees_find_what_a_walk_finds(repeated, monkeypatch, patterns, budget):
    """A subtree met again (at another path, in another snapshot) yields the hits remembered
    from its first walk: the same entries, at its own path, in walk order, as when every
    subtree is walked again (no memory for replays), also when the memory runs out midway."""
    from restique.operations import find as find_module
    from restique.operations.find import FindOptions, find
    from restique.repository.repository import open_repository

    def found():
        with open_repository(str(repeated.repo), PASSWORD) as repo:
            return [(e.snapshot.id, e.path, e.node.name, e.node.inode, e.node.mtime)
                    for e in find(repo, FindOptions(patterns=patterns))]

    monkeypatch.setattr(find_module, "MEMO_ITEMS", 0)
    walked = found()
    monkeypatch.setattr(find_module, "MEMO_ITEMS", budget)
    assert found() == walked
    assert walked
