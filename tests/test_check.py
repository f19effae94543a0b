"""check: clean repositories pass both programs' check with the same text as restic 0.14;
every kind of damage (missing, truncated or unindexed pack, a flipped byte in a data blob,
a tree, a pack header, an index or a snapshot file, duplicates) is found by restique exactly
when restic finds it, and restique's message names the damaged object. Repositories are
made by restic and by restique; each damage case damages a copy."""
import json
import os
import re
import shutil

import pytest

from conftest import PASSWORD, both, run_restic, run_restique

TOOLS = ("restic", "restique")
FAST_KDF = (1 << 10, 8, 1)  # scrypt parameters that keep every run's key derivation quick


def _write_tree(root, generation: int) -> None:
    (root / "sub" / "deeper").mkdir(parents=True, exist_ok=True)
    (root / "small.txt").write_bytes(b"hello check %d\n" % generation)
    (root / "sub" / "notes.md").write_bytes(b"notes\n" * 50)
    (root / "sub" / "deeper" / f"random-{generation}.bin").write_bytes(os.urandom(300_000))
    (root / "same.bin").write_bytes(b"\x01" * 5000)


def _fast_key(path) -> None:
    """Replace the repository's key by one with cheap scrypt parameters."""
    from restique.backend.base import FileType
    from restique.repository.keys import create_key
    from restique.repository.repository import open_repository

    with open_repository(str(path), PASSWORD) as repo:
        old = repo.list_ids(FileType.KEY)
        create_key(repo.backend, repo.key, PASSWORD, FAST_KDF)
        for key_id in old:
            repo.backend.remove(FileType.KEY, key_id)


@pytest.fixture(scope="module")
def repos(tmp_path_factory):
    """{"restic": path, "restique": path}: two snapshots each, made by that tool."""
    from restique.repository.repository import init_repository

    base = tmp_path_factory.mktemp("check")
    source = base / "data"
    paths = {tool: base / f"repo-{tool}" for tool in TOOLS}
    run_restic(paths["restic"], "init")
    _fast_key(paths["restic"])
    init_repository(str(paths["restique"]), PASSWORD, kdf_params=FAST_KDF).close()
    for generation in (1, 2):
        _write_tree(source, generation)
        both([(run_restic, (paths["restic"], "backup", "-q", "data"), {"cwd": base}),
              (run_restique, (paths["restique"], "backup", "-q", "data"), {"cwd": base})])
    return paths


@pytest.fixture(params=TOOLS)
def damaged(request, repos, tmp_path):
    """A fresh copy of the repository made by the parametrised tool."""
    copy = tmp_path / f"copy-{request.param}"
    shutil.copytree(repos[request.param], copy)
    return copy


def normalise(text: bytes) -> str:
    text = text.decode()
    text = re.sub(r"restic-check-cache-\S+", "restic-check-cache-X", text)
    return re.sub(r"\[\d+:\d\d\]", "[0:00]", text)


def check_both(repo, *args):
    """restic check and restique check side by side (--no-lock: no lock to contend for)."""
    return both([(run_restic, (repo, "--no-lock", "check", *args), {"check": False}),
                 (run_restique, (repo, "--no-lock", "check", *args), {"check": False})])


# --- clean repositories --------------------------------------------------------------------

def test_clean_repository_same_text_as_restic(repos):
    """Both repositories, both programs, the same text; first with the exclusive lock (one
    program after the other), then the read-data variants side by side without locks."""
    for tool in TOOLS:
        restic = run_restic(repos[tool], "check")
        restique = run_restique(repos[tool], "check")
        assert normalise(restique.stdout) == normalise(restic.stdout)
        assert b"create exclusive lock for repository\n" in restique.stdout
        assert restique.stderr == b"" and restic.stderr == b""
    variants = [(repo, args) for repo in repos.values() for args in (("--read-data",), ("--read-data-subset", "1/2"))]
    results = both([(run, (repo, "--no-lock", "check", *args), {}) for repo, args in variants
                    for run in (run_restic, run_restique)])
    for restic, restique in zip(results[::2], results[1::2]):
        assert normalise(restique.stdout) == normalise(restic.stdout)
        assert restique.stderr == b"" and restic.stderr == b""


def test_empty_repository_same_text_as_restic(restic_repo):
    restic, restique = check_both(restic_repo, "--read-data")
    assert restic.returncode == restique.returncode == 0
    assert normalise(restique.stdout) == normalise(restic.stdout)
    assert "[0:00]          0 snapshots\n" in normalise(restique.stdout)


def test_with_cache_prints_no_temporary_cache(repos):
    out = run_restique(repos["restique"], "--no-lock", "check", "--with-cache").stdout.decode()
    assert out.startswith("load indexes\n") and out.endswith("no errors were found\n")


def test_subset_percent_and_size_as_current_restic(repos):
    out = run_restique(repos["restic"], "check", "--read-data-subset", "50%").stdout.decode()
    assert "\nread 50.0% of packfiles\n" in out and "no errors were found" in out
    out = run_restique(repos["restique"], "check", "--read-data-subset", "1k").stdout.decode()
    assert re.search(r"\nread 1024 bytes \(\d+\.\d%\) of data packs\n\[0:00\] 100\.00%  1 / 1 packs\n", out)


def test_subset_errors_as_restic(repos):
    values = ["3/2", "0/2", "1/0", "0%", "101%", "abc", "1/2/3"]
    results = both([(run, (repos["restic"], "--no-lock", "check", "--read-data-subset", value), {"check": False})
                    for value in values for run in (run_restic, run_restique)])
    for value, restic, restique in zip(values, results[::2], results[1::2]):
        assert restique.returncode == restic.returncode == 1, value
        assert restique.stderr == restic.stderr and restique.stdout == b"", value


def test_read_data_and_subset_conflict(repos):
    restic, restique = check_both(repos["restic"], "--read-data", "--read-data-subset", "1/2")
    assert restique.returncode == restic.returncode == 1 and restique.stderr == restic.stderr


def test_json_summary_and_quiet(repos):
    out = run_restique(repos["restique"], "--json", "check").stdout
    assert json.loads(out) == {"message_type": "summary", "num_errors": 0, "broken_packs": None,
                               "suggest_repair_index": False, "suggest_prune": False}
    assert run_restique(repos["restique"], "-q", "check", "--read-data").stdout == b""


def test_snapshot_filter_reads_only_their_packs(repos):
    snaps = json.loads(run_restic(repos["restique"], "--no-lock", "snapshots", "--json").stdout)
    oldest = min(snaps, key=lambda s: s["time"])["id"]
    out = run_restique(repos["restique"], "check", "--read-data", oldest[:8]).stdout.decode()
    assert "[0:00] 100.00%  1 / 1 snapshots" in out and "read all filtered data" in out
    assert "no errors were found" in out


def test_exclusive_lock_and_no_lock(repos, tmp_path):
    from restique.repository.repository import open_repository

    copy = tmp_path / "locked"
    shutil.copytree(repos["restic"], copy)
    with open_repository(str(copy), PASSWORD) as repo:
        repo.lock(exclusive=False)
        restic = run_restic(copy, "check", check=False)
        restique = run_restique(copy, "check", check=False)
        assert restic.returncode != 0 and restique.returncode == 11
        assert b"locked" in restique.stderr and b"Traceback" not in restique.stderr
        assert run_restique(copy, "--no-lock", "check").returncode == 0


# --- damage ---------------------------------------------------------------------------------

def _open(path):
    from restique.repository.repository import open_repository

    repo = open_repository(str(path), PASSWORD)
    repo.load_index()
    return repo


def _pack_file(repo_path, pack_id):
    return repo_path / "data" / pack_id[:2] / pack_id


def _flip(path, offset: int) -> None:
    os.chmod(path, 0o600)
    with open(path, "r+b") as f:
        f.seek(offset)
        byte = f.read(1)
        f.seek(offset)
        f.write(bytes([byte[0] ^ 0xFF]))


def _largest_data_blob(repo):
    blob_id = max((i for t, i in repo.index.blobs() if t == "data"), key=lambda i: repo.index.lookup("data", i).length)
    return blob_id, repo.index.lookup("data", blob_id)


def _root_tree(repo):
    from restique.operations.snapshot_lookup import load_all_snapshots

    tree_id = load_all_snapshots(repo)[0].tree
    return tree_id, repo.index.lookup("tree", tree_id)


def assert_both_fail(results, *names):
    restic, restique = results
    assert restic.returncode == 1, restic.stderr
    assert restique.returncode == 1, restique.stderr
    err = restique.stderr.decode()
    assert err.rstrip().endswith("Fatal: repository contains errors")
    for name in names:
        assert name in err, (name, err)
    return err


def test_missing_pack(damaged):
    with _open(damaged) as repo:
        _, loc = _largest_data_blob(repo)
    os.remove(_pack_file(damaged, loc.pack_id))
    err = assert_both_fail(check_both(damaged), f"pack {loc.pack_id}: does not exist")
    assert f"restic repair packs {loc.pack_id}" in err


def test_truncated_pack(damaged):
    with _open(damaged) as repo:
        _, loc = _largest_data_blob(repo)
    path = _pack_file(damaged, loc.pack_id)
    os.chmod(path, 0o600)
    os.truncate(path, os.path.getsize(path) - 100)
    assert_both_fail(check_both(damaged), f"pack {loc.pack_id}: unexpected file size")
    assert_both_fail(check_both(damaged, "--read-data"), f"pack {loc.pack_id}")


def test_flipped_byte_in_data_blob(damaged):
    with _open(damaged) as repo:
        blob_id, loc = _largest_data_blob(repo)
    _flip(_pack_file(damaged, loc.pack_id), loc.offset + 20)
    restic, restique = check_both(damaged)
    assert restic.returncode == restique.returncode == 0  # the structure is intact
    err = assert_both_fail(check_both(damaged, "--read-data"), f"pack {loc.pack_id} contains",
                           f"blob {blob_id}: decrypting blob <data/{blob_id[:8]}>", "unexpected pack id")
    assert f"restic repair packs {loc.pack_id}" in err


def test_flipped_byte_in_pack_header(damaged):
    with _open(damaged) as repo:
        _, loc = _largest_data_blob(repo)
    path = _pack_file(damaged, loc.pack_id)
    _flip(path, os.path.getsize(path) - 10)
    restic, restique = check_both(damaged)
    assert restic.returncode == restique.returncode == 0
    assert_both_fail(check_both(damaged, "--read-data"), f"pack {loc.pack_id} contains", "unexpected pack id")


def test_flipped_byte_in_tree(damaged):
    with _open(damaged) as repo:
        tree_id, loc = _root_tree(repo)
    _flip(_pack_file(damaged, loc.pack_id), loc.offset + 20)
    err = assert_both_fail(check_both(damaged), f"error for tree {tree_id[:8]}:",
                           f"decrypting blob {tree_id} failed: ciphertext verification failed")
    assert "The repository is damaged and must be repaired" in err


def test_flipped_byte_in_index(damaged):
    index_id = os.listdir(damaged / "index")[0]
    _flip(damaged / "index" / index_id, 40)
    err = assert_both_fail(check_both(damaged), f"error: error loading index {index_id}")
    assert "You must run `restic repair index' to correct this." in err


def test_flipped_byte_in_snapshot(damaged):
    snapshot_id = sorted(os.listdir(damaged / "snapshots"))[0]
    _flip(damaged / "snapshots" / snapshot_id, 40)
    restic, restique = check_both(damaged)
    assert_both_fail((restic, restique), f"snapshot error {snapshot_id}")
    assert b"1 / 1 snapshots" in restique.stdout
    assert f"restic repair snapshots --forget {snapshot_id}" in restique.stderr.decode()


def test_missing_tree_blob_in_index(damaged):
    """A pack removed and its index entries dropped: its blobs are "not found in index"."""
    from restique.repository.index_rewrite import load_index_files, remove_index_files, write_index_files

    with _open(damaged) as repo:
        _, loc = _largest_data_blob(repo)
        files = load_index_files(repo)
        packs = {p: e for f in files.values() for p, e in f.packs.items() if p != loc.pack_id}
        write_index_files(repo, packs, supersedes=list(files))
        remove_index_files(repo, files)
    os.remove(_pack_file(damaged, loc.pack_id))
    assert_both_fail(check_both(damaged), "error for tree", "not found in index")


def test_unindexed_pack_is_a_hint(damaged):
    with _open(damaged) as repo:
        before = set(repo.list_ids("index"))
        repo.index = type(repo.index)()  # a store that knows nothing writes a new pack
        repo.blobs.index = repo.index
        repo.save_blob("data", os.urandom(5000))
        repo.flush()
        for index_id in set(repo.list_ids("index")) - before:
            repo.remove("index", index_id)
    restic, restique = check_both(damaged, "--read-data")
    assert restic.returncode == restique.returncode == 0, restique.stderr
    out = restique.stdout.decode()
    assert "1 additional files were found in the repo, which likely contain duplicate data." in out
    verbose = run_restique(damaged, "-v", "check").stdout.decode()
    assert re.search(r"pack [0-9a-f]{64}: not referenced in any index", verbose)


def test_blob_in_two_packs_and_pack_in_two_indexes(damaged):
    from restique.repository.index_rewrite import load_index_files, write_index_files

    with _open(damaged) as repo:
        files = load_index_files(repo)
        pack_id, entries = next(iter(next(iter(files.values())).packs.items()))
        write_index_files(repo, {pack_id: entries})  # the same pack in a second index file
        repo.index = type(repo.index)()  # and a blob stored again in a new pack
        repo.blobs.index = repo.index
        repo.save_blob("data", b"\x01" * 5000)
        repo.flush()
    restic, restique = check_both(damaged, "--read-data")
    assert restic.returncode == restique.returncode == 0, restique.stderr
    out = restique.stdout.decode()
    assert f"pack {pack_id} contained in several indexes" in out
    assert "Duplicate packs are non-critical, you can run `restic repair index' to correct this." in out
    summary = json.loads(run_restique(damaged, "--json", "check").stdout)
    assert summary["suggest_repair_index"] is True and summary["num_errors"] == 0


def test_json_errors_on_stderr(damaged):
    with _open(damaged) as repo:
        _, loc = _largest_data_blob(repo)
    os.remove(_pack_file(damaged, loc.pack_id))
    proc = run_restique(damaged, "--json", "check", check=False)
    assert proc.returncode == 1
    summary = json.loads(proc.stdout)
    assert summary["broken_packs"] == [loc.pack_id] and summary["num_errors"] >= 1
    lines = [json.loads(line) for line in proc.stderr.decode().splitlines() if line.startswith("{")]
    assert {"message_type": "error", "message": f"pack {loc.pack_id}: does not exist"} in lines
