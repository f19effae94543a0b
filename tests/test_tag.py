"""tag: restic 0.14 and restique run the same tag commands on identical copies of the
restic-written and the restique-written browse repositories; their output and the snapshots
they leave must match, and each repository stays valid for restic."""
import json
import shutil
import subprocess
import time

import pytest

from browse_fixtures import browse  # noqa: F401  (session fixture)
from conftest import PASSWORD, both, clean_env, restic_path, run_restic, run_restique

FAST_KDF = (1 << 10, 8, 1)  # scrypt parameters that keep every command's key derivation quick


def fast_copy(source, target):
    """A copy of a repository whose only key has cheap scrypt parameters."""
    from restique.backend.base import FileType
    from restique.repository.keys import create_key
    from restique.repository.repository import open_repository

    shutil.copytree(source, target)
    with open_repository(str(target), PASSWORD) as repo:
        old = repo.list_ids(FileType.KEY)
        create_key(repo.backend, repo.key, PASSWORD, FAST_KDF)
        for key_id in old:
            repo.backend.remove(FileType.KEY, key_id)
    return target


def snapshot_list(repo):
    """Every snapshot as restic 0.14 lists it, without the ids that differ between copies,
    oldest first."""
    snaps = json.loads(run_restic(repo, "--no-lock", "snapshots", "--json").stdout)
    for sn in snaps:
        del sn["id"], sn["short_id"]
    return sorted(snaps, key=lambda sn: (sn["time"], json.dumps(sn)))


def _stored_snapshots(repo):
    """The snapshot files as stored (restic 0.14's cat), with their ids."""
    ids = run_restic(repo, "--no-lock", "list", "snapshots").stdout.decode().split()
    return {sid: json.loads(run_restic(repo, "--no-lock", "cat", "snapshot", sid).stdout) for sid in ids}


@pytest.fixture(scope="module")
def fast_browse(browse, tmp_path_factory):  # noqa: F811
    """The browse repositories with cheap keys (copied once per module)."""
    base = tmp_path_factory.mktemp("tag")
    return {kind: fast_copy(path, base / kind) for kind, path in browse.repos.items()}


@pytest.fixture(params=["restic", "restique"])
def pair(request, browse, fast_browse, tmp_path):  # noqa: F811
    """(copy for restic, copy for restique, first id, second id) of one browse repository."""
    source = fast_browse[request.param]
    return (shutil.copytree(source, tmp_path / "for-restic"), shutil.copytree(source, tmp_path / "for-restique"),
            browse.first[request.param], browse.second[request.param])


def test_tag_commands_match_restic(pair):
    for_restic, for_restique, first, second = pair
    steps = [
        ["tag", "--add", "extra", first[:8]],
        ["tag", "--add", "extra", "--tag", "extra"],  # already there: nothing changes
        ["tag", "--remove", "first", "--tag", "extra"],
        ["tag", "--set", "a,b", "--set", " c ", second[:10]],
        ["tag", "--set", "", "--tag", "a"],  # an empty --set changes nothing
        ["tag", "--add", "x,x,y", "--remove", "b", "--tag", "a"],
        ["tag", "--remove", "a", "--tag", "c"],  # restic moves the last tag into the gap
        ["tag", "--add", "x", "--set", "y"],
        ["tag", "--remove", "x", "--set", "y"],
        ["tag"],
        ["tag", "--add", "z", "deadbeef"],
        ["tag", "--add", "z", "--host", "nohost", "latest"],
        ["tag", "--add", "latest-tag", "latest"],
        ["tag", "--add", "everywhere"],  # no ids, no filter: every snapshot
    ]
    for step in steps:
        ours, theirs = both([(run_restique, (for_restique, *step), {"check": False}),
                             (run_restic, (for_restic, *step), {"check": False})])
        assert (ours.returncode, ours.stdout, ours.stderr) == (theirs.returncode, theirs.stdout, theirs.stderr), step
    mine, restics = snapshot_list(for_restique), snapshot_list(for_restic)
    for sn in mine + restics:  # restic 0.14 drops the fields its struct lacks; restique keeps them
        sn.pop("program_version", None), sn.pop("summary", None)
    assert mine == restics
    assert all(sn["tags"][-1] == "everywhere" for sn in mine)
    originals = {sn["original"] for sn in mine}
    assert originals == {first, second}  # the very first version, kept across every change
    run_restic(for_restique, "check", "--read-data")


def test_tag_keeps_fields_restic_014_lacks(pair):
    _, repo, first, _ = pair
    before = _stored_snapshots(repo)[first]
    run_restique(repo, "tag", "--add", "kept", first)
    after = list(_stored_snapshots(repo).values())
    changed = [sn for sn in after if sn.get("original") == first]
    assert len(changed) == 1 and first not in _stored_snapshots(repo)
    expected = dict(before, tags=before.get("tags", []) + ["kept"], original=first)
    assert changed[0] == expected  # program_version and summary too, as current restic


def test_tag_json_and_verbose(pair):
    _, repo, first, second = pair
    out = run_restique(repo, "--json", "tag", "--add", "j", first, second).stdout.decode().splitlines()
    lines = [json.loads(line) for line in out]
    assert [line["message_type"] for line in lines] == ["changed", "changed", "summary"]
    assert [line["old_snapshot_id"] for line in lines[:2]] == [first, second]
    assert lines[2] == {"message_type": "summary", "changed_snapshots": 2}
    now = set(run_restic(repo, "--no-lock", "list", "snapshots").stdout.decode().split())
    assert now == {line["new_snapshot_id"] for line in lines[:2]}
    verbose = run_restique(repo, "-v", "tag", "--remove", "j", "latest").stdout.decode().splitlines()
    assert verbose[0] == "create exclusive lock for repository"
    assert verbose[1].startswith("old snapshot ID: ") and " -> new snapshot ID: " in verbose[1]
    assert verbose[2] == "modified tags on 1 snapshots"
    assert run_restique(repo, "-q", "tag", "--add", "q").stdout == b""


def test_tag_refuses_while_restic_holds_a_lock(pair):
    """tag removes snapshot files: it needs the exclusive lock, as restic's does."""
    _, repo, first, _ = pair
    holder = subprocess.Popen([restic_path(), "-r", str(repo), "backup", "--stdin"], env=clean_env(),
                              stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 30
        while not any((repo / "locks").iterdir()) and time.time() < deadline:
            time.sleep(0.05)
        result = run_restique(repo, "tag", "--add", "locked", first, check=False)
        assert result.returncode == 11
        assert result.stderr.decode().startswith("Fatal: unable to create lock")
    finally:
        holder.communicate(b"data")
    assert first in _stored_snapshots(repo)


def test_restic_reads_what_restique_tagged_and_back(pair):
    """restic 0.14 retags a snapshot restique retagged (original kept), and the other way."""
    for_restic, repo, first, _ = pair
    run_restique(repo, "tag", "--add", "one", first)
    run_restic(repo, "tag", "--add", "two", "--tag", "one")
    run_restique(repo, "tag", "--remove", "one", "--tag", "two")
    tagged = [sn for sn in snapshot_list(repo) if sn.get("original") == first]
    assert len(tagged) == 1 and "two" in tagged[0]["tags"] and "one" not in tagged[0]["tags"]
    run_restic(repo, "check")
