"""prune: the same plan, statistics and text as restic 0.14 (every flag, dry run and real run),
current restic's --json summary and --repack-smaller-than; restique's result passes `restic
check --read-data` and keeps every blob of every snapshot, restic's prune of a restique
repository reads back in restique; damaged repositories are refused (or repaired) as current
restic does, without deleting anything in use. Repositories get a cheap key so that the many
runs stay quick; each test that changes one works on a copy."""
import hashlib
import json
import os
import re
import shutil

import pytest

from conftest import PASSWORD, both, run_restic, run_restique

FAST_KDF = (1 << 10, 8, 1)  # scrypt parameters that keep every run's key derivation quick
GENERATIONS = 12


def fast_key(path) -> None:
    """Replace a restic-made repository's key by one with cheap scrypt parameters."""
    from restique.backend.base import FileType
    from restique.repository.keys import create_key
    from restique.repository.repository import open_repository

    with open_repository(str(path), PASSWORD) as repo:
        old = repo.list_ids(FileType.KEY)
        create_key(repo.backend, repo.key, PASSWORD, FAST_KDF)
        for key_id in old:
            repo.backend.remove(FileType.KEY, key_id)


def write_generation(root, g: int) -> None:
    """A big file per generation (the last four kept), small files that stay, one that changes."""
    root.mkdir(exist_ok=True)
    (root / f"big-{g}.bin").write_bytes(os.urandom(700_000))
    old = root / f"big-{g - 4}.bin"
    if old.exists():
        old.unlink()
    (root / "notes.txt").write_bytes(b"generation %d\n" % g * 40)
    sub = root / f"sub-{g % 3}"
    sub.mkdir(exist_ok=True)
    for i in range(3):
        (sub / f"small-{g}-{i}.dat").write_bytes(os.urandom(2000 + 500 * i))


def snapshot_contents(repo_path) -> dict:
    """{snapshot id: digest of every path and file content}, read by restique: every blob
    every snapshot uses is loaded and checked against its id."""
    from restique.operations.snapshot_lookup import load_all_snapshots
    from restique.operations.walker import walk
    from restique.repository.repository import open_repository

    out = {}
    with open_repository(str(repo_path), PASSWORD) as repo:
        repo.load_index()
        for sn in load_all_snapshots(repo):
            digest = hashlib.sha256()
            for path, node in walk(repo, sn.tree):
                digest.update(path.encode("utf-8", "surrogateescape") + b"\0")
                for blob_id in node.content or ():
                    digest.update(repo.load_blob("data", blob_id))
            out[sn.id] = digest.hexdigest()
    return out


def make_repository(base, name, maker, *init_args):
    """A repository with GENERATIONS snapshots of a changing folder, the newest 3 kept."""
    repo, data = base / name, base / f"data-{name}"
    if maker == "restique":
        from restique.repository.repository import init_repository

        init_repository(str(repo), PASSWORD, kdf_params=FAST_KDF).close()
    else:
        run_restic(repo, "init", *init_args)
        fast_key(repo)
    run = run_restic if maker == "restic" else run_restique
    for g in range(1, GENERATIONS + 1):
        write_generation(data, g)
        run(repo, "backup", "-q", data.name, cwd=base)
    run_restic(repo, "forget", "-q", "--keep-last", "3")
    return repo


@pytest.fixture(scope="module")
def repos(tmp_path_factory):
    """{"restic": path, "restique": path, "v1": path}: made by restic (format 2), by
    restique and by restic in format 1, each after `forget --keep-last 3`; read-only."""
    base = tmp_path_factory.mktemp("prune")
    made = both([(make_repository, (base, "restic", "restic"), {}),
                 (make_repository, (base, "restique", "restique"), {}),
                 (make_repository, (base, "v1", "restic", "--repository-version", "1"), {})])
    return dict(zip(("restic", "restique", "v1"), made))


def copy(repo, tmp_path, name="copy"):
    target = tmp_path / name
    shutil.copytree(repo, target)
    return target


def normalise(text: bytes) -> str:
    return re.sub(r"\[\d+:\d\d\]", "[0:00]", text.decode())


def files(repo) -> set:
    return {os.path.relpath(os.path.join(d, f), repo) for d, _, names in os.walk(repo) for f in names
            if not d.endswith("locks")}


# --- the same text as restic 0.14 ------------------------------------------------------------

DRY_RUN_VARIANTS = [(), ("-v",), ("--max-unused", "0", "-v"), ("--max-unused", "unlimited", "-v"),
                    ("--max-unused", "50%", "-v"), ("--max-unused", "10k"), ("--max-repack-size", "1K", "-v"),
                    ("--repack-small", "-v"), ("--repack-cacheable-only", "-v"), ("--repack-uncompressed",),
                    ("-q",)]


def test_dry_run_same_text_as_restic(repos):
    before = files(repos["restic"])
    for args in DRY_RUN_VARIANTS:
        # restique takes no lock for a dry run, so the two may run side by side
        restic, restique = both([(run_restic, (repos["restic"], "prune", "--dry-run", *args), {}),
                                 (run_restique, (repos["restic"], "prune", "--dry-run", *args), {})])
        assert normalise(restique.stdout) == normalise(restic.stdout), args
        assert restique.stderr == restic.stderr == b""
    assert files(repos["restic"]) == before


@pytest.mark.parametrize("maker", ["restic", "restique", "v1"])
def test_prune_same_text_as_restic_and_keeps_every_snapshot(repos, tmp_path, maker):
    expected = snapshot_contents(repos[maker])
    by_restic, by_restique = copy(repos[maker], tmp_path, "a"), copy(repos[maker], tmp_path, "b")
    restic, restique = both([(run_restic, (by_restic, "prune"), {}), (run_restique, (by_restique, "prune"), {})])
    assert normalise(restique.stdout) == normalise(restic.stdout)
    assert "repacking packs" in restique.stdout.decode() and restique.stderr == b""
    assert b"no errors were found" in run_restic(by_restique, "check", "--read-data").stdout
    assert snapshot_contents(by_restique) == snapshot_contents(by_restic) == expected
    assert sorted(os.listdir(by_restique / "data")) == sorted(os.listdir(by_restic / "data"))
    # nothing is left to do, for either program
    again = [run_restic(by_restique, "prune").stdout, run_restique(by_restic, "prune").stdout]
    for out in again:
        assert "total prune:           0 blobs / 0 B" in out.decode() and "repacking packs" not in out.decode()


def test_restic_prunes_what_restique_pruned_and_the_other_way(repos, tmp_path):
    repo = copy(repos["restique"], tmp_path)
    run_restic(repo, "forget", "-q", "--keep-last", "2")
    expected = snapshot_contents(repo)
    run_restic(repo, "prune", "--max-unused", "0")
    assert snapshot_contents(repo) == expected
    run_restic(repo, "forget", "-q", "--keep-last", "1")
    expected = snapshot_contents(repo)
    run_restique(repo, "prune", "--max-unused", "0")
    assert snapshot_contents(repo) == expected
    assert b"no errors were found" in run_restic(repo, "check", "--read-data").stdout


def test_browse_repositories(browse, tmp_path):
    for tool, original in browse.repos.items():
        repo = copy(original, tmp_path, tool)
        run_restic(repo, "forget", "-q", browse.first[tool])
        expected = snapshot_contents(repo)
        run_restique(repo, "prune", "--max-unused", "0")
        assert snapshot_contents(repo) == expected
        assert b"no errors were found" in run_restic(repo, "check", "--read-data").stdout
        # every tree blob got compressed (restique's backup stores tiny trees uncompressed):
        # neither program repacks again
        for run in (run_restique, run_restic):
            assert "repacking packs" not in run(repo, "prune").stdout.decode()


from browse_fixtures import browse  # noqa: E402,F401  (the shared fixture)


# --- --json, -q, library ------------------------------------------------------------------------

BLOB_KEYS = ["used", "duplicate", "unused", "total", "repack", "repack_remove", "remove", "remove_total", "remaining"]
BYTE_KEYS = ["used", "duplicate", "unused", "unreferenced", "uncompressed", "total", "repack", "repack_remove",
             "remove", "remove_total", "remaining", "remaining_unused"]
PACK_KEYS = ["used", "unused", "partly_used", "unreferenced", "total", "keep", "repack", "remove", "remove_total"]


def test_json_summary_as_current_restic(repos, tmp_path):
    text = run_restique(repos["restic"], "prune", "--dry-run", "-v").stdout.decode()
    out = run_restique(repos["restic"], "--json", "prune", "--dry-run").stdout.decode()
    assert out.count("\n") == 1
    summary = json.loads(out)
    assert list(summary) == ["message_type", "blobs", "bytes", "packfiles"] and summary["message_type"] == "summary"
    blobs, sizes, packs = summary["blobs"], summary["bytes"], summary["packfiles"]
    assert (list(blobs), list(sizes), list(packs)) == (BLOB_KEYS, BYTE_KEYS, PACK_KEYS)
    assert blobs["total"] == blobs["used"] + blobs["unused"] + blobs["duplicate"]
    assert blobs["remaining"] == blobs["total"] - blobs["remove"] - blobs["repack_remove"]
    assert packs["total"] == packs["used"] + packs["partly_used"] + packs["unused"] + packs["unreferenced"]
    assert "to repack:    %10d blobs" % blobs["repack"] in text
    assert "to delete:    %10d packs" % packs["remove"] in text
    assert "totally used packs: %10d" % packs["used"] in text
    # a real run prints the same single line
    repo = copy(repos["restic"], tmp_path)
    real = run_restique(repo, "--json", "prune").stdout.decode()
    assert json.loads(real) == summary
    assert run_restique(repo, "-q", "prune").stdout == b""


def test_library_call_prints_nothing(repos, capsys):
    from restique.operations.prune import PruneOptions, prune
    from restique.repository.repository import open_repository

    with open_repository(str(repos["restic"]), PASSWORD) as repo:
        plan = prune(repo, PruneOptions(dry_run=True, max_unused="unlimited"))
    assert plan.stats.blobs.remove > 0 and plan.remove and plan.snapshot_count == 3
    assert capsys.readouterr() == ("", "")


# --- flags --------------------------------------------------------------------------------------

@pytest.mark.parametrize("args", [("--max-unused", "1x"), ("--max-unused", "100%"), ("--max-unused", "-5%"),
                                  ("--max-unused", "abc%"), ("--max-unused", ""), ("--max-unused", "1.5%x")])
def test_bad_values_as_restic(repos, args):
    restic, restique = both([(run_restic, (repos["restic"], "prune", "--dry-run", *args), {"check": False}),
                             (run_restique, (repos["restic"], "prune", "--dry-run", *args), {"check": False})])
    assert (restique.returncode, restique.stderr, restique.stdout) == (1, restic.stderr, b"")


@pytest.mark.parametrize("args, message", [
    (("--max-repack-size", "1x"), b'Fatal: invalid number of bytes "1x" for --max-repack-size: strconv.ParseInt'),
    (("--max-unused", "-1"), b'Fatal: invalid number of bytes "-1" for --max-unused: ParseSize: "-1": value out of range'),
    (("--repack-smaller-than", "0"), b"Fatal: --repack-smaller-than must be larger than zero"),
    (("--repack-smaller-than", "17M"), b"Fatal: repack-smaller-than exceeds repository packsize"),
    (("--compression", "off", "--repack-uncompressed"),
     b"Fatal: disabled compression and `--repack-uncompressed` are mutually exclusive"),
    (("--no-lock",), b"Fatal: --no-lock is only applicable in combination with --dry-run for prune command"),
])
def test_refused_flags(repos, args, message):
    proc = run_restique(repos["restic"], "prune", *args, check=False)
    assert proc.returncode == 1 and proc.stderr.startswith(message) and proc.stderr.count(b"\n") == 1


def test_repack_uncompressed_on_format_1_as_restic(repos):
    restic, restique = both([(run_restic, (repos["v1"], "prune", "--dry-run", "--repack-uncompressed"), {"check": False}),
                             (run_restique, (repos["v1"], "prune", "--dry-run", "--repack-uncompressed"), {"check": False})])
    assert (restique.returncode, restique.stderr) == (1, restic.stderr)


def test_locked_repository_is_refused(repos, tmp_path):
    from restique.repository.repository import open_repository

    repo_path = copy(repos["restic"], tmp_path)
    before = files(repo_path)
    with open_repository(str(repo_path), PASSWORD) as repo, repo.lock(exclusive=True):
        proc = run_restique(repo_path, "prune", check=False)
    assert proc.returncode == 11 and b"locked" in proc.stderr and proc.stderr.count(b"\n") == 1
    assert files(repo_path) == before


def test_repack_small_and_smaller_than(repos, tmp_path):
    """The big data packs (700 kB, above restic 0.14's default limit of 4% of 16 MiB) are kept
    by default; --repack-small (0.14) and --repack-smaller-than (current restic) repack them."""
    def repacked(*args):
        out = run_restique(repos["restic"], "prune", "--dry-run", "-v", *args).stdout.decode()
        return int(re.search(r"to repack: +(\d+) packs", out).group(1))

    default, small, below_1m, below_64k = repacked(), repacked("--repack-small"), \
        repacked("--repack-smaller-than", "1M"), repacked("--repack-smaller-than", "64k")
    assert default < small and below_1m == small and below_64k == default
    repo = copy(repos["restic"], tmp_path)
    expected = snapshot_contents(repo)
    run_restique(repo, "prune", "--repack-smaller-than", "1M")
    assert snapshot_contents(repo) == expected
    assert b"no errors were found" in run_restic(repo, "check", "--read-data").stdout


def test_repack_uncompressed_compresses(tmp_path):
    repo, data = tmp_path / "repo", tmp_path / "data"
    run_restic(repo, "init")
    fast_key(repo)
    for g in (1, 2):
        write_generation(data, g)
        (data / "text.txt").write_bytes(b"compressible text\n" * 5000)
        run_restic(repo, "--compression", "off", "backup", "-q", data.name, cwd=tmp_path)
    expected = snapshot_contents(repo)
    by_restic = copy(repo, tmp_path, "by-restic")
    restic, restique = both([(run_restic, (by_restic, "prune", "--repack-uncompressed"), {}),
                             (run_restique, (repo, "prune", "--repack-uncompressed"), {})])
    assert normalise(restique.stdout) == normalise(restic.stdout)
    assert snapshot_contents(repo) == expected
    assert b"no errors were found" in run_restic(repo, "check", "--read-data").stdout
    listed = run_restique(repo, "--json", "prune", "--dry-run").stdout
    assert json.loads(listed)["bytes"]["uncompressed"] == 0


# --- damaged repositories -----------------------------------------------------------------------

def pack_path(repo, pack_id):
    return repo / "data" / pack_id[:2] / pack_id


def plan_of(repo_path):
    from restique.operations.prune import PruneOptions, plan_prune
    from restique.repository.repository import open_repository

    with open_repository(str(repo_path), PASSWORD) as repo:
        return plan_prune(repo, PruneOptions(dry_run=True))


def test_unindexed_pack_is_deleted_first(repos, tmp_path):
    repo = copy(repos["restic"], tmp_path)
    stray = "ab" * 32
    os.makedirs(repo / "data" / "ab", exist_ok=True)
    pack_path(repo, stray).write_bytes(os.urandom(5000))
    restic, restique = both([(run_restic, (repo, "prune", "--dry-run", "-v"), {}),
                             (run_restique, (repo, "prune", "--dry-run", "-v"), {})])
    assert normalise(restique.stdout) == normalise(restic.stdout)
    assert f"will remove pack {stray[:8]} as it is unused and not indexed" in restique.stdout.decode()
    out = run_restique(repo, "prune").stdout.decode()
    assert "deleting unreferenced packs\n" in out and not pack_path(repo, stray).exists()
    assert b"no errors were found" in run_restic(repo, "check").stdout


def test_missing_needed_pack_is_refused(repos, tmp_path):
    repo = copy(repos["restic"], tmp_path)
    plan = plan_of(repo)
    # a data pack: without a tree pack the trees cannot be read at all (a different failure)
    needed = sorted(p for p in set(plan.pack_entries) - plan.remove
                    if all(e.type == "data" for e in plan.pack_entries[p]))[0]
    pack_path(repo, needed).unlink()
    before = files(repo)
    proc = run_restique(repo, "prune", check=False)
    assert proc.returncode == 1
    assert proc.stderr.decode() == ("The index references 1 needed pack files which are missing from the repository:\n"
                                    f"  {needed}\nFatal: packs from index missing in repo\n")
    assert files(repo) == before


def test_missing_unneeded_pack_is_forgotten(repos, tmp_path):
    repo = copy(repos["restic"], tmp_path)
    expected = snapshot_contents(repo)
    unneeded = sorted(plan_of(repo).remove)[0]
    pack_path(repo, unneeded).unlink()
    proc = run_restique(repo, "prune")
    assert proc.stderr.decode() == ("Missing but unneeded pack files are referenced in the index, will be repaired\n"
                                    f"will forget missing pack file {unneeded}\n")
    assert snapshot_contents(repo) == expected
    assert b"no errors were found" in run_restic(repo, "check", "--read-data").stdout


def flip_byte(path, offset) -> None:
    with open(path, "r+b") as f:
        f.seek(offset)
        byte = f.read(1)
        f.seek(offset)
        f.write(bytes([byte[0] ^ 0xFF]))


def test_damaged_tree_stops_before_any_change(repos, tmp_path):
    from restique.repository.repository import open_repository

    repo_path = copy(repos["restic"], tmp_path)
    with open_repository(str(repo_path), PASSWORD) as repo:
        repo.load_index()
        root = repo.load_json("snapshot", repo.list_ids("snapshot")[0])["tree"]
        where = repo.index.lookup("tree", root)
    flip_byte(pack_path(repo_path, where.pack_id), where.offset + 20)
    before = files(repo_path)
    proc = run_restique(repo_path, "prune", check=False)
    assert proc.returncode == 1 and "searching used packs" not in proc.stdout.decode()
    assert b"unable to load a tree" in proc.stderr and root[:8].encode() in proc.stderr
    assert proc.stderr.count(b"\n") == 1
    assert files(repo_path) == before


def test_damaged_blob_in_pack_to_repack_stops_before_deleting(repos, tmp_path):
    repo = copy(repos["restic"], tmp_path)
    plan = plan_of(repo)
    pack_id = next(p for p in sorted(plan.repack) if plan.pack_entries[p][0].type == "data")
    blob = next(e for e in plan.pack_entries[pack_id] if e.id in plan.keep_blobs[e.type])
    flip_byte(pack_path(repo, pack_id), blob.offset + 20)
    before = files(repo)
    proc = run_restique(repo, "prune", check=False)
    assert proc.returncode == 1 and "repacking packs" in proc.stdout.decode()
    assert proc.stderr.decode().startswith(f"Fatal: pack {pack_id} is damaged (") and proc.stderr.count(b"\n") == 1
    assert {f for f in before if "/data/" not in "/" + f} <= files(repo)  # no index, snapshot or key lost
    assert all(os.path.exists(repo / f) for f in before)


def test_duplicate_blobs_keep_one_copy(repos, tmp_path):
    """A blob stored in two packs (an interrupted prune or backup leaves that): one copy stays."""
    from restique.operations.prune.used_blobs import find_used_blobs
    from restique.repository.blob_store import BlobStore
    from restique.repository.index import MasterIndex
    from restique.repository.repository import open_repository

    repo_path = copy(repos["restic"], tmp_path)
    expected = snapshot_contents(repo_path)
    with open_repository(str(repo_path), PASSWORD) as repo:
        repo.load_index()
        store = BlobStore(repo.backend, repo.key, MasterIndex(), repo.blobs.level, repo.save_unpacked)
        roots = [repo.load_json("snapshot", sid)["tree"] for sid in repo.list_ids("snapshot")]
        used = find_used_blobs(lambda tree_id: repo.load_blob("tree", tree_id), roots)
        for blob_type in ("data", "tree"):
            for blob_id in sorted(used[blob_type])[:10]:
                store.save(blob_type, repo.load_blob(blob_type, blob_id), blob_id)
        store.flush()
    out = run_restique(repo_path, "prune", "-v", "--max-unused", "0").stdout.decode()
    assert re.search(r"duplicates: +20 blobs", out)
    assert snapshot_contents(repo_path) == expected
    checked = run_restic(repo_path, "check", "--read-data").stdout.decode()
    assert "no errors were found" in checked and "several" not in checked
    assert re.search(r"remaining: +(\d+)", run_restique(repo_path, "prune", "-v").stdout.decode())
    assert "duplicates:" not in run_restique(repo_path, "prune", "--dry-run", "-v").stdout.decode()


def test_pack_of_wrong_size_is_refused(repos, tmp_path):
    repo = copy(repos["restic"], tmp_path)
    plan = plan_of(repo)
    used = sorted(set(plan.pack_entries) - plan.remove)[0]
    with open(pack_path(repo, used), "ab") as f:
        f.write(b"extra")
    before = files(repo)
    proc = run_restique(repo, "prune", check=False)
    assert proc.returncode == 1
    assert re.fullmatch(rf"pack {used[:8]}: calculated size \d+ does not match real size \d+\n"
                        r"Run 'restic repair index'\nFatal: pack size does not match calculated size from index\n",
                        proc.stderr.decode())
    assert files(repo) == before


def test_tree_references_scan_equals_json_decoding():
    """The ids the native scanner reads from a tree's text are the ones JSON decoding finds;
    unusual text (escaped names, a key twice, a dir without subtree) is decoded as JSON."""
    from restique.errors import IntegrityError
    from restique.operations.prune.used_blobs import _decode_references, _scanned_references, tree_references

    a, b = "a" * 64, "b" * 64
    raw = ('{"nodes":[{"name":"x","type":"file","content":["%s","%s"]},'
           '{"name":"d","type":"dir","content":null,"subtree":"%s"},{"name":"e","type":"file","content":[]}]}\n'
           % (a, b, b)).encode()
    assert _scanned_references(raw) == _decode_references("t", raw) == ([b], [a, b])
    spaced = raw.replace(b'"content":[', b'"content": [')
    nested = raw.replace(b'"name":"e"', b'"name":"e","generic_attributes":{"subtree":"%s"}' % a.encode())
    for plain in (spaced, nested):
        assert _scanned_references(plain) == tree_references("t", plain) == ([b], [a, b])
    for odd in (raw.replace(b'"name":"x"', b'"name":"x\\"content"'), raw.replace(b'"name":"x"', b'"name":"x","name":"y"')):
        assert _scanned_references(odd) is None and tree_references("t", odd) == ([b], [a, b])
    with pytest.raises(IntegrityError, match="has no subtree"):
        tree_references("t", raw.replace(b',"subtree":"%s"' % b.encode(), b""))
