"""`restique stats` against the real restic 0.14 on the browse repositories (one made by
restic, one by restique): every counting mode, text and --json, the snapshot selections,
the errors; the compression figures of current restic (raw-data, format 2) against values
computed here from the repository's index."""
import json
import os
import shutil
import stat

import pytest

from browse_fixtures import browse  # noqa: F401 (the session fixture)
from conftest import PASSWORD, restic_and_restique, run_restic, run_restique

MODES = ["restore-size", "files-by-contents", "raw-data", "blobs-per-file"]
TOOLS = ["restic", "restique"]
COMPRESSION_LABELS = ("Total Uncompressed Size", "Compression Progress", "Compression Ratio",
                      "Compression Space Saving")
COMPRESSION_KEYS = ("total_uncompressed_size", "compression_ratio", "compression_progress",
                    "compression_space_saving")


def _same_output(repo, *args, ignore_compression=False):
    """Run restic 0.14 and restique; the same stdout, stderr (restique adds `Fatal: ` to
    fatal errors) and exit code. With ignore_compression, restique's compression figures
    (which 0.14 lacks) are checked for presence and then left out of the comparison.
    Returns restique's stdout."""
    theirs, ours = restic_and_restique(repo, *args)
    out = ours.stdout.decode()
    expected = theirs.stdout.decode()
    if ignore_compression:
        assert "Total Uncompressed Size" in out or "total_uncompressed_size" in out, out
        out, expected = _without_compression(out), _without_compression(expected)
    assert out == expected, args
    assert ours.stderr.decode().replace("Fatal: ", "") == theirs.stderr.decode(), args
    assert ours.returncode == theirs.returncode, args
    return ours.stdout.decode()


def _without_compression(out: str) -> str:
    if out.startswith("{"):
        obj = json.loads(out)
        return json.dumps({k: v for k, v in obj.items() if k not in COMPRESSION_KEYS})
    lines = [line.strip() for line in out.splitlines()]
    return "\n".join(line for line in lines if not line.startswith(COMPRESSION_LABELS))


def _use_cheap_key(path):
    """Replace the repository's key by one that is cheap to derive: the tests below run
    both programs many times (and restique's own keys cost more than restic's)."""
    from restique.backend.base import FileType
    from restique.repository import keys
    from restique.repository.repository import open_repository

    repo = open_repository(str(path), PASSWORD)
    try:
        old = repo.key_id
        keys.create_key(repo.backend, repo.key, PASSWORD, params=(1 << 10, 8, 1))
        repo.backend.remove(FileType.KEY, old)
    finally:
        repo.close()


@pytest.fixture(scope="module")
def repos(browse, tmp_path_factory):
    """Copies of the browse repositories, with cheap keys."""
    base = tmp_path_factory.mktemp("stats")
    out = {}
    for tool in TOOLS:
        out[tool] = base / f"repo-{tool}"
        shutil.copytree(browse.repos[tool], out[tool])
        _use_cheap_key(out[tool])
    return out


def _snapshot(repos, tool, tag):
    return json.loads(run_restic(repos[tool], "snapshots", "--json", "--tag", tag).stdout)[0]


@pytest.mark.parametrize("tool", TOOLS)
@pytest.mark.parametrize("mode", MODES)
def test_all_snapshots_text(repos, tool, mode):
    _same_output(repos[tool], "stats", "--mode", mode, ignore_compression=mode == "raw-data")


@pytest.mark.parametrize("tool", TOOLS)
@pytest.mark.parametrize("mode", MODES)
def test_one_snapshot_and_latest_json(repos, browse, tool, mode):
    repo = repos[tool]
    raw = mode == "raw-data"
    for selection in ([browse.first[tool][:8]], ["latest"], [browse.first[tool], browse.second[tool]]):
        _same_output(repo, "--json", "stats", "--mode", mode, *selection, ignore_compression=raw)


@pytest.mark.parametrize("tool", TOOLS)
def test_default_mode_by_filters(repos, browse, tool):
    """--host, --tag and --path choose the snapshots; `latest` honours them; explicit ids
    make restic ignore them (with a warning)."""
    repo = repos[tool]
    first = _snapshot(repos, tool, "first")
    for args in (["--host", first["hostname"]], ["--tag", "first"], ["--tag", "second", "--json"],
                 ["--path", first["paths"][0], "--json"], ["--tag", "first", "latest"],
                 ["--tag", "first", browse.second[tool][:8]], ["--host", "no-such-host"],
                 ["--host", "no-such-host", "latest"]):
        _same_output(repo, "stats", *args)


def test_errors(repos, browse):
    repo = repos["restic"]
    _same_output(repo, "stats", "ffffffff")  # a warning, zero totals, exit 0
    _same_output(repo, "stats", "--json", "ffffffff", browse.first["restic"][:8])
    out = _same_output(repo, "stats", "--mode", "foo")
    assert out == ""
    theirs, ours = restic_and_restique(repo.parent / "no-repo-here", "stats", "--mode", "foo")
    assert ours.stderr == theirs.stderr == b"unknown counting mode: foo (use the -h flag to get a list of supported modes)\n"
    assert ours.returncode == theirs.returncode == 1


def _index_blobs(repo):
    """(type, id) -> (length, uncompressed_length) from every index file, read by restic."""
    blobs = {}
    for index_id in run_restic(repo, "list", "index").stdout.decode().split():
        index = json.loads(run_restic(repo, "cat", "index", index_id).stdout)
        for pack in index["packs"]:
            for blob in pack["blobs"]:
                blobs.setdefault((blob["type"], blob["id"]), (blob["length"], blob.get("uncompressed_length", 0)))
    listed = {tuple(line.split()) for line in run_restic(repo, "list", "blobs").stdout.decode().splitlines()}
    assert listed == set(blobs)
    return blobs


def _bytes(n):
    for shift, unit in ((30, "GiB"), (20, "MiB"), (10, "KiB")):
        if n >= 1 << shift:
            return "%.3f %s" % (n / (1 << shift), unit)
    return f"{n} B"


@pytest.mark.parametrize("tool", TOOLS)
def test_raw_data_compression_figures(repos, tool):
    """Format 2: the uncompressed size (plaintext plus 32 bytes of encryption for compressed
    blobs, the stored length for the others), the ratio of the compressed blobs, the share
    of compressed data and the overall saving, computed from the index. Both snapshots
    together reference every blob of the repository."""
    repo = repos[tool]
    blobs = _index_blobs(repo)
    stored = sum(length for length, _ in blobs.values())
    compressed = [(length, ulen + 32) for length, ulen in blobs.values() if ulen]
    uncompressed = stored - sum(c for c, _ in compressed) + sum(u for _, u in compressed)
    ratio = sum(u for _, u in compressed) / sum(c for c, _ in compressed)
    progress = sum(u for _, u in compressed) / uncompressed * 100
    saving = (1 - stored / uncompressed) * 100

    got = json.loads(run_restique(repo, "--json", "stats", "--mode", "raw-data").stdout)
    assert list(got) == ["total_size", *COMPRESSION_KEYS, "total_file_count", "total_blob_count",
                         "snapshots_count"]
    assert (got["total_size"], got["total_blob_count"], got["total_file_count"]) == (stored, len(blobs), 0)
    assert got["total_uncompressed_size"] == uncompressed
    assert got["compression_ratio"] == pytest.approx(ratio, rel=1e-12)
    assert got["compression_progress"] == pytest.approx(progress, rel=1e-12)
    assert got["compression_space_saving"] == pytest.approx(saving, rel=1e-12)

    text = run_restique(repo, "stats", "--mode", "raw-data").stdout.decode()
    assert text == (
        "scanning...\n"
        "Stats in raw-data mode:\n"
        "     Snapshots processed:   2\n"
        f"        Total Blob Count:   {len(blobs)}\n"
        f" Total Uncompressed Size:   {_bytes(uncompressed)}\n"
        f"              Total Size:   {_bytes(stored)}\n"
        f"    Compression Progress:   {progress:.2f}%\n"
        f"       Compression Ratio:   {ratio:.2f}x\n"
        f"Compression Space Saving:   {saving:.2f}%\n"
    )


@pytest.mark.parametrize("tool", TOOLS)
def test_restore_size_counts_hard_links_once(repos, browse, tool):
    """The second snapshot is the tree as it is now: every entry below the snapshot root
    (`tree` and all it holds), and the sizes of its regular files, each inode once."""
    count, size, regular, inodes = 1, 0, 0, set()
    for top, dirs, files in os.walk(os.fsencode(browse.tree)):
        count += len(dirs) + len(files)
        for name in files:
            st = os.lstat(os.path.join(top, name))
            if stat.S_ISREG(st.st_mode):
                regular += 1
                if (st.st_dev, st.st_ino) not in inodes:
                    inodes.add((st.st_dev, st.st_ino))
                    size += st.st_size
    assert regular > len(inodes)  # there are hard links
    got = json.loads(run_restique(repos[tool], "--json", "stats", browse.second[tool]).stdout)
    assert got == {"total_size": size, "total_file_count": count, "snapshots_count": 1}


@pytest.fixture(scope="module")
def format1_repo(browse, tmp_path_factory):
    """A format 1 repository (no compression) holding the browse tree, made by restic."""
    repo = tmp_path_factory.mktemp("stats-v1") / "repo"
    run_restic(repo, "init", "--repository-version", "1")
    _use_cheap_key(repo)
    run_restic(repo, "backup", "-q", "tree", cwd=browse.base)
    return repo


@pytest.mark.parametrize("mode", MODES)
def test_format1_repository(format1_repo, mode):
    """No compression figures: restic 0.14's output exactly, raw-data included."""
    _same_output(format1_repo, "stats", "--mode", mode)
    out = _same_output(format1_repo, "--json", "stats", "--mode", mode)
    assert not set(COMPRESSION_KEYS) & set(json.loads(out))


def test_damaged_tree(repos, browse, tmp_path):
    """A tree blob that fails its MAC ends the command with restic's message, exit 1."""
    repo = tmp_path / "repo"
    shutil.copytree(repos["restic"], repo)
    root = json.loads(run_restic(repo, "cat", "snapshot", browse.first["restic"]).stdout)["tree"]
    for index_id in run_restic(repo, "list", "index").stdout.decode().split():
        for pack in json.loads(run_restic(repo, "cat", "index", index_id).stdout)["packs"]:
            for blob in pack["blobs"]:
                if blob["id"] == root:
                    path = repo / "data" / pack["id"][:2] / pack["id"]
                    os.chmod(path, 0o644)
                    with open(path, "r+b") as f:
                        f.seek(blob["offset"] + blob["length"] // 2)
                        f.write(b"\0\1\2\3")
    for mode in MODES:
        theirs, ours = restic_and_restique(repo, "--no-cache", "stats", "--mode", mode, browse.first["restic"])
        assert theirs.returncode == ours.returncode == 1
        assert ours.stderr.decode() == "Fatal: " + theirs.stderr.decode()
        assert "ciphertext verification failed" in ours.stderr.decode()


def test_library_call(repos):
    """A Python program gets the same totals as restic's JSON."""
    import restique
    from restique.operations.stats import StatsOptions, stats

    expected = json.loads(run_restic(repos["restique"], "--json", "stats", "--mode", "blobs-per-file").stdout)
    with restique.open_repository(str(repos["restique"]), password=PASSWORD) as repo:
        got = stats(repo, StatsOptions(mode="blobs-per-file"))
    assert got.to_json() == expected
    assert got.snapshots_count == 2 and got.mode == "blobs-per-file"


@pytest.mark.parametrize("value, text", [(100.0, "100"), (2.48045891010325, "2.48045891010325"),
                                         (1e-05, "0.00001"), (1e-07, "1e-7"), (-2.5e-09, "-2.5e-9"),
                                         (1e20, "100000000000000000000"), (1e21, "1e+21"), (0.0, "0")])
def test_json_floats_as_go_writes_them(value, text):
    from restique.model.gojson import float_literal

    assert float_literal(value) == text


@pytest.mark.parametrize("tool", TOOLS)
def test_restore_size_scanned_summaries_equal_the_walk(repos, tool):
    """restore-size sums trees from the native scan of their bytes, children before parents;
    every tree's summary (entries, sizes, hard links in walk order) is the walk's, which
    stays the path for trees the scanner declines."""
    import restique
    from restique.operations.stats import Stats, _RestoreSize

    with restique.open_repository(str(repos[tool]), password=PASSWORD) as repo:
        repo.load_index()
        roots = [repo.load_json("snapshot", sid)["tree"] for sid in sorted(repo.list_ids("snapshot"))]
        scanned, walked = _RestoreSize(repo, Stats("restore-size")), _RestoreSize(repo, Stats("restore-size"))
        for root in roots:
            assert scanned._summarise_scanned(root) is not None
            walked._summarise(root)
        assert scanned.summaries.keys() == walked.summaries.keys()
        for tree_id, summary in walked.summaries.items():
            mine = scanned.summaries[tree_id]
            assert (mine.count, mine.size, mine.hardlinks) == (summary.count, summary.size, summary.hardlinks)
        assert any(summary.hardlinks for summary in walked.summaries.values())
