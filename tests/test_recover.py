"""restique recover, against restic 0.14's recover (the oracle).

1. With every snapshot file deleted, in a repository written by restic and by restique:
   restic and restique, each on its own copy, print the same lines, find the same lost root
   trees and save a snapshot of `/recover` tagged `recovered` whose tree holds one directory
   per root (named by its short id, mode 0755, the root as its subtree); restic's
   check --read-data accepts restique's result and restic can restore from it.
2. A second run finds nothing (`no snapshot to write.`); -v names each root.
3. The library call.
"""
import json
import re
import socket

import pytest

from conftest import PASSWORD, both, run_restic, run_restique
from test_repair_index import copy_repo, maintenance_repos  # noqa: F401

TOOLS = {"restic": run_restic, "restique": run_restique}


def _lose_snapshots(repo):
    roots = set()
    for sn in json.loads(run_restic(repo, "snapshots", "--json", "--no-lock").stdout):
        roots.add(sn["tree"])
        (repo / "snapshots" / sn["id"]).unlink()
    return roots


def _recovered(repo):
    """(snapshot, the nodes of its tree) of the only snapshot in repo."""
    [sn] = json.loads(run_restic(repo, "snapshots", "--json", "--no-lock").stdout)
    tree = json.loads(run_restic(repo, "--no-lock", "cat", "blob", sn["tree"]).stdout)
    return sn, tree["nodes"]


def _normalise(text: bytes):
    return re.sub(r"saved new snapshot [0-9a-f]{8}", "saved new snapshot X",
                  re.sub(r"\[\d+:\d\d\]", "[0:00]", text.decode())).splitlines()


@pytest.mark.parametrize("origin", list(TOOLS))
def test_recover_lost_snapshots_as_restic_does(maintenance_repos, tmp_path, origin):
    repos = {t: copy_repo(maintenance_repos.repos[origin], tmp_path / t) for t in TOOLS}
    roots = [_lose_snapshots(repo) for repo in repos.values()][0]
    runs = dict(zip(TOOLS, both([(TOOLS[t], (repos[t], "recover"), {}) for t in TOOLS])))
    assert _normalise(runs["restique"].stdout) == _normalise(runs["restic"].stdout)
    assert runs["restique"].stderr == runs["restic"].stderr == b""
    assert f"found {len(roots)} unreferenced roots" in runs["restique"].stdout.decode()

    made = {t: _recovered(repos[t]) for t in TOOLS}
    for tool in TOOLS:
        sn, nodes = made[tool]
        assert (sn["paths"], sn["tags"], sn["hostname"]) == (["/recover"], ["recovered"], socket.gethostname())
        assert {n["subtree"] for n in nodes} == roots
        for node in nodes:
            assert (node["name"], node["type"], node["mode"]) == (node["subtree"][:8], "dir", 0o755)
    assert set(made["restique"][0]) == set(made["restic"][0])  # the same snapshot fields
    assert [set(n) for n in made["restique"][1]] == [set(n) for n in made["restic"][1]]

    run_restic(repos["restique"], "check", "--read-data")
    restored = tmp_path / "restored"
    run_restic(repos["restique"], "restore", "latest", "--target", restored)
    names = sorted(p.name for p in restored.iterdir())
    assert names == sorted(r[:8] for r in roots)
    assert (restored / names[0] / "data" / "dir0" / "random.bin").stat().st_size == 150_000

    again = both([(TOOLS[t], (repos[t], "recover"), {}) for t in TOOLS])
    assert _normalise(again[1].stdout) == _normalise(again[0].stdout)
    assert again[1].stdout.decode().endswith("found 0 unreferenced roots\nno snapshot to write.\n")


def test_verbose_quiet_and_library_call(maintenance_repos, tmp_path):
    from restique.model.gotime import GoTime
    from restique.operations.recover import RecoverOptions, recover
    from restique.repository.repository import open_repository

    repo = copy_repo(maintenance_repos.repos["restique"], tmp_path / "repo")
    roots = _lose_snapshots(repo)
    quiet = run_restique(repo, "-q", "recover").stdout.decode()
    assert re.fullmatch(f"\nfound {len(roots)} unreferenced roots\nsaved new snapshot [0-9a-f]{{8}}\n", quiet)
    # without its snapshot, the recovered tree is the only root: it references the others
    first = _recovered(repo)[0]
    (repo / "snapshots" / first["id"]).unlink()
    verbose = run_restique(repo, "-v", "recover").stdout.decode()
    assert re.findall(r"found root tree ([0-9a-f]{8})", verbose) == [first["tree"][:8]]
    second = _recovered(repo)[0]
    options = RecoverOptions(hostname="elsewhere", time=GoTime(1_600_000_000 * 10**9))
    with open_repository(str(repo), PASSWORD) as r:
        r.lock()
        result = recover(r, options)
    assert result.roots == [] and result.snapshot is None
    (repo / "snapshots" / second["id"]).unlink()
    with open_repository(str(repo), PASSWORD) as r:
        r.lock()
        result = recover(r, options)
    assert result.roots == [second["tree"]] and result.snapshot.hostname == "elsewhere"
    sn, nodes = _recovered(repo)
    assert sn["time"] == "2020-09-13T12:26:40Z" and nodes[0]["mtime"] == "2020-09-13T12:26:40Z"


def _damage_a_tree(repo):
    """Flip a byte inside one tree blob that is not a snapshot's root."""
    from restique.repository.repository import open_repository

    with open_repository(str(repo), PASSWORD) as r:
        index = r.load_index()
        roots = {sn["tree"] for sn in json.loads(run_restic(repo, "snapshots", "--json", "--no-lock").stdout)}
        tree_id = next(b for t, b in index.blobs() if t == "tree" and b not in roots)
        loc = index.lookup("tree", tree_id)
    pack = next((repo / "data").glob(f"*/{loc.pack_id}"))
    raw = bytearray(pack.read_bytes())
    raw[loc.offset + 20] ^= 0x01
    pack.write_bytes(bytes(raw))
    return tree_id


def test_unreadable_tree_reported_as_restic_does(maintenance_repos, tmp_path):
    """A tree that does not decode is reported and skipped; its subtrees count as roots."""
    repos = {t: copy_repo(maintenance_repos.repos["restic"], tmp_path / t) for t in TOOLS}
    for repo in repos.values():
        damaged = _damage_a_tree(repo)
        _lose_snapshots(repo)
    # restic's cache would still hold the intact tree
    runs = both([(TOOLS[t], (repos[t], "--no-cache", "recover"), {}) for t in TOOLS])
    assert _normalise(runs[1].stdout) == _normalise(runs[0].stdout)
    assert runs[1].stderr == runs[0].stderr
    assert runs[1].stderr.decode().startswith(f"unable to load tree {damaged[:8]}: ")
