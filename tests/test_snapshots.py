"""`restique snapshots` against the real restic 0.14: same table, same JSON, same selection."""
import json
import os

import pytest

from conftest import PASSWORD, restic_and_restique, run_restic, run_restique
from restique.model.gotime import GoTime
from restique.model.snapshot import Snapshot, new_summary
from restique.model.snapshot_filter import SnapshotFilter, find_latest
from restique.model.snapshot_group import GroupBy, SnapshotGroupKey, filter_latest_snapshots, group_snapshots
from restique.errors import UsageError

# Keys restic 0.14 does not know; current restic prints them when present.
NEWER_KEYS = {"program_version", "summary"}


def use_cheap_key(repo):
    """Replace the repository's key by one with weak scrypt parameters, so that each of the
    many restic/restique runs below does not spend half a second deriving the key."""
    from restique.backend.base import FileType
    from restique.repository import keys
    from restique.repository.repository import open_repository

    r = open_repository(str(repo), PASSWORD)
    try:
        old = r.key_id
        keys.create_key(r.backend, r.key, PASSWORD, params=(1 << 10, 8, 1))
        r.backend.remove(FileType.KEY, old)
    finally:
        r.close()
    run_restic(repo, "cat", "config")  # restic still opens it


@pytest.fixture(scope="module")
def repo_env(tmp_path_factory):
    """A repository with snapshots of two hosts, several tags, several paths, fixed times."""
    base = tmp_path_factory.mktemp("snapshots")
    data = base / "data"
    for sub, content in (("a/f1", "one"), ("b/f2", "two"), ("c/f3", "three")):
        (data / sub).parent.mkdir(parents=True, exist_ok=True)
        (data / sub).write_text(content)
    a, b, c = (str(data / x) for x in "abc")
    repo = base / "repo"
    run_restic(repo, "init")
    use_cheap_key(repo)
    backups = [
        ("myhost", [], "2020-01-01 10:00:00", [a]),
        ("myhost", ["daily", "work"], "2020-01-02 10:00:00", [b, a]),
        ("laptop", ["photos"], "2020-01-03 10:00:00", [c]),
        ("myhost", ["daily"], "2020-01-04 10:00:00", [a]),
        ("a-rather-long-hostname", ["zeta", "a-rather-long-tag"], "2020-01-05 10:00:00", [a, b]),
        ("myhost", [], "2020-01-06 10:00:00", [str(data / "b" / "f2")]),
        ("myhost", [], "2020-01-07 10:00:00", [a]),
    ]
    for host, tags, when, paths in backups:
        args = ["backup", "-q", "--host", host, "--time", when]
        for t in tags:
            args += ["--tag", t]
        run_restic(repo, *args, *paths)
    return {"repo": repo, "a": a, "b": b, "c": c}


def assert_same_output(repo, *args):
    expected, got = restic_and_restique(repo, *args)
    assert got.returncode == expected.returncode, (args, got.stderr)
    assert got.stdout.decode() == expected.stdout.decode(), args
    assert got.stderr.decode() == expected.stderr.decode(), args
    return got


def json_ids(proc):
    return [sn["id"] for sn in json.loads(proc.stdout)]


# --- JSON ----------------------------------------------------------------------------------

def test_json_matches_restic(repo_env):
    expected, got = restic_and_restique(repo_env["repo"], "--json", "snapshots")
    assert got.returncode == 0, got.stderr
    theirs, ours = json.loads(expected.stdout), json.loads(got.stdout)
    assert len(theirs) == len(ours) == 7
    assert [sn["id"] for sn in ours] == [sn["id"] for sn in theirs]
    for t, o in zip(theirs, ours):
        assert set(o) - set(t) <= NEWER_KEYS
        for key in ("id", "short_id", "time", "tree", "paths", "hostname", "username", "tags", "parent"):
            assert o.get(key) == t.get(key), key
        for key in set(t) & set(o):
            assert o[key] == t[key], key
        # same key order as restic's struct
        assert [k for k in o if k in t] == list(t)
    # one line, like json.Encoder
    assert got.stdout.count(b"\n") == 1 and got.stdout.endswith(b"]\n")


@pytest.mark.parametrize("args", [
    ["--host", "laptop"],
    ["--tag", "daily"],
    ["--tag", "daily,work"],
    ["--tag", "daily", "--tag", "photos"],
    ["--tag", ""],
    ["--latest", "1"],
    ["--latest", "2", "--host", "myhost"],
])
def test_json_filters_select_same_ids(repo_env, args):
    expected, got = restic_and_restique(repo_env["repo"], "snapshots", "--json", *args)
    assert got.returncode == 0, got.stderr
    assert json_ids(got) == json_ids(expected)


def test_json_path_filter(repo_env):
    repo, a, b = repo_env["repo"], repo_env["a"], repo_env["b"]
    for args in (["--path", a], ["--path", a, "--path", b], ["--path", a + "/"]):
        expected, got = restic_and_restique(repo, "snapshots", "--json", *args)
        assert json_ids(got) == json_ids(expected), args


# --- text ----------------------------------------------------------------------------------

def test_table_identical(repo_env):
    got = assert_same_output(repo_env["repo"], "snapshots")
    text = got.stdout.decode()
    assert text.splitlines()[0].split() == ["ID", "Time", "Host", "Tags", "Paths"]
    assert text.endswith("7 snapshots\n")
    assert "daily,work" in text


@pytest.mark.parametrize("args", [
    ["-c"],
    ["-c", "-H", "laptop", "-H", "nosuchhost"],
    ["--tag", "daily", "--tag", "photos"],
    ["--tag", ""],
    ["--latest", "1"],
    ["--latest", "1", "--compact", "--host", "myhost"],
    ["--last"],
    ["--host", "nosuchhost"],
    ["latest"],
    ["latest", "--host", "laptop"],
    ["latest", "--tag", "nosuchtag,x", "--tag", "y", "-H", "h"],
    ["LATEST"],
    ["ffffffffff"],
    ["--group-by", "foo"],
    ["--group-by", ""],
    ["--group-by", "host,tags", "--host", "laptop"],
    ["--latest", "x"],
])
def test_same_output_as_restic(repo_env, args):
    assert_same_output(repo_env["repo"], "snapshots", *args)


def test_path_filters_text(repo_env):
    repo, a = repo_env["repo"], repo_env["a"]
    assert_same_output(repo, "snapshots", "--path", a)
    assert_same_output(repo, "snapshots", "--path", a + "/")  # no normalisation: nothing
    assert_same_output(repo, "snapshots", "latest", "--path", a + "/")  # `latest` cleans paths


def test_id_arguments(repo_env):
    repo = repo_env["repo"]
    ids = sorted(json_ids(run_restique(repo, "--json", "snapshots")))
    # the longest prefix shared by two ids is ambiguous
    prefix = max((os.path.commonprefix([x, y]) for x, y in zip(ids, ids[1:])), key=len)
    assert_same_output(repo, "snapshots", prefix)
    assert_same_output(repo, "snapshots", ids[0][:5], ids[0], "latest", "--host", "laptop")
    assert_same_output(repo, "snapshots", ids[1], "--tag", "daily", "nope")  # filters ignored
    expected, got = restic_and_restique(repo, "snapshots", "--json", ids[2][:8], ids[3])
    assert json_ids(got) == json_ids(expected)


def test_group_by(repo_env):
    repo = repo_env["repo"]
    for group_by in ("paths", "tags", "host,paths,tags"):
        expected, got = restic_and_restique(repo, "snapshots", "--json", "--group-by", group_by)
        assert got.returncode == 0, got.stderr
        ours, theirs = json.loads(got.stdout), json.loads(expected.stdout)
        # restic prints groups in random (Go map) order; restique sorts them
        assert sorted(json.dumps(g) for g in ours) == sorted(json.dumps(g) for g in theirs)
        keys = [SnapshotGroupKey(g["group_key"]["hostname"],
                                 None if g["group_key"]["paths"] is None else tuple(g["group_key"]["paths"]),
                                 None if g["group_key"]["tags"] is None else tuple(g["group_key"]["tags"]))
                for g in ours]
        if not os.environ.get("RESTIQUE_UNDER_TEST"):  # restic's own order is random
            assert keys == sorted(keys, key=SnapshotGroupKey.sort_key)
    # text: the same group blocks, in a different order
    expected, got = restic_and_restique(repo, "snapshots", "--group-by", "host")

    def blocks(text):
        return sorted(("snapshots for" + part) for part in text.decode().split("snapshots for") if part)

    assert blocks(got.stdout) == blocks(expected.stdout)


def test_empty_repository(restic_repo):
    """restic prints nothing at all (not even an empty table), `[]` in JSON."""
    use_cheap_key(restic_repo)
    outputs = {}
    for args in (["snapshots"], ["snapshots", "--json"], ["snapshots", "--json", "-g", "host"],
                 ["snapshots", "latest"]):
        outputs[" ".join(args)] = assert_same_output(restic_repo, *args).stdout
    assert outputs["snapshots"] == b""
    assert outputs["snapshots --json"] == b"[]\n"


# --- the helpers, without a repository -------------------------------------------------------

def _sn(sid, t, host="h", paths=("/p",), tags=None):
    return Snapshot.from_json(sid * 64, {
        "time": t, "tree": "0" * 64, "paths": list(paths), "hostname": host,
        **({"tags": list(tags)} if tags is not None else {}),
    })


def test_tag_semantics():
    sn = _sn("a", "2020-01-01T00:00:00Z", tags=["x", "y"])
    bare = _sn("b", "2020-01-01T00:00:00Z")
    f = SnapshotFilter.from_options(tags=["x,y"])
    assert f.matches(sn) and not f.matches(bare)
    assert not SnapshotFilter.from_options(tags=["x,z"]).matches(sn)
    assert SnapshotFilter.from_options(tags=["z", " y "]).matches(sn)  # OR of lists, trimmed
    only_bare = SnapshotFilter.from_options(tags=[""])
    assert only_bare.matches(bare) and not only_bare.matches(sn)
    assert SnapshotFilter.from_options(tags=["a,b", "c"], hosts=["h1", "h2"], paths=["/x"]).describe() == \
        "Paths:[/x] Tags:[[a, b] [c]] Hosts:[h1 h2]"


def test_find_latest_and_filter_latest():
    s1 = _sn("1", "2020-01-01T00:00:00Z", paths=["/b", "/a"])
    s2 = _sn("2", "2020-01-02T00:00:00Z", paths=["/a", "/b"])
    s3 = _sn("3", "2020-01-03T00:00:00Z", host="other")
    assert find_latest([s1, s2, s3]).id == s3.id
    assert find_latest([s1, s2, s3], SnapshotFilter(hosts=["h"])).id == s2.id
    assert find_latest([s1, s2, s3], SnapshotFilter(paths=["/a/"])).id == s2.id
    assert find_latest([s1], SnapshotFilter(tags=[["t"]])) is None
    assert [sn.id for sn in filter_latest_snapshots([s1, s2, s3], 1)] == [s3.id, s2.id]


def test_grouping():
    s1 = _sn("1", "2020-01-01T00:00:00Z", host="b", paths=["/y", "/x"], tags=["t2", "t1"])
    s2 = _sn("2", "2020-01-02T00:00:00Z", host="a")
    groups, grouped = group_snapshots([s1, s2], "host,tags,paths")
    assert grouped
    assert [k.hostname for k, _ in groups] == ["a", "b"]
    key = groups[1][0]
    assert key.header() == "snapshots for (host [b], tags [t1, t2], paths [/x, /y]):"
    assert key.to_json() == {"hostname": "b", "paths": ["/x", "/y"], "tags": ["t1", "t2"]}
    assert groups[0][0].to_json() == {"hostname": "a", "paths": ["/p"], "tags": None}
    groups, grouped = group_snapshots([s1, s2], "")
    assert not grouped and len(groups) == 1 and groups[0][0].header() is None
    assert str(GroupBy.parse("tags,host")) == "host,tags"
    with pytest.raises(UsageError, match="unknown grouping option: 'foo'"):
        GroupBy.parse("host,foo")


def test_snapshot_json_round_trip():
    raw = {"time": "2021-05-05T12:00:00.120+02:00", "tree": "1" * 64, "paths": ["/a"], "uid": 0,
           "summary": {"files_new": 2, "backup_start": "2021-05-05T12:00:00Z"}, "junk": 1,
           "program_version": "restic 0.17.0", "hostname": "h", "tags": []}
    out = Snapshot.from_json("f" * 64, raw).to_json()
    assert list(out) == ["time", "tree", "paths", "hostname", "program_version", "summary", "id", "short_id"]
    assert out["time"] == "2021-05-05T12:00:00.12+02:00"
    assert out["summary"]["backup_end"] == "0001-01-01T00:00:00Z"
    assert list(out["summary"])[:3] == ["backup_start", "backup_end", "files_new"]
    assert Snapshot.from_json("f" * 64, raw).time.unix_ns == GoTime.parse("2021-05-05T10:00:00.12Z").unix_ns
    with pytest.raises(ValueError):
        Snapshot.from_json("f" * 64, {"time": "2021-05-05T12:00:00Z", "uid": -1})


def test_new_snapshot_json_is_the_file_backup_writes():
    """A Snapshot built for a new backup serializes field for field like the file backup
    writes: restic's struct order, empty fields left out, no id."""
    start, end = GoTime.parse("2024-03-01T10:00:00.5+01:00"), GoTime.parse("2024-03-01T10:00:02+01:00")
    counts = dict(files_new=3, files_changed=0, files_unmodified=1, dirs_new=2, dirs_changed=0,
                  dirs_unmodified=0, data_blobs=3, tree_blobs=2, data_added=120, data_added_packed=90,
                  total_files_processed=4, total_bytes_processed=300)
    sn = Snapshot(time=start, parent="a" * 64, tree="b" * 64, paths=["/x", "/y"], hostname="h",
                  username="u", uid=1000, gid=0, excludes=["*.tmp"], tags=["t"],
                  program_version="restique 0.1.0", summary=new_summary(start, end, **counts))
    expected = {"time": "2024-03-01T10:00:00.5+01:00", "parent": "a" * 64, "tree": "b" * 64,
                "paths": ["/x", "/y"], "hostname": "h", "username": "u", "uid": 1000,
                "excludes": ["*.tmp"], "tags": ["t"], "program_version": "restique 0.1.0",
                "summary": {"backup_start": "2024-03-01T10:00:00.5+01:00",
                            "backup_end": "2024-03-01T10:00:02+01:00", **counts}}
    out = sn.to_json(with_id=False)
    assert out == expected
    assert list(out) == list(expected) and list(out["summary"]) == list(expected["summary"])
    bare = Snapshot(time=start, tree="b" * 64, paths=["/x"], program_version="v").to_json(with_id=False)
    assert list(bare) == ["time", "tree", "paths", "program_version"]
    with pytest.raises(TypeError):
        new_summary(start, end, files_nw=1)


def test_snapshot_string_is_restics():
    sn = Snapshot.from_json("c" * 64, {"time": "2020-01-02T03:04:05.25Z", "tree": "1" * 64,
                                       "paths": ["/a", "/b"], "hostname": "h", "username": "u"})
    text = str(sn)
    assert text.startswith("snapshot cccccccc of [/a /b] at 2020-01-02 03:04:05.25 +0000 ")
    assert text.endswith(" by u@h")
