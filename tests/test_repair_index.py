"""restique repair index / rebuild-index, against restic 0.14's rebuild-index (the oracle).

1. On an intact repository and after each kind of damage (index files removed, an index file
   damaged, a pack removed, a pack the index does not list, a truncated pack, a flipped byte),
   restic's and restique's rebuild of two copies of the same repository print the same lines,
   write index files listing the same blobs, and `restic check --read-data` then says the
   same about both: nothing, or exactly the data loss that remains.
2. Both directions: the repositories are made by restic and by restique.
3. --read-all-packs, the exclusive lock, and the library call (also interrupted between
   writing the new index and deleting the old one).

The repositories get a cheap key (restic and restique both read its scrypt parameters), so
each of the many runs pays little for key derivation. `maintenance_repos` is shared with
test_repair_packs and test_recover.
"""
import json
import os
import re
import shutil
import subprocess
from pathlib import Path
from types import SimpleNamespace

import pytest

from conftest import PASSWORD, both, clean_env, restic_path, run_restic, run_restique

FAST_KDF = (1 << 10, 8, 1)
TOOLS = {"restic": run_restic, "restique": run_restique}
DEPRECATED = 'Command "rebuild-index" is deprecated, Use "repair index" instead'


def init_fast(repo: Path) -> None:
    from restique.repository.repository import init_repository

    init_repository(str(repo), PASSWORD, kdf_params=FAST_KDF).close()


def write_tree(root: Path, round_: int) -> None:
    """A few folders of small and incompressible files; round 2 changes and adds some."""
    rnd = __import__("random").Random(round_)
    for d in range(3):
        folder = root / f"dir{d}"
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "small.txt").write_text(f"small file {d} of round {round_ if d == 0 else 1}\n")
        (folder / "random.bin").write_bytes(rnd.randbytes(150_000) if round_ == 1 or d == 2 else
                                           (folder / "random.bin").read_bytes())
    if round_ == 2:
        (root / "dir1" / "added").mkdir(exist_ok=True)
        (root / "dir1" / "added" / "new.bin").write_bytes(rnd.randbytes(80_000))


@pytest.fixture(autouse=True)
def own_cache(tmp_path, monkeypatch):
    """A cache of its own for each test: every copy of a repository has the same id, and a
    cache filled from an intact copy hid a damaged index file from restic (restic then
    printed no "reading pack files"; found when the tests ran in another order)."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg-cache"))


@pytest.fixture(scope="session")
def maintenance_repos(tmp_path_factory):
    """SimpleNamespace(base, repos={"restic": path, "restique": path}): two snapshots of the
    same changing tree (`data`, backed up from base) in a repository written by each tool."""
    base = tmp_path_factory.mktemp("maintenance")
    repos = {tool: base / f"repo-{tool}" for tool in TOOLS}
    for repo in repos.values():
        init_fast(repo)
    for round_ in (1, 2):
        write_tree(base / "data", round_)
        both([(TOOLS[t], (repos[t], "backup", "data"), {"cwd": base}) for t in TOOLS])
    return SimpleNamespace(base=base, repos=repos)


def copy_repo(source: Path, target: Path) -> Path:
    shutil.copytree(source, target)
    for folder, _, files in os.walk(target):  # restic writes read-only files
        for name in files:
            os.chmod(os.path.join(folder, name), 0o644)
    return target


def pack_files(repo: Path):
    return sorted((repo / "data").glob("*/*"), key=lambda p: p.name)


def index_entries(repo: Path):
    """Every (pack, type, blob, offset, length) all index files list (read in-process:
    the cheap key makes that much faster than a restic run per file)."""
    from restique.repository.repository import open_repository

    out = set()
    with open_repository(str(repo), PASSWORD) as r:
        for index_id in r.list_ids("index"):
            for pack_id, entries in r.load_index_file(index_id).packs.items():
                out.update((pack_id, e.type, e.id, e.offset, e.length) for e in entries)
    return out


def normalise(text: bytes) -> list:
    """Lines with times, temporary cache paths and the deprecation notice made equal."""
    text = text.decode()
    text = re.sub(r"\[\d+:\d\d(:\d\d)?\]", "[0:00]", text)
    text = re.sub(r"restic-check-cache-\d+", "restic-check-cache-N", text)
    text = text.replace("invalid data returned (content does not match its name)", "invalid data returned")
    return [line for line in text.splitlines() if line != DEPRECATED]


# --- ways to damage a repository ----------------------------------------------------------

def _data_pack(repo: Path) -> Path:
    """The largest pack: a data pack with several blobs."""
    return max(pack_files(repo), key=lambda p: p.stat().st_size)


def remove_all_index_files(repo):
    for f in (repo / "index").iterdir():
        f.unlink()


def damage_an_index_file(repo):
    target = sorted((repo / "index").iterdir())[0]
    raw = bytearray(target.read_bytes())
    raw[len(raw) // 2] ^= 0x01
    target.write_bytes(bytes(raw))


def remove_a_pack(repo):
    _data_pack(repo).unlink()


def unindex_a_pack(repo):
    """Drop one pack from the index (rewriting the index file that lists it)."""
    from restique.repository.repository import open_repository

    pack_id = _data_pack(repo).name
    with open_repository(str(repo), PASSWORD) as r:
        for index_id in r.list_ids("index"):
            index = r.load_index_file(index_id)
            if pack_id in index.packs:
                del index.packs[pack_id]
                r.save_unpacked("index", index.encode())
                r.remove("index", index_id)


def truncate_a_pack(repo):
    pack = _data_pack(repo)
    pack.write_bytes(pack.read_bytes()[:-100])


def flip_a_byte(repo):
    pack = _data_pack(repo)
    raw = bytearray(pack.read_bytes())
    raw[100] ^= 0x01
    pack.write_bytes(bytes(raw))


DAMAGE = {
    "intact": lambda repo: None,
    "no-index": remove_all_index_files,
    "damaged-index": damage_an_index_file,
    "missing-pack": remove_a_pack,
    "unindexed-pack": unindex_a_pack,
    "truncated-pack": truncate_a_pack,
    "flipped-byte": flip_a_byte,
}


def rebuild_both(maintenance_repos, tmp_path, origin, damage, *args):
    """Damage one copy per tool of the `origin` repository the same way and rebuild it with
    that tool; returns ({tool: repo}, {tool: CompletedProcess})."""
    repos = {}
    for tool in TOOLS:
        repos[tool] = copy_repo(maintenance_repos.repos[origin], tmp_path / tool)
        DAMAGE[damage](repos[tool])
    results = both([(TOOLS[t], (repos[t], "rebuild-index", *args), {"check": False}) for t in TOOLS])
    return repos, dict(zip(TOOLS, results))


@pytest.mark.parametrize("origin", list(TOOLS))
@pytest.mark.parametrize("damage", list(DAMAGE))
def test_rebuild_index_as_restic_does(maintenance_repos, tmp_path, origin, damage):
    repos, runs = rebuild_both(maintenance_repos, tmp_path, origin, damage)
    assert runs["restique"].returncode == runs["restic"].returncode == 0
    assert normalise(runs["restique"].stdout) == normalise(runs["restic"].stdout)
    # restic lists packs in directory order; restique sorts them
    assert sorted(normalise(runs["restique"].stderr)) == sorted(normalise(runs["restic"].stderr))
    assert index_entries(repos["restique"]) == index_entries(repos["restic"])
    assert len(list((repos["restique"] / "index").iterdir())) == 1
    checks = both([(run_restic, (repos[t], "check", "--read-data"), {"check": False}) for t in TOOLS])
    restic_check, restique_check = checks
    assert restique_check.returncode == restic_check.returncode
    assert normalise(restique_check.stdout) == normalise(restic_check.stdout)
    assert sorted(normalise(restique_check.stderr)) == sorted(normalise(restic_check.stderr))
    if damage in ("intact", "no-index", "damaged-index", "unindexed-pack"):
        assert restique_check.returncode == 0  # nothing was lost


def test_read_all_packs_and_repair_index_name(maintenance_repos, tmp_path):
    repos, runs = rebuild_both(maintenance_repos, tmp_path, "restique", "intact", "--read-all-packs")
    assert normalise(runs["restique"].stdout) == normalise(runs["restic"].stdout)
    assert sorted(normalise(runs["restique"].stderr)) == sorted(normalise(runs["restic"].stderr))
    assert runs["restique"].stderr.decode().startswith(DEPRECATED)
    assert index_entries(repos["restique"]) == index_entries(repos["restic"])
    # the current name: the same work, without the deprecation notice
    again = run_restique(repos["restique"], "repair", "index", "--read-all-packs")
    assert normalise(again.stdout)[-4:] == ["deleting obsolete index files",
                                            "[0:00] 100.00%  1 / 1 files deleted", "", "done"]
    assert DEPRECATED not in again.stderr.decode()
    quiet = run_restique(repos["restique"], "-q", "repair", "index")
    assert quiet.stdout == b""
    run_restic(repos["restique"], "check", "--read-data")


def test_refused_while_restic_holds_a_lock(maintenance_repos, tmp_path):
    repo = copy_repo(maintenance_repos.repos["restic"], tmp_path / "repo")
    before = sorted((repo / "index").iterdir())
    # a backup from a pipe that stays open keeps restic's lock in place
    holder = subprocess.Popen([restic_path(), "-r", str(repo), "backup", "--stdin", "-q"],
                              stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                              env=clean_env())
    try:
        for _ in range(100):
            if list((repo / "locks").iterdir()):
                break
            __import__("time").sleep(0.05)
        result = run_restique(repo, "repair", "index", check=False)
        assert sorted((repo / "index").iterdir()) == before
    finally:
        holder.communicate(b"some data\n", timeout=30)
    assert result.returncode == 11
    assert result.stderr.decode().startswith("Fatal: unable to create lock")
    assert result.stderr.decode().count("\n") == 1


def test_library_call_and_interruption_before_deleting(maintenance_repos, tmp_path):
    """An interruption after the new index is written leaves old and new files, and the
    repository stays whole; running again finishes the job."""
    from restique.operations.repair_index import RepairIndexOptions, repair_index
    from restique.repository.repository import open_repository

    repo = copy_repo(maintenance_repos.repos["restic"], tmp_path / "repo")
    missing = _data_pack(repo).name
    remove_a_pack(repo)
    old = sorted(p.name for p in (repo / "index").iterdir())
    with open_repository(str(repo), PASSWORD) as r:
        def interrupted(kind, file_id):
            raise KeyboardInterrupt

        r.remove = interrupted
        with pytest.raises(KeyboardInterrupt):
            repair_index(r, RepairIndexOptions())
    now = sorted(p.name for p in (repo / "index").iterdir())
    assert set(old) < set(now)
    run_restic(repo, "list", "blobs")  # restic reads the doubled index
    with open_repository(str(repo), PASSWORD) as r:
        result = repair_index(r)
    assert result.removed_index_ids == now and len(result.new_index_ids) == 1
    assert result.missing_packs == [missing]  # the old files still listed it
    assert sorted(p.name for p in (repo / "index").iterdir()) == result.new_index_ids
