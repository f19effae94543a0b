"""restique repair packs (current restic's command; restic 0.14 has none, so the result is
judged by restic 0.14's check --read-data).

1. A pack with one damaged blob, in a repository written by restic and by restique: every
   other blob moves to a new pack, the damaged pack is copied to the current folder and then
   removed, and restic's check reports exactly the one lost blob, nothing else.
2. A truncated pack: the blobs before the cut are saved. A pack the index does not list is
   salvaged from its own header.
3. Bad input: no IDs, malformed IDs, an unknown pack, an existing backup copy; nothing changes.
"""
import json
import re

import pytest

from conftest import run_restic, run_restique
from test_repair_index import copy_repo, index_entries, maintenance_repos  # noqa: F401

TOOLS = ("restic", "restique")


def _largest_pack(repo):
    return max((repo / "data").glob("*/*"), key=lambda p: p.stat().st_size)


def _blobs_of(repo, pack_id):
    return sorted((e[3], e[2], e[4]) for e in index_entries(repo) if e[0] == pack_id)


def _check_errors(repo):
    """restic check --read-data: (exit code, the missing-blob ids it names, other errors)."""
    result = run_restic(repo, "check", "--read-data", check=False)
    err = result.stderr.decode()
    missing = set(re.findall(r"blob ([0-9a-f]{64}) not found in index", err))
    others = [line for line in err.splitlines()
              if line.strip() and "not found in index" not in line and not line.startswith("error for tree")
              and line != "Fatal: repository contains errors"]
    return result.returncode, missing, others


@pytest.mark.parametrize("origin", TOOLS)
def test_salvages_all_but_the_damaged_blob(maintenance_repos, tmp_path, origin):
    repo = copy_repo(maintenance_repos.repos[origin], tmp_path / "repo")
    pack = _largest_pack(repo)
    blobs = _blobs_of(repo, pack.name)
    assert len(blobs) >= 3
    offset, damaged_blob, _ = blobs[1]
    original = pack.read_bytes()
    raw = bytearray(original)
    raw[offset + 20] ^= 0x01
    pack.write_bytes(bytes(raw))
    workdir = tmp_path / "work"
    workdir.mkdir()

    result = run_restique(repo, "repair", "packs", pack.name, cwd=workdir)
    out, err = result.stdout.decode(), result.stderr.decode()
    assert out.splitlines()[:3] == ["saving backup copies of pack files to current folder",
                                    "salvaging intact data from specified pack files",
                                    "[0:00] 100.00%  1 / 1 pack files"]
    assert "removing salvaged pack files" in out
    assert f"failed to load blob {damaged_blob}: " in err
    assert err.rstrip().endswith("Use `restique repair snapshots --forget` to remove the corrupted data "
                                 "blobs from all snapshots")
    assert (workdir / f"pack-{pack.name}").read_bytes() == bytes(raw)
    assert not pack.exists()
    entries = index_entries(repo)
    assert {e[2] for e in entries} >= {b for _, b, _ in blobs} - {damaged_blob}
    assert damaged_blob not in {e[2] for e in entries}
    assert pack.name not in {e[0] for e in entries}

    code, missing, others = _check_errors(repo)
    assert (code, missing, others) == (1, {damaged_blob}, [])


def test_truncated_and_unindexed_packs(maintenance_repos, tmp_path):
    repo = copy_repo(maintenance_repos.repos["restic"], tmp_path / "repo")
    packs = sorted((repo / "data").glob("*/*"), key=lambda p: p.stat().st_size)
    truncated = packs[-1]
    blobs = _blobs_of(repo, truncated.name)
    cut = blobs[-1][0] + 10  # inside the last blob: the header and the last blob are lost
    truncated.write_bytes(truncated.read_bytes()[:cut])
    before = {e[2] for e in index_entries(repo)}
    unindex_a_pack_named(repo, packs[-2].name)

    result = run_restique(repo, "repair", "packs", truncated.name, packs[-2].name, cwd=tmp_path)
    err = result.stderr.decode()
    assert f"failed to load blob {blobs[-1][1]}: " in err
    after = {e[2] for e in index_entries(repo)}
    # the truncated pack's other blobs are kept, the unindexed pack's are indexed again
    assert after >= before - {blobs[-1][1]}
    code, missing, others = _check_errors(repo)
    assert (code, missing, others) == (1, {blobs[-1][1]}, [])


def unindex_a_pack_named(repo, pack_id):
    from conftest import PASSWORD
    from restique.repository.repository import open_repository

    with open_repository(str(repo), PASSWORD) as r:
        for index_id in r.list_ids("index"):
            index = r.load_index_file(index_id)
            if pack_id in index.packs:
                del index.packs[pack_id]
                r.save_unpacked("index", index.encode())
                r.remove("index", index_id)


def test_bad_input_changes_nothing(maintenance_repos, tmp_path):
    repo = copy_repo(maintenance_repos.repos["restique"], tmp_path / "repo")
    pack = _largest_pack(repo)
    (tmp_path / f"pack-{pack.name}").write_bytes(b"an earlier copy")
    state = sorted(str(p.relative_to(repo)) for p in repo.rglob("*") if "locks" not in p.parts)
    cases = {
        (): "Fatal: no ids specified",
        ("abc",): "Fatal: invalid ID 'abc': invalid length for ID",
        ("z" * 64,): f"Fatal: invalid ID '{'z' * 64}': not a hexadecimal ID",
        ("0" * 64,): f"Fatal: pack {'0' * 64} is neither in the repository nor in its index",
        (pack.name,): f"Fatal: open ./pack-{pack.name}: File exists",
    }
    for args, message in cases.items():
        result = run_restique(repo, "repair", "packs", *args, cwd=tmp_path, check=False)
        assert (result.returncode, result.stderr.decode().strip()) == (1, message)
    assert sorted(str(p.relative_to(repo)) for p in repo.rglob("*") if "locks" not in p.parts) == state
    assert json.loads(run_restic(repo, "snapshots", "--json").stdout)
