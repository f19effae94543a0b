"""rewrite: current restic's command (restic 0.14 has none), checked against its documented
behaviour; the results are read by restic 0.14 (check --read-data, ls, snapshots)."""
import json
import re
import shutil

import pytest

from browse_fixtures import browse  # noqa: F401  (session fixture)
from conftest import PASSWORD, clean_env, run_restic, run_restique
from test_tag import fast_copy

SNAPSHOT_LINE = re.compile(r"^snapshot ([0-9a-f]{8}) of \[.*\] at \d{4}-\d\d-\d\d \d\d:\d\d:\d\d(\.\d+)? "
                           r"[+-]\d{4} \S+ by .*@.*$")


@pytest.fixture(scope="module")
def fast_browse(browse, tmp_path_factory):  # noqa: F811
    base = tmp_path_factory.mktemp("rewrite")
    return {kind: fast_copy(path, base / kind) for kind, path in browse.repos.items()}


@pytest.fixture(params=["restic", "restique"])
def repo(request, fast_browse, tmp_path):
    return shutil.copytree(fast_browse[request.param], tmp_path / "repo")


def stored(repo):
    """{id: snapshot file as stored} (restic 0.14's cat would drop the fields it lacks)."""
    from restique.repository.repository import open_repository

    with open_repository(str(repo), PASSWORD) as opened:
        return {sid: opened.load_json("snapshot", sid) for sid in opened.list_ids("snapshot")}


def listing(repo, snapshot_id):
    """{path: entry} of a snapshot as restic 0.14's ls --json gives it."""
    lines = run_restic(repo, "--no-lock", "ls", "--json", snapshot_id).stdout.decode().splitlines()
    return {e["path"]: e for e in map(json.loads, lines[1:])}


def files_in(repo):
    return sorted(p.relative_to(repo) for p in repo.rglob("*") if p.is_file())


def test_exclude_removes_entries_and_keeps_the_rest(repo):
    before = stored(repo)
    out = run_restique(repo, "rewrite", "--exclude", "small.txt", "--exclude", "/tree/nested/a/b",
                       "--iexclude", "*.BIN").stdout.decode().splitlines()
    after = stored(repo)
    new_ids = sorted(set(after) - set(before))
    assert set(before) <= set(after) and len(new_ids) == 2
    # current restic's text: a blank line and the snapshot, what was saved, the total
    olds = sorted(before)
    expected_shape = []
    for old in olds:
        expected_shape += ["", f"snapshot {old[:8]}", "saved new snapshot"]
    assert len(out) == len(expected_shape) + 2 and out[-2:] == ["", "modified 2 snapshots"]
    for line, shape in zip(out, expected_shape):
        if shape.startswith("snapshot"):
            assert SNAPSHOT_LINE.match(line) and line.startswith(shape), line
        elif shape:
            assert line.startswith(shape + " ") and line.split()[-1] in {n[:8] for n in new_ids}
        else:
            assert line == ""
    for new_id in new_ids:
        new = after[new_id]
        old = before[new["original"]]
        assert new["tags"] == old.get("tags", []) + ["rewrite"]
        assert {k: v for k, v in new.items() if k not in ("tree", "tags", "original", "summary")} == \
            {k: v for k, v in old.items() if k not in ("tree", "tags", "summary")}
        kept, was = listing(repo, new_id), listing(repo, new["original"])
        gone = {p for p in was if p.endswith("/small.txt") or p.endswith(".bin") or p == "/tree/nested/a/b"
                or p.startswith("/tree/nested/a/b/")}
        assert gone and set(kept) == set(was) - gone
        for path, entry in kept.items():  # everything else exactly as it was
            if entry["type"] != "dir":
                assert entry == was[path], path
        # the summary as current restic writes it: the old one (or a zero one) with the totals
        files = [e for e in kept.values() if e["type"] == "file"]
        summary = new["summary"]
        assert summary["total_files_processed"] == len(files)
        assert summary["total_bytes_processed"] == sum(e.get("size", 0) for e in files)
        if "summary" in old:
            assert {k: v for k, v in summary.items() if not k.startswith("total_")} == \
                {k: v for k, v in old["summary"].items() if not k.startswith("total_")}
        else:
            assert summary["backup_start"] == summary["backup_end"] == "0001-01-01T00:00:00Z"
            assert summary["files_new"] == summary["data_added"] == 0
    run_restic(repo, "check", "--read-data")
    # rewritten again with the same excludes, the new snapshots do not change
    again = run_restique(repo, "rewrite", "--exclude", "small.txt", "--exclude", "/tree/nested/a/b",
                         "--iexclude", "*.BIN", *new_ids).stdout.decode().splitlines()
    assert again[-2:] == ["", "no snapshots were modified"] and set(stored(repo)) == set(after)


def test_dry_run_then_forget(repo):
    before, files = stored(repo), files_in(repo)
    dry = run_restique(repo, "rewrite", "--forget", "-n", "--exclude", "small.txt").stdout.decode().splitlines()
    assert files_in(repo) == files
    assert dry[0] == "create exclusive lock for repository"
    assert dry.count("would save new snapshot") == 2 and dry.count("would remove old snapshot") == 2
    assert dry[-2:] == ["", "would modify 2 snapshots"]
    out = run_restique(repo, "rewrite", "--forget", "--exclude", "small.txt").stdout.decode().splitlines()
    after = stored(repo)
    assert not set(after) & set(before) and len(after) == 2
    removed = [line.split()[-1] for line in out if line.startswith("removed old snapshot ")]
    assert sorted(removed) == sorted(sid[:8] for sid in before)
    for sn in after.values():
        assert sn["original"] in before and "rewrite" not in sn.get("tags", [])  # --forget: no tag
    run_restic(repo, "check", "--read-data")


def test_new_host_and_time_keep_the_tree(repo):
    before = stored(repo)
    env = clean_env(TZ="Europe/Berlin")
    latest = max(before, key=lambda sid: before[sid]["time"])
    out = run_restique(repo, "rewrite", "--new-host", "elsewhere", "--new-time", "1999-01-01 11:11:11",
                       latest, env=env).stdout.decode().splitlines()
    assert out[2:] == ["setting time to 1999-01-01 11:11:11 +0100 CET", "setting host to elsewhere",
                       out[4], "", "modified 1 snapshots"]
    assert re.match(r"^saved new snapshot [0-9a-f]{8}$", out[4])
    (new_id,) = set(stored(repo)) - set(before)
    new, old = stored(repo)[new_id], before[latest]
    assert new["time"] == "1999-01-01T11:11:11+01:00" and new["hostname"] == "elsewhere"
    assert new["tree"] == old["tree"] and new.get("summary") == old.get("summary")  # metadata only
    assert new["original"] == latest and new["tags"] == old.get("tags", []) + ["rewrite"]
    table = run_restic(repo, "--no-lock", "snapshots", new_id[:8], env=env).stdout.decode()
    assert "1999-01-01 11:11:11  elsewhere" in table


def test_include_keeps_only_matches(repo):
    before = stored(repo)
    run_restique(repo, "rewrite", "--include", "small.txt", "--include", "/tree/links")
    for new_id in set(stored(repo)) - set(before):
        kept = set(listing(repo, new_id))
        assert kept == {"/tree", "/tree/small.txt", "/tree/links"} | \
            {p for p in listing(repo, stored(repo)[new_id]["original"]) if p.startswith("/tree/links/")}
    run_restic(repo, "check")


@pytest.mark.parametrize("args, message", [
    ([], "Fatal: Nothing to do: no excludes/includes provided and no new metadata provided"),
    (["--exclude", "a", "--include", "b"], "Fatal: exclude and include patterns are mutually exclusive"),
    (["--new-time", "yesterday"], 'Fatal: error in time option: parsing time "yesterday"'),
    (["--new-host", "h", "deadbeef"], 'Fatal: could not find snapshot: no matching ID found for prefix "deadbeef"'),
    (["--new-host", "h", "--host", "x", "deadbeef"], "Fatal: explicit snapshot ids are given"),
    (["--new-host", "h", "latest:/tree"], "Fatal: latest:/tree: <snapshot>:<subfolder> syntax not allowed"),
    (["--exclude", "[x"], "Fatal: --exclude: invalid pattern"),
])
def test_refusals_change_nothing(fast_browse, args, message):
    repo = fast_browse["restique"]
    files = files_in(repo)
    result = run_restique(repo, "rewrite", *args, check=False)
    assert result.returncode == 1 and result.stdout == b""
    assert result.stderr.decode().startswith(message), result.stderr
    assert files_in(repo) == files


def test_tree_that_would_lose_fields_is_refused_until_repaired(tmp_path):
    """A tree with a field this version does not know: rewrite refuses to re-encode it (as
    current restic does); repair snapshots converts it, and then rewrite works."""
    from restique.model import gojson
    from restique.repository.repository import init_repository
    from test_tag import FAST_KDF

    path = tmp_path / "repo"
    with init_repository(str(path), PASSWORD, kdf_params=FAST_KDF) as repo:
        data_id, _ = repo.save_blob("data", b"content\n")
        node = {"name": "%s", "type": "file", "mode": 420, "mtime": "2020-01-01T00:00:00Z",
                "atime": "2020-01-01T00:00:00Z", "ctime": "2020-01-01T00:00:00Z", "uid": 0, "gid": 0,
                "size": 8, "content": [data_id]}
        nodes = [dict(node, name="drop.txt"), dict(node, name="keep.txt", future_field="x")]
        tree_id, _ = repo.save_blob("tree", gojson.encode({"nodes": nodes}))
        repo.flush()
        repo.save_json("snapshot", {"time": "2020-01-01T00:00:00Z", "tree": tree_id, "paths": ["/x"],
                                    "hostname": "h", "username": "u"})
    refused = run_restique(path, "rewrite", "--exclude", "drop.txt", check=False)
    assert refused.returncode == 1
    assert 'cannot encode tree at "/" without losing information' in refused.stderr.decode()
    run_restique(path, "repair", "snapshots", "--forget")
    run_restique(path, "rewrite", "--exclude", "drop.txt")
    assert any(set(listing(path, sid)) == {"/keep.txt"} for sid in stored(path))
    run_restic(path, "check", "--read-data")
