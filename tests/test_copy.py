"""copy: restique copies snapshots between repositories written by either tool, with restic
0.14's messages; the result passes `restic check --read-data`, lists and restores as the
source does, and each tool recognises the other's copies.

Sources are the two repositories of the browse fixture (read with --no-lock: they are shared
read-only). Destinations get scrypt parameters that keep the many runs quick, except the one
`restic init` makes to show that a repository of restic's own is a destination too.
"""
import json
import os
import random
import re
import shutil

import pytest

from browse_fixtures import browse  # noqa: F401  (the session fixture)
from conftest import PASSWORD, clean_env, run_restic, run_restique

FAST_KDF = (1 << 10, 8, 1)
TOOLS = ("restic", "restique")
RUN = {"restic": run_restic, "restique": run_restique}
FROM_ENV = clean_env(RESTIC_FROM_PASSWORD=PASSWORD)


def fast_repo(path, version=2):
    """A repository made in-process with a cheap key (restique's init, scrypt N=1024)."""
    from restique.repository.repository import init_repository

    init_repository(str(path), PASSWORD, version, kdf_params=FAST_KDF).close()
    return path


def copy(tool, dst, src, *args, check=True):
    return RUN[tool](dst, "copy", "--from-repo", src, "--no-lock", *args, env=FROM_ENV, check=check)


def normalised(output: bytes) -> str:
    """Copy output with the destination's new ids and the elapsed time masked."""
    text = output.decode()
    text = re.sub(r"snapshot [0-9a-f]{8} saved", "snapshot NEW saved", text)
    text = re.sub(r"was already copied to snapshot [0-9a-f]{8}", "was already copied to snapshot OLD", text)
    return re.sub(r"^\[\d+:\d\d\]", "[T]", text, flags=re.M)


def snapshots(repo) -> list:
    return json.loads(run_restic(repo, "snapshots", "--json", "--no-lock").stdout)


def pack_names(repo) -> set:
    return {p.name for p in (repo / "data").rglob("*") if p.is_file()}


@pytest.fixture(scope="module")
def copies(browse, tmp_path_factory):  # noqa: F811
    """For each source tool: the output of restic's copy into one destination and of
    restique's copy into a restic-made and a restique-made destination (snapshots copied
    first, then second: explicit ids fix the order for both tools)."""
    base = tmp_path_factory.mktemp("copies")
    out = {}
    for src_tool in TOOLS:
        src = browse.repos[src_tool]
        ids = [browse.first[src_tool], browse.second[src_tool]]
        dst = {"by-restic": fast_repo(base / f"{src_tool}-by-restic"),
               "into-restic-made": base / f"{src_tool}-into-restic-made",
               "into-restique-made": fast_repo(base / f"{src_tool}-into-restique-made")}
        run_restic(dst["into-restic-made"], "init")
        outputs = {"by-restic": copy("restic", dst["by-restic"], src, *ids).stdout}
        for name in ("into-restic-made", "into-restique-made"):
            outputs[name] = copy("restique", dst[name], src, *ids).stdout
        out[src_tool] = (src, ids, dst, outputs)
    return out


@pytest.mark.parametrize("src_tool", TOOLS)
def test_output_matches_restic(copies, src_tool):
    _, ids, _, outputs = copies[src_tool]
    expected = normalised(outputs["by-restic"])
    assert f"snapshot {ids[0][:8]} of [" in expected and expected.count("copy started") == 2
    assert normalised(outputs["into-restic-made"]) == expected
    assert normalised(outputs["into-restique-made"]) == expected


@pytest.mark.parametrize("src_tool", TOOLS)
@pytest.mark.parametrize("dst_name", ["into-restic-made", "into-restique-made"])
def test_destination_checks_and_matches_the_source(copies, src_tool, dst_name):
    src, ids, dst, _ = copies[src_tool]
    run_restic(dst[dst_name], "check", "--read-data")
    originals = {sn["id"]: sn for sn in snapshots(src)}
    copied = snapshots(dst[dst_name])
    assert sorted(sn["original"] for sn in copied) == sorted(ids)
    for sn in copied:
        source = originals[sn["original"]]
        assert "parent" not in sn
        for key in ("time", "tree", "paths", "hostname", "username", "uid", "gid", "tags", "excludes"):
            assert sn.get(key) == source.get(key), key
    # a listing is the same below the header naming the snapshot
    newest = max(copied, key=lambda sn: sn["time"])
    listings = [run_restic(repo, "ls", "-l", "--no-lock", sid).stdout.split(b"\n", 1)[1]
                for repo, sid in ((src, newest["original"]), (dst[dst_name], newest["id"]))]
    assert listings[0] == listings[1]


def test_restore_from_the_copy_is_the_same(copies, tmp_path):
    src, _, dst, _ = copies["restique"]
    targets = {name: tmp_path / name for name in ("source", "copy")}
    run_restic(src, "restore", "latest", "--no-lock", "--target", targets["source"])
    run_restic(dst["into-restic-made"], "restore", "latest", "--target", targets["copy"])
    listing = {}
    for name, target in targets.items():
        listing[name] = sorted((str(p.relative_to(target)), p.is_file() and not p.is_symlink() and p.read_bytes(),
                                os.lstat(p).st_mode) for p in target.rglob("*"))
    assert listing["source"] == listing["copy"] and len(listing["copy"]) > 10


@pytest.mark.parametrize("src_tool", TOOLS)
def test_second_copy_copies_nothing_and_each_tool_knows_the_others_copies(copies, src_tool, tmp_path):
    src, ids, dst, _ = copies[src_tool]
    for tool, name in (("restique", "into-restique-made"), ("restic", "into-restic-made"),
                       ("restique", "by-restic")):
        repo = shutil.copytree(dst[name], tmp_path / name)
        before = pack_names(repo)
        text = copy(tool, repo, src).stdout.decode()
        assert "copy started" not in text and text.count("skipping source snapshot") == 2, (tool, name, text)
        assert pack_names(repo) == before and len(snapshots(repo)) == 2


def test_filters_and_latest_choose_the_snapshots(browse, tmp_path):  # noqa: F811
    src = browse.repos["restic"]
    dst = fast_repo(tmp_path / "dst")
    text = copy("restique", dst, src, "--tag", "second").stdout.decode()
    assert text.count("copy started") == 1 and browse.second["restic"][:8] in text
    assert copy("restique", dst, src, "--host", "no-such-host").stdout == b""
    text = copy("restique", dst, src, "latest").stdout.decode()
    assert "skipping source snapshot" in text and "copy started" not in text
    assert [sn["original"] for sn in snapshots(dst)] == [browse.second["restic"]]


def test_quiet_prints_nothing_and_json_is_ignored(browse, tmp_path):  # noqa: F811
    dst = fast_repo(tmp_path / "dst")
    assert copy("restique", dst, browse.repos["restic"], "-q", browse.first["restic"]).stdout == b""
    text = copy("restique", dst, browse.repos["restic"], "--json").stdout.decode()  # as restic: text
    assert text.count("skipping source snapshot") == 1 and text.count("copy started") == 1
    assert len(snapshots(dst)) == 2


def test_copy_chunker_params_deduplicates(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    rng = random.Random(7)  # incompressible, and large enough to be cut into several chunks
    for i in range(2):
        (data / f"file{i}").write_bytes(rng.randbytes(3 << 20))
    src = tmp_path / "src"
    run_restic(src, "init")
    run_restic(src, "backup", "-q", data)
    dst = tmp_path / "dst"
    run_restique(dst, "init", "--from-repo", src, "--copy-chunker-params", env=FROM_ENV)
    run_restique(dst, "backup", "-q", data)
    size = sum(p.stat().st_size for p in (dst / "data").rglob("*") if p.is_file())
    copy("restique", dst, src)
    grown = sum(p.stat().st_size for p in (dst / "data").rglob("*") if p.is_file()) - size
    assert 0 < grown < size // 20  # only the tree of the copied snapshot is new
    run_restic(dst, "check", "--read-data")


def test_interrupted_copy_is_completed_by_the_next_run(browse, tmp_path, monkeypatch):  # noqa: F811
    """A run that stops after saving trees (their index written, data missing) leaves the
    destination consistent, and the next run copies the data below those trees."""
    import restique
    from restique.operations import copy as copy_module

    src = browse.repos["restique"]
    dst = fast_repo(tmp_path / "dst")

    def fail(self, pack_id, blobs):
        raise KeyboardInterrupt

    with restique.open_repository(str(src), PASSWORD) as source, \
            restique.open_repository(str(dst), PASSWORD) as destination:
        monkeypatch.setattr(copy_module._BlobCopier, "_copy_pack", fail)
        with pytest.raises(KeyboardInterrupt):
            for _ in copy_module.copy_snapshots(source, destination, copy_module.CopyOptions()):
                pass
        destination.flush()  # as if the trees' index file had been written
    monkeypatch.undo()
    assert snapshots(dst) == [] and pack_names(dst)
    text = copy("restique", dst, src).stdout.decode()
    assert text.count("copy started") == 2
    run_restic(dst, "check", "--read-data")


@pytest.mark.parametrize("args, env_extra, code, message", [
    ((), {}, 1, "Fatal: Please specify a source repository location (--from-repo or --from-repository-file)\n"),
    (("--from-repo", "SRC", "--from-repository-file", "x"), {}, 1,
     "Fatal: Options --from-repo and --from-repository-file are mutually exclusive, please specify only one\n"),
    (("--from-repo", "SRC"), {"RESTIC_FROM_PASSWORD": "wrong"}, 12, "Fatal: wrong password or no key found\n"),
    (("--from-repo", "SRC", "--from-password-file", "/nonexistent/pw"), {}, 1, None),
])
def test_errors(browse, tmp_path, args, env_extra, code, message):  # noqa: F811
    dst = fast_repo(tmp_path / "dst")
    args = [str(browse.repos["restic"]) if a == "SRC" else a for a in args]
    env = clean_env(**env_extra)
    restic, restique = (RUN[tool](dst, "copy", "--no-lock", *args, env=env, check=False) for tool in TOOLS)
    assert restique.returncode == code and restic.returncode != 0
    assert restique.stdout == b""
    if message is None:  # restic 0.14's text for an unreadable password file is its own
        assert restique.stderr.startswith(b"Fatal: ") and restique.stderr.count(b"\n") == 1
    else:
        assert restique.stderr.decode() == message == restic.stderr.decode()


def test_unknown_snapshot_is_ignored_with_a_warning(browse, tmp_path):  # noqa: F811
    src = browse.repos["restic"]
    dst = fast_repo(tmp_path / "dst")
    restic, restique = (copy(tool, shutil.copytree(dst, tmp_path / tool), src, "deadbeef") for tool in TOOLS)
    assert restique.stderr == restic.stderr == b'Ignoring "deadbeef": no matching ID found for prefix "deadbeef"\n'
    assert restique.stdout == restic.stdout == b""


def test_missing_source_and_locked_destination(browse, tmp_path):  # noqa: F811
    dst = fast_repo(tmp_path / "dst")
    missing = run_restique(dst, "copy", "--from-repo", tmp_path / "nothing", env=FROM_ENV, check=False)
    assert missing.returncode == 10 and b"repository does not exist" in missing.stderr
    lock_dir = dst / "locks"
    run_restic(dst, "unlock")
    import restique

    with restique.open_repository(str(dst), PASSWORD) as other:
        other.lock(exclusive=True)
        locked = copy("restique", dst, browse.repos["restic"], check=False)
    assert locked.returncode == 11 and locked.stderr.startswith(b"Fatal: unable to create lock")
    assert not list(lock_dir.iterdir()) and snapshots(dst) == []


def test_format_1_destination_stores_blobs_uncompressed(browse, tmp_path):  # noqa: F811
    """Blobs compressed in the (format 2) source are stored as format 1 needs them."""
    dst = fast_repo(tmp_path / "v1", version=1)
    copy("restique", dst, browse.repos["restique"], browse.second["restique"])
    run_restic(dst, "check", "--read-data")
    for index_file in (dst / "index").iterdir():
        index = json.loads(run_restic(dst, "cat", "index", index_file.name, "--no-lock").stdout)
        assert all("uncompressed_length" not in blob for pack in index["packs"] for blob in pack["blobs"])
    assert [sn["original"] for sn in snapshots(dst)] == [browse.second["restique"]]
