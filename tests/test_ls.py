"""`restique ls` against the real restic 0.14 on both repositories of the browse fixture (one
made by restic, one by restique): text, -l, directory filters, --json (0.14's fields, then
current restic's schema on its own), snapshot selection, errors; then what only current
restic has (--ncdu, --sort, --reverse, --human-readable, ID:subfolder) against its documented
format, a damaged tree, and the library call.
"""
import json
import os
import re
import shutil
from types import SimpleNamespace

import pytest

from browse_fixtures import browse  # noqa: F401 (the session fixture)
from conftest import PASSWORD, both, restic_and_restique, run_restic, run_restique
from test_snapshots import use_cheap_key

REPOS = ("restic", "restique")
# restic 0.14 ignores linktarget_raw and shows the lossy target; restique shows the bytes
LOSSY_TARGET = " -> /tmp/\ufffd\ufffd".encode()
RAW_TARGET = b" -> /tmp/\xff\xfe"


@pytest.fixture(scope="module")
def ls_env(browse, tmp_path_factory):  # noqa: F811
    """Copies of the browse repositories with a cheap key (the many runs below would
    otherwise spend most of their time deriving keys), plus what the tests look up."""
    base = tmp_path_factory.mktemp("ls")
    repos = {}
    for tool in REPOS:
        repos[tool] = base / tool
        shutil.copytree(browse.repos[tool], repos[tool])
        use_cheap_key(repos[tool])
    snap = json.loads(run_restic(repos["restic"], "snapshots", "--json", "--no-lock").stdout)[0]
    return SimpleNamespace(base=base, repos=repos, first=browse.first, second=browse.second,
                           tree=browse.tree, host=snap["hostname"], path=snap["paths"][0])


def _args(env, tool, template):
    return [a.format(first=env.first[tool], second=env.second[tool], host=env.host, path=env.path)
            for a in template]


def _normalise(stdout: bytes, tool: str) -> bytes:
    return stdout.replace(RAW_TARGET, LOSSY_TARGET) if tool == "restique" else stdout


def _show(proc) -> str:
    return f"exit {proc.returncode}\nstdout:\n{proc.stdout.decode(errors='replace')[-2000:]}\n" \
           f"stderr:\n{proc.stderr.decode(errors='replace')[-2000:]}"


# --------------------------------------------------------------------------------------------
# text output, line for line with restic 0.14

TEXT_CASES = [
    ["ls", "{second}"],
    ["ls", "-l", "{second}"],
    ["ls", "-l", "{first}"],
    ["ls", "latest", "/tree/nested"],
    ["ls", "-l", "latest", "/tree/nested/a/b", "/tree/links/"],
    ["ls", "--recursive", "latest", "/tree/nested", "/tree/sticky"],
    ["ls", "-l", "--recursive", "{first}", "/tree/nested/../links", "//tree/nested/a/b/"],
    ["ls", "latest", "/tree/small.txt", "/tree/nonexistent", "/tree/*.txt"],
    ["ls", "--recursive", "latest", "/"],
    ["ls", "-q", "latest"],
    ["ls", "--tag", "first", "latest"],
    ["ls", "--host", "{host}", "--path", "{path}", "-l", "latest", "/tree/links"],
]


@pytest.mark.parametrize("tool", REPOS)
@pytest.mark.parametrize("template", TEXT_CASES, ids=" ".join)
def test_text_matches_restic(ls_env, tool, template):
    expected, got = restic_and_restique(ls_env.repos[tool], *_args(ls_env, tool, template))
    assert expected.returncode == 0, _show(expected)
    assert got.returncode == 0, _show(got)
    assert _normalise(got.stdout, tool) == expected.stdout
    assert got.stderr == expected.stderr == b""


def test_every_kind_of_entry_in_long_format(ls_env):
    """The modes, owners and link targets that -l shows, named explicitly."""
    out = run_restique(ls_env.repos["restique"], "ls", "-l", "latest").stdout
    lines = {line.rsplit(b" ", 1)[-1] if b" -> " not in line else line.split(b" -> ")[0].rsplit(b" ", 1)[-1]: line
             for line in out.split(b"\n")[1:-1]}
    assert lines[b"/tree/chardev"].startswith(b"Dcrw-r--r-- ")
    assert lines[b"/tree/fifo"].startswith(b"prw-r--r-- ")
    assert lines[b"/tree/setuid.sh"].startswith(b"urwxr-xr-x ")
    assert lines[b"/tree/setgid.sh"].startswith(b"grwxr-x--- ")
    assert lines[b"/tree/sticky"].startswith(b"dtrwxrwxrwx ")
    assert lines[b"/tree/nested/a/other.txt"].startswith(b"-rw-------  4242  4242     14 ")
    assert lines[b"/tree/links/absolute"].endswith(b"/tree/links/absolute -> /etc/passwd")
    assert lines[b"/tree/links/non-utf8-target"].endswith(RAW_TARGET)  # the target's own bytes
    assert b"/tree/caf\xe9.txt" in lines and b"/tree/dir-\xff\xfe/inner.txt" in lines


# --------------------------------------------------------------------------------------------
# --json: restic 0.14's fields, then current restic's schema

NODE_FIELDS_014 = ["name", "type", "path", "uid", "gid", "size", "mode", "permissions", "mtime", "atime",
                   "ctime", "struct_type"]
NODE_FIELDS = ["name", "type", "path", "uid", "gid", "size", "mode", "permissions", "mtime", "atime", "ctime",
               "inode", "message_type", "struct_type"]
SNAPSHOT_FIELDS = ["time", "parent", "tree", "paths", "hostname", "username", "uid", "gid", "excludes", "tags",
                   "original", "program_version", "summary", "id", "short_id", "message_type", "struct_type"]


def _json_lines(proc):
    assert proc.returncode == 0, _show(proc)
    return [json.loads(line) for line in proc.stdout.decode().splitlines()]


def _in_order(keys, order):
    return [k for k in order if k in keys] == list(keys)


@pytest.mark.parametrize("tool", REPOS)
@pytest.mark.parametrize("template", [["ls", "--json", "{second}"],
                                      ["ls", "--json", "--recursive", "{first}", "/tree/nested/a"]], ids=" ".join)
def test_json_matches_restic(ls_env, tool, template):
    expected, got = restic_and_restique(ls_env.repos[tool], *_args(ls_env, tool, template))
    theirs, mine = _json_lines(expected), _json_lines(got)
    assert len(mine) == len(theirs)
    for old, new in zip(theirs, mine):
        assert {k: new[k] for k in old} == old  # every field restic 0.14 prints, same value
        kind = new["struct_type"]
        assert new["message_type"] == kind
        assert _in_order(new, SNAPSHOT_FIELDS if kind == "snapshot" else NODE_FIELDS), list(new)
        assert set(new) - set(old) <= {"message_type", "inode", "program_version", "summary"}
    assert [line["struct_type"] for line in mine] == ["snapshot"] + ["node"] * (len(mine) - 1)
    if tool == "restique":  # current restic's snapshot fields, which 0.14 drops
        assert mine[0]["program_version"].startswith("restique ") and "backup_start" in mine[0]["summary"]


@pytest.fixture(scope="module")
def listing(ls_env):
    """restique's `ls --json latest` of each repository, parsed."""
    return {tool: _json_lines(run_restique(ls_env.repos[tool], "--json", "ls", "latest")) for tool in REPOS}


def test_json_node_fields_of_current_restic(ls_env, listing):
    """inode (omitted when 0), size only for files (also when 0), mode and permissions."""
    lines = listing["restique"]
    nodes = {n["path"]: n for n in lines[1:]}
    for path, node in nodes.items():
        assert ("size" in node) == (node["type"] == "file"), node
        if "\ufffd" not in path:  # the tree on disk is the latest snapshot's
            assert node["inode"] == os.lstat(str(ls_env.tree.parent) + path).st_ino, path
    assert nodes["/tree/sticky"]["permissions"] == "dtrwxrwxrwx"
    assert nodes["/tree/chardev"]["permissions"] == "Dcrw-r--r--"
    assert nodes["/tree/added.txt"]["size"] == 27


# --------------------------------------------------------------------------------------------
# errors and snapshot selection

ERROR_CASES = [
    (["ls"], 1, 1),
    (["ls", "latest", "docs"], 1, 1),
    (["ls", "{second}", "{first}"], 1, 1),
    (["ls", "--bogus", "latest"], 1, 1),
    # restic 0.14 says it ignores the name and exits 0; current restic fails with 1, as we do
    (["ls", "ffffffff"], 0, 1),
    (["ls", "--host", "nope", "--tag", "a,b", "latest"], 0, 1),
]


@pytest.mark.parametrize("template,restic_code,code", ERROR_CASES,
                         ids=lambda v: " ".join(v) if isinstance(v, list) else str(v))
def test_errors_as_restic(ls_env, template, restic_code, code):
    expected, got = restic_and_restique(ls_env.repos["restic"], *_args(ls_env, "restic", template))
    assert (expected.returncode, got.returncode) == (restic_code, code), _show(got)
    assert got.stderr == expected.stderr
    assert got.stdout == expected.stdout == b""


def test_explicit_id_ignores_the_filter(ls_env):
    """The filter only narrows down `latest`. restic 0.14 says so on stderr; current restic
    (and restique) ignore it silently: RESTIC_HOST would make the warning permanent."""
    expected, got = restic_and_restique(ls_env.repos["restic"], "ls", "--host", "nope", ls_env.first["restic"])
    assert got.returncode == expected.returncode == 0
    assert expected.stderr == b"Ignoring filters as there are explicit snapshot ids given\n"
    assert got.stderr == b""
    assert got.stdout == expected.stdout


# --------------------------------------------------------------------------------------------
# ID:subfolder (current restic): the folder's entries, with paths from the folder

SUBFOLDER_CASES = [  # (restic 0.14's arguments, the same listing with ID:tree/nested)
    (["--recursive", "{sid}", "/tree/nested"], ["--recursive", "{sid}:tree/nested"]),
    (["-l", "--recursive", "{sid}", "/tree/nested"], ["-l", "--recursive", "{sid}:tree/nested"]),
    (["-l", "{sid}", "/tree/nested/a"], ["-l", "{sid}:tree/nested", "/a"]),
]


@pytest.mark.parametrize("tool", REPOS)
@pytest.mark.parametrize("old,new", SUBFOLDER_CASES, ids=lambda v: " ".join(v))
def test_subfolder_lists_below_the_folder(ls_env, tool, old, new):
    """`ls ID:tree/nested [dir]` shows what 0.14's `ls ID /tree/nested[dir]` shows below the
    folder, with the folder's path taken off."""
    sid = ls_env.second[tool]
    repo = ls_env.repos[tool]
    expected, got = both([(run_restic, (repo, "--no-lock", "ls", *[a.format(sid=sid) for a in old]), {}),
                          (run_restique, (repo, "--no-lock", "ls", *[a.format(sid=sid) for a in new]), {})])
    header, *theirs = expected.stdout.split(b"\n")[:-1]
    below = [re.sub(rb"(^| )/tree/nested/", rb"\1/", line) for line in theirs if not line.endswith(b"/tree/nested")]
    mine = got.stdout.split(b"\n")
    assert mine[1:-1] == below
    dirs = " ".join(a for a in new if a.startswith("/")).encode()
    assert mine[0] == re.sub(rb"filtered by \[[^]]*\]", b"filtered by [" + dirs + b"]", header)


def test_subfolder_json_shows_the_folder_tree(ls_env):
    repo = ls_env.repos["restic"]
    root = json.loads(run_restic(repo, "cat", "blob", _tree_of(repo, ls_env.second["restic"])).stdout)
    tree_node = next(n for n in root["nodes"] if n["name"] == "tree")
    nested = json.loads(run_restic(repo, "cat", "blob", tree_node["subtree"]).stdout)
    nested_id = next(n for n in nested["nodes"] if n["name"] == "nested")["subtree"]
    lines = _json_lines(run_restique(repo, "--json", "ls", "latest:tree/nested"))
    assert lines[0]["tree"] == nested_id and lines[0]["id"] == ls_env.second["restic"]
    assert [n["path"] for n in lines[1:3]] == ["/a", "/a/b"]


def _tree_of(repo, snapshot_id):
    return json.loads(run_restic(repo, "cat", "snapshot", snapshot_id).stdout)["tree"]


@pytest.mark.parametrize("spec,message", [("latest:tree/missing", "path tree/missing: not found"),
                                          ("latest:tree/small.txt", "path tree/small.txt: not a directory")])
def test_subfolder_errors(ls_env, spec, message):
    got = run_restique(ls_env.repos["restic"], "ls", spec, check=False)
    assert got.returncode == 1 and got.stdout == b""
    assert got.stderr.decode() == f"Fatal: {message}\n"


# --------------------------------------------------------------------------------------------
# --human-readable, --sort, --reverse (current restic)

def test_human_readable_sizes(ls_env):
    from restique.cli.fmt import format_bytes

    expected, got = both([(run_restic, (ls_env.repos["restic"], "ls", "-l", "latest"), {}),
                          (run_restique, (ls_env.repos["restic"], "ls", "-l", "--human-readable", "latest"), {})])
    expected, got = (p.stdout.decode(errors="surrogateescape") for p in (expected, got))
    size = re.compile(r"^(\S+ +\d+ +\d+) +(\d+) ")
    assert got.splitlines() == [size.sub(lambda m: f"{m[1]} {format_bytes(int(m[2]))} ", line)
                                for line in expected.splitlines()]
    assert "-rw-r--r--     0     0 20.000 MiB " in got


def _sort_key(mode):
    from restique.model.gotime import GoTime

    def ext(path):
        name = path.rsplit("/", 1)[-1]
        return name[name.rfind("."):] if "." in name else ""

    keys = {
        "size": lambda n: n.get("size", 0),
        "time": lambda n: GoTime.parse(n["mtime"]).unix_ns,
        "mtime": lambda n: GoTime.parse(n["mtime"]).unix_ns,
        "atime": lambda n: GoTime.parse(n["atime"]).unix_ns,
        "ctime": lambda n: GoTime.parse(n["ctime"]).unix_ns,
        "extension": lambda n: ext(n["path"]),
    }
    return lambda n: (keys[mode](n), n["path"].encode())


@pytest.mark.parametrize("mode", ["size", "time", "atime", "ctime", "extension", "name"])
def test_sort_and_reverse_json(ls_env, listing, mode):
    """Sorted by the mode's key, ties by path; `name` keeps the tree order; --reverse turns
    the result round. The snapshot line stays first."""
    repo = ls_env.repos["restique"]
    tree_order = listing["restique"]
    got, reverse = (_json_lines(p) for p in both([
        (run_restique, (repo, "--json", "ls", "latest", "--sort", mode), {}),
        (run_restique, (repo, "--json", "ls", "latest", "-s", mode, "--reverse"), {})]))
    expected = tree_order[1:] if mode == "name" else sorted(tree_order[1:], key=_sort_key(mode))
    assert got[0] == reverse[0] == tree_order[0]
    assert got[1:] == expected
    assert reverse[1:] == expected[::-1]


def test_sort_text_with_filters(ls_env):
    got = run_restique(ls_env.repos["restic"], "ls", "-l", "--sort", "size", "--reverse", "latest",
                       "/tree/nested", "--recursive").stdout.decode().splitlines()
    assert got[0].startswith("snapshot ") and " filtered by [/tree/nested] at " in got[0]
    # biggest first; directories (size 0) last, ties in reverse path order
    assert [line.split(" ")[-1] for line in got[1:]] == [
        "/tree/nested/a/other.txt", "/tree/nested/a/b/c/deep.txt", "/tree/nested/new-dir/inner.txt",
        "/tree/nested/new-dir", "/tree/nested/a/b/empty-dir", "/tree/nested/a/b/c", "/tree/nested/a/b",
        "/tree/nested/a", "/tree/nested"]


@pytest.mark.parametrize("args,message", [
    (["--sort", "bogus"], 'invalid argument "bogus" for "-s, --sort" flag: invalid sort mode "bogus", '
                          "must be one of (name|size|time=mtime|atime|ctime|extension)"),
    (["--ncdu", "--json"], "Fatal: only either '--json' or '--ncdu' can be specified"),
    (["--ncdu", "--sort", "size"], "Fatal: --sort and --ncdu are mutually exclusive"),
    (["--ncdu", "--reverse"], "Fatal: --reverse and --ncdu are mutually exclusive"),
])
def test_option_conflicts(ls_env, args, message):
    got = run_restique(ls_env.repos["restic"], "ls", "latest", *args, check=False)
    assert (got.returncode, got.stdout, got.stderr.decode()) == (1, b"", message + "\n")


# --------------------------------------------------------------------------------------------
# --ncdu (current restic's export, https://dev.yorhel.nl/ncdu/jsonfmt)

NCDU_FIELDS = ["name", "asize", "dsize", "dev", "ino", "nlink", "notreg", "uid", "gid", "mode", "mtime"]


def _ncdu_entries(items, parent=""):
    """(path, entry) of every entry of an ncdu directory list, depth first."""
    for item in items:
        if isinstance(item, list):
            path = parent + "/" + item[0]["name"]
            yield path, item[0]
            yield from _ncdu_entries(item[1:], path)
        else:
            yield parent + "/" + item["name"], item


@pytest.mark.parametrize("tool", REPOS)
def test_ncdu_export(ls_env, listing, tool):
    from restique.model.gotime import GoTime

    out = run_restique(ls_env.repos[tool], "ls", "--ncdu", "latest").stdout
    major, minor, snapshot, root = json.loads(out)
    assert (major, minor) == (1, 2) and root[0] == {"name": "/"}
    assert snapshot == {k: v for k, v in listing[tool][0].items()
                        if k not in ("id", "short_id", "message_type", "struct_type")}
    entries = list(_ncdu_entries(root[1:]))
    nodes = listing[tool][1:]
    assert [p for p, _ in entries] == [n["path"] for n in nodes]
    for (_, entry), node in zip(entries, nodes):
        assert list(entry) == NCDU_FIELDS
        size = node.get("size", 0)
        assert (entry["asize"], entry["dsize"]) == (size, (size + 511) // 512 * 512)
        assert entry["notreg"] == (node["type"] not in ("dir", "file"))
        assert (entry["uid"], entry["gid"]) == (node["uid"], node["gid"])
        assert entry["ino"] == node.get("inode", 0)
        assert entry["mtime"] == GoTime.parse(node["mtime"]).unix_ns // 10**9
    # totals match the tree
    assert sum(e["asize"] for _, e in entries) == sum(n.get("size", 0) for n in nodes)
    by_path = dict(entries)
    assert by_path["/tree/setuid.sh"]["mode"] == 0o4755 and by_path["/tree/sticky"]["mode"] == 0o1777
    assert by_path["/tree/random20m.bin"]["asize"] == 20 << 20
    # restic's layout: one entry per line, two spaces per level
    assert out.startswith(b'[1, 2, {"time":') and out.endswith(b"\n]\n]\n")
    assert b'\n  [\n    {"name":"tree",' in out


def test_ncdu_with_directory_filter(ls_env):
    """The directories on the way to a filter are in the export (ncdu needs the nesting)."""
    out = run_restique(ls_env.repos["restic"], "ls", "--ncdu", "latest", "/tree/nested/a").stdout
    _, _, _, root = json.loads(out)
    paths = [p for p, _ in _ncdu_entries(root[1:])]
    assert paths == ["/tree", "/tree/nested", "/tree/nested/a", "/tree/nested/a/b", "/tree/nested/a/other.txt"]


# --------------------------------------------------------------------------------------------
# a damaged tree below the root: the rest is listed, the error reported, exit 1

@pytest.fixture(scope="module")
def damaged_repo(ls_env):
    """A copy of the restique repository whose tree blob of /tree/nested (second snapshot)
    is damaged."""
    from restique.operations.snapshot_lookup import find_snapshot
    from restique.repository.repository import open_repository

    repo = ls_env.base / "damaged"
    shutil.copytree(ls_env.repos["restique"], repo)
    with open_repository(str(repo), PASSWORD) as r:
        _, tree_id = find_snapshot(r, "latest:tree/nested")
        loc = r.index.lookup("tree", tree_id)
    pack = repo / "data" / loc.pack_id[:2] / loc.pack_id
    os.chmod(pack, 0o600)
    with open(pack, "r+b") as f:
        f.seek(loc.offset + loc.length // 2)
        byte = f.read(1)
        f.seek(loc.offset + loc.length // 2)
        f.write(bytes([byte[0] ^ 0x40]))
    return repo


def test_damaged_tree_lists_the_rest(ls_env, damaged_repo):
    full = run_restique(ls_env.repos["restique"], "ls", "latest").stdout.split(b"\n")
    got = run_restique(damaged_repo, "--no-cache", "ls", "latest", check=False)
    assert got.returncode == 1
    assert got.stdout.split(b"\n") == [line for line in full if not line.startswith(b"/tree/nested/")]
    err = got.stderr.decode().splitlines()
    assert err[0].startswith("ignoring error for /tree/nested: ") and err[1:] == ["Fatal: There were 1 errors"]


def test_damaged_tree_ncdu_and_json_stay_well_formed(damaged_repo):
    ncdu = run_restique(damaged_repo, "--no-cache", "ls", "--ncdu", "latest", check=False)
    assert ncdu.returncode == 1
    paths = [p for p, _ in _ncdu_entries(json.loads(ncdu.stdout)[3][1:])]
    assert "/tree/nested" in paths and "/tree/sticky/inside.txt" in paths
    assert not any(p.startswith("/tree/nested/") for p in paths)
    lines = run_restique(damaged_repo, "--no-cache", "--json", "ls", "latest", "/tree/nested", check=False)
    assert lines.returncode == 1 and b"ignoring error for /tree/nested: " in lines.stderr
    assert [json.loads(line)["path"] for line in lines.stdout.splitlines()[1:]] == ["/tree/nested"]


# --------------------------------------------------------------------------------------------
# the library call, and the walk underneath it

def test_library_call(ls_env):
    from restique.operations.ls import LEAVE, LISTED, PREFIX, LsOptions, ls, ls_items
    from restique.operations.snapshot_lookup import find_snapshot
    from restique.repository.repository import open_repository

    cli = run_restique(ls_env.repos["restique"], "ls", "latest", "/tree/nested/a").stdout.split(b"\n")[1:-1]
    with open_repository(str(ls_env.repos["restique"]), PASSWORD) as repo:
        _, tree_id = find_snapshot(repo, "latest")
        options = LsOptions(dirs=["/tree/nested/a"])
        assert [os.fsencode(p) for p, _ in ls(repo, tree_id, options)] == cli
        items = list(ls_items(repo, tree_id, LsOptions(dirs=["/tree/links", "/tree/nested/a/b"], recursive=True)))
        everything = list(ls_items(repo, tree_id))
    kinds = {(path, kind) for path, _, kind in items}
    assert ("/tree", PREFIX) in kinds and ("/tree/nested/a/b/c/deep.txt", LISTED) in kinds
    assert ("/tree/sticky", PREFIX) not in kinds and ("/tree/links/absolute", LISTED) in kinds
    for walk in (items, everything):  # every directory shown is left again, properly nested
        stack = []
        for path, node, kind in walk:
            if kind == LEAVE:
                assert stack.pop() == path
            elif node.type == "dir":
                stack.append(path)
        assert stack == []


@pytest.mark.parametrize("tool", REPOS)
def test_names_only_loader_gives_the_same_nodes(ls_env, tool):
    """The lazily decoded entries of a names-only listing equal fully decoded ones."""
    from restique.model.node import LazyNode
    from restique.operations.ls import ls, tree_loader
    from restique.operations.snapshot_lookup import find_snapshot
    from restique.repository.repository import open_repository

    with open_repository(str(ls_env.repos[tool]), PASSWORD) as repo:
        _, tree_id = find_snapshot(repo, "latest")
        lazy = list(ls(repo, tree_id, loader=tree_loader(repo, names_only=True)))
        eager = list(ls(repo, tree_id))
    assert all(isinstance(node, LazyNode) for _, node in lazy)
    assert [p for p, _ in lazy] == [p for p, _ in eager]
    assert [n.to_json() for _, n in lazy] == [n.to_json() for _, n in eager]
    assert [n for _, n in lazy] == [n for _, n in eager]


def test_sort_by_extension_is_gos():
    from restique.model.node import Node
    from restique.operations.ls import sort_entries

    entries = [(p, Node(name=p.rsplit("/", 1)[-1], type="file")) for p in
               ["/b.txt", "/.bashrc", "/a", "/x.tar.gz", "/a.txt", "/d.x/noext"]]
    assert [p for p, _ in sort_entries(entries, "extension")] == \
        ["/a", "/d.x/noext", "/.bashrc", "/x.tar.gz", "/a.txt", "/b.txt"]
