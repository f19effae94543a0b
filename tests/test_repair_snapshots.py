"""repair snapshots: current restic's command (restic 0.14 has none), checked against its
documented behaviour on damaged repositories (a deleted pack, missing trees, an unreadable
snapshot file); the results are read by restic 0.14 (check --read-data, ls, restore)."""
import os
import shutil

import pytest

from browse_fixtures import browse  # noqa: F401  (session fixture)
from conftest import PASSWORD, run_restic, run_restique
from test_rewrite import SNAPSHOT_LINE, fast_browse, files_in, listing, stored  # noqa: F401
from test_tag import FAST_KDF, fast_copy


def _index(repo):
    from restique.repository.repository import open_repository

    with open_repository(str(repo), PASSWORD) as opened:
        index = opened.load_index()
        return {(blob_type, blob_id): index.lookup(blob_type, blob_id).pack_id
                for blob_type, blob_id in index.blobs()}


@pytest.fixture(scope="module")
def lost_pack(tmp_path_factory):
    """A restic-made repository with two snapshots whose second one's new file lived in a
    pack that is gone (and the index rebuilt by restic, as the documentation asks)."""
    base = tmp_path_factory.mktemp("repair")
    (base / "data" / "a").mkdir(parents=True)
    (base / "data" / "a" / "f1").write_bytes(os.urandom(100_000))
    (base / "data" / "a" / "small").write_bytes(b"small\n")
    repo = base / "made"
    run_restic(repo, "init")
    repo = fast_copy(repo, base / "repo")
    run_restic(repo, "backup", "-q", "data", cwd=base)
    before = _index(repo)
    (base / "data" / "b").mkdir()
    (base / "data" / "b" / "f2").write_bytes(os.urandom(200_000))
    run_restic(repo, "backup", "-q", "data", cwd=base)
    new_data_packs = {pack for (kind, blob), pack in _index(repo).items() if kind == "data" and (kind, blob) not in before}
    (pack,) = new_data_packs
    os.remove(repo / "data" / pack[:2] / pack)
    run_restic(repo, "rebuild-index", "-q")
    return repo


def test_missing_content_is_dropped(lost_pack, tmp_path):
    repo = shutil.copytree(lost_pack, tmp_path / "repo")
    before = stored(repo)
    second = max(before, key=lambda sid: before[sid]["time"])
    dry = run_restique(repo, "repair", "snapshots", "--dry-run").stdout.decode()
    assert set(stored(repo)) == set(before)
    assert blocks(dry) == {sid[:8]: [] for sid in before} | {
        second[:8]: ['  file "/data/b/f2": removed missing content', "would save new snapshot"]}
    assert dry.endswith("\n\nwould modify 1 snapshots\n")
    out = run_restique(repo, "repair", "snapshots").stdout.decode()
    done = blocks(out)[second[:8]]
    assert done[0] == '  file "/data/b/f2": removed missing content' and len(done) == 2
    assert out.endswith("\n\nmodified 1 snapshots\n")
    (new_id,) = set(stored(repo)) - set(before)
    new = stored(repo)[new_id]
    old = before[new["original"]]
    assert new["tags"] == ["repaired"] and new["tree"] != old["tree"]
    entries = listing(repo, new_id)
    assert entries["/data/b/f2"].get("size", 0) == 0
    assert done[1] == f"saved new snapshot {new_id[:8]}"
    assert entries["/data/a/f1"] == listing(repo, new["original"])["/data/a/f1"]
    # with --forget the damaged originals go, and restic finds nothing wrong
    run_restique(repo, "repair", "snapshots", "--forget")
    run_restic(repo, "forget", new["original"])
    run_restic(repo, "check", "--read-data")
    target = tmp_path / "restored"
    run_restic(repo, "restore", new_id[:8], "--target", target)
    assert (target / "data" / "b" / "f2").read_bytes() == b""
    assert (target / "data" / "a" / "small").read_bytes() == b"small\n"


def blocks(text):
    """{short id: the lines after its snapshot line} of repair's output, checking its shape."""
    out = {}
    for block in text.split("\n\n")[:-1]:
        lines = block.strip("\n").split("\n")
        assert SNAPSHOT_LINE.match(lines[0]), lines[0]
        out[lines[0].split()[1]] = lines[1:]
    return out


def _write_broken_snapshots(path):
    """A repository whose first snapshot's `lost` directory has a tree that does not exist,
    and whose second snapshot's root tree does not exist."""
    from restique.model.node import Node, encode_tree
    from restique.model.gotime import GoTime
    from restique.repository.repository import init_repository

    with init_repository(str(path), PASSWORD, kdf_params=FAST_KDF) as repo:
        data_id, _ = repo.save_blob("data", b"content\n")
        t = GoTime.parse("2020-01-01T00:00:00Z")
        nodes = [Node("lost", "dir", mode=0o755 | (1 << 31), mtime=t, atime=t, ctime=t, subtree="ab" * 32),
                 Node("ok.txt", "file", mode=0o644, mtime=t, atime=t, ctime=t, size=8, content=[data_id])]
        tree_id, _ = repo.save_blob("tree", encode_tree(nodes))
        repo.flush()
        for tree, when in ((tree_id, "2020-01-01T00:00:00Z"), ("cd" * 32, "2020-01-02T00:00:00Z")):
            repo.save_json("snapshot", {"time": when, "tree": tree, "paths": ["/x"], "hostname": "h",
                                        "username": "u"})


def test_missing_trees(tmp_path):
    repo = tmp_path / "repo"
    _write_broken_snapshots(repo)
    before = stored(repo)
    first = min(before, key=lambda sid: before[sid]["time"])
    second = max(before, key=lambda sid: before[sid]["time"])
    out = run_restique(repo, "repair", "snapshots", "--forget").stdout.decode()
    assert '  dir "/lost": replaced with empty directory\nsaved new snapshot ' in out
    assert f'  dir "/": not readable\nremoved empty snapshot {second[:8]}\n' in out
    assert f"removed old snapshot {first[:8]}\n" in out and out.endswith("\nmodified 2 snapshots\n")
    (new_id,) = stored(repo)
    assert stored(repo)[new_id]["original"] == first and "tags" not in stored(repo)[new_id]
    entries = listing(repo, new_id)
    assert set(entries) == {"/lost", "/ok.txt"} and entries["/lost"]["type"] == "dir"
    run_restic(repo, "check", "--read-data")


def test_unreadable_snapshot_file(fast_browse, tmp_path):  # noqa: F811
    repo = shutil.copytree(fast_browse["restique"], tmp_path / "repo")
    victim = sorted(stored(repo))[0]
    (repo / "snapshots" / victim).write_bytes(b"not a snapshot")
    refused = run_restique(repo, "--no-cache", "repair", "snapshots", check=False)
    assert refused.returncode == 1 and refused.stdout == b""
    assert refused.stderr.decode().startswith(
        f"Fatal: snapshot file {victim} is unreadable, use `restique repair snapshots --forget {victim}` "
        "to remove it. Original error: ")
    dry = run_restique(repo, "--no-cache", "repair", "snapshots", "--forget", "-n", victim).stdout.decode()
    assert dry == f"would remove unreadable snapshot {victim}\n\nwould modify 1 snapshots\n"
    assert (repo / "snapshots" / victim).exists()
    out = run_restique(repo, "--no-cache", "repair", "snapshots", "--forget", victim).stdout.decode()
    assert out == f"removed unreadable snapshot {victim}\n\nmodified 1 snapshots\n"
    assert not (repo / "snapshots" / victim).exists()
    run_restic(repo, "check")


@pytest.mark.parametrize("kind", ["restic", "restique"])
def test_healthy_snapshots_stay(fast_browse, kind):  # noqa: F811
    """Every kind of entry restique writes encodes back to the same tree, so nothing changes.
    restic 0.14 wrote a non-UTF-8 symlink target as U+FFFD escapes, which no newer encoder
    writes back the same way: those trees are saved again (as current restic's repair does),
    and nothing is removed."""
    repo = fast_browse[kind]
    files = files_in(repo)
    out = run_restique(repo, "repair", "snapshots", "--dry-run").stdout.decode()
    if kind == "restique":
        assert all(lines == [] for lines in blocks(out).values())
        assert out.endswith("\n\nno snapshots would be modified\n")
    else:
        assert all(lines == ["would save new snapshot"] for lines in blocks(out).values())
    assert files_in(repo) == files


def test_repair_command_called_directly(lost_pack, tmp_path, monkeypatch):
    """The click command works on its own, as the repair group loads it."""
    from click.testing import CliRunner

    from restique.cli.cmd_repair_snapshots import snapshots
    from restique.cli.context import GlobalOptions

    repo = shutil.copytree(lost_pack, tmp_path / "repo")
    monkeypatch.setenv("RESTIC_PASSWORD", PASSWORD)
    opts = GlobalOptions(repo=str(repo))
    try:
        result = CliRunner().invoke(snapshots, ["--dry-run"], obj=opts)
    finally:
        opts.close()
    assert result.exit_code == 0, result.output
    assert result.output.endswith("would modify 1 snapshots\n")
