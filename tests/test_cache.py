"""The local cache over a REST repository served by `rclone serve restic`: what a backup puts
in it, that a warm cache spares the server the cached files (rclone's request log), that
files gone from the repository leave the cache, that damaged cached files are fetched again,
`--no-cache`, `--cleanup-cache`, and the `cache` command next to restic 0.14's."""
import hashlib
import os
import time

import pytest

from conftest import PASSWORD, run_restic, run_restique
from servers import RcloneServer
from restique.backend.cache_dir import CACHEDIR_TAG
from restique.repository.repository import open_repository

OLD_ID = "0123456789abcdef" * 4


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    folder = tmp_path_factory.mktemp("cache-server")
    log = folder / "requests.log"
    srv = RcloneServer(folder / "files", "-vv", "--log-file", log).start()
    srv.log = log
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def repo(server, tmp_path_factory):
    """A repository with one snapshot of a small tree (trees and data in separate packs)."""
    src = tmp_path_factory.mktemp("cache-src")
    (src / "sub").mkdir()
    (src / "a.txt").write_text("cached\n")
    (src / "sub" / "big.bin").write_bytes(os.urandom(1 << 20))
    location = f"rest:{server.url}/repo/"
    cache = tmp_path_factory.mktemp("cache-backup")
    run_restique(location, "init", cache_dir=cache)
    run_restique(location, "backup", src, cache_dir=cache)
    return location, src, cache


def repo_files(location, kind):
    repo = open_repository(location, PASSWORD)
    try:
        if kind == "tree-packs":
            index = repo.load_index()
            return {index.lookup(t, b).pack_id for t, b in index.blobs() if t == "tree"}
        return set(repo.list_ids(kind))
    finally:
        repo.close()


def cached(cache, kind):
    (folder,) = [p for p in cache.iterdir() if p.is_dir()]
    return {p.name for p in (folder / kind).glob("*/*")}


def requests_during(server, command):
    """The repository files (not listings) the server was asked for while command ran."""
    start = server.log.stat().st_size
    command()
    with open(server.log) as f:
        f.seek(start)
        lines = f.read().splitlines()
    asked = set()
    for line in lines:
        if ": GET /repo/" in line:
            path = line.split(": GET /repo/", 1)[1].strip()
            if not path.endswith("/"):
                asked.add(path)
    return asked


def test_backup_fills_the_cache_with_metadata_only(repo):
    location, _, cache = repo
    assert (cache / "CACHEDIR.TAG").read_text() == CACHEDIR_TAG
    (folder,) = [p for p in cache.iterdir() if p.is_dir()]
    assert (folder / "version").read_text() == "1"
    assert cached(cache, "snapshots") == repo_files(location, "snapshots")
    assert cached(cache, "index") == repo_files(location, "index")
    tree_packs = repo_files(location, "tree-packs")
    assert cached(cache, "data") == tree_packs
    assert len(repo_files(location, "data")) > len(tree_packs), "data packs stay out of the cache"


def test_a_warm_cache_spares_the_server(server, repo, tmp_path):
    location, _, _ = repo
    fresh = tmp_path / "cache"
    cold = requests_during(server, lambda: run_restique(location, "ls", "latest", cache_dir=fresh))
    cached_files = {f"snapshots/{n}" for n in cached(fresh, "snapshots")} | \
        {f"index/{n}" for n in cached(fresh, "index")} | {f"data/{n}" for n in cached(fresh, "data")}
    assert cached_files and cached_files <= cold, "a cold cache reads everything from the server"
    warm = requests_during(server, lambda: (run_restique(location, "ls", "latest", cache_dir=fresh),
                                            run_restique(location, "snapshots", cache_dir=fresh)))
    assert not warm & cached_files
    assert cached(fresh, "data") == repo_files(location, "tree-packs")


def test_corrupted_cache_files_are_fetched_again(server, repo, tmp_path):
    location, src, _ = repo
    cache = tmp_path / "cache"
    run_restique(location, "ls", "latest", cache_dir=cache)
    (folder,) = [p for p in cache.iterdir() if p.is_dir()]
    damaged = [next((folder / kind).glob("*/*")) for kind in ("snapshots", "index", "data")]
    for path in damaged:
        data = bytearray(path.read_bytes())
        data[len(data) // 2] ^= 0xFF
        path.write_bytes(bytes(data))
    damaged[2].write_bytes(damaged[2].read_bytes()[:-10])  # a pack cut short as well
    asked = requests_during(server, lambda: run_restique(location, "ls", "latest", cache_dir=cache))
    for path in damaged:
        assert hashlib.sha256(path.read_bytes()).hexdigest() == path.name, f"{path} was fixed"
        assert f"{path.parent.parent.name}/{path.name}" in asked
    out = run_restique(location, "ls", "latest", cache_dir=cache).stdout.decode()
    assert f"{src}/sub/big.bin" in out


def test_files_gone_from_the_repository_leave_the_cache(repo, tmp_path):
    location, src, _ = repo
    cache = tmp_path / "cache"
    run_restique(location, "backup", src, cache_dir=cache)
    before = cached(cache, "snapshots")
    assert len(before) >= 2
    oldest = sorted(repo_files(location, "snapshots"))[0]
    run_restic(location, "forget", oldest, cache_dir=tmp_path / "restic-cache")  # another program
    assert oldest in cached(cache, "snapshots")
    run_restique(location, "snapshots", cache_dir=cache)
    assert cached(cache, "snapshots") == before - {oldest} == repo_files(location, "snapshots")


def test_no_cache_writes_nothing(repo, tmp_path):
    location, _, _ = repo
    cache = tmp_path / "cache"
    run_restique(location, "--no-cache", "ls", "latest", cache_dir=cache)
    assert not cache.exists()
    proc = run_restique(None, "--no-cache", "cache", check=False)
    assert proc.returncode == 1
    assert proc.stderr.decode() == "Fatal: Refusing to do anything, the cache is disabled\n"


def test_cleanup_cache_removes_folders_unused_for_30_days(repo, tmp_path):
    location, _, _ = repo
    cache = tmp_path / "cache"
    _old_folder(cache, days=31)
    _old_folder(cache, days=29, name="f" * 64)
    run_restique(location, "snapshots", cache_dir=cache)
    assert (cache / OLD_ID).exists(), "kept without --cleanup-cache"
    run_restique(location, "--cleanup-cache", "snapshots", cache_dir=cache)
    assert not (cache / OLD_ID).exists() and (cache / ("f" * 64)).exists()


def _old_folder(cache, days, name=OLD_ID):
    folder = cache / name
    (folder / "snapshots").mkdir(parents=True)
    stamp = time.time() - days * 86400
    os.utime(folder, (stamp, stamp))


def test_cache_command_as_restic(repo, tmp_path):
    location, _, _ = repo
    mine, theirs = tmp_path / "restique", tmp_path / "restic"
    run_restique(location, "ls", "latest", cache_dir=mine)
    run_restic(location, "ls", "latest", cache_dir=theirs)
    for base in (mine, theirs):
        _old_folder(base, days=1060)

    def both(*args):
        ours = run_restique(None, "cache", *args, cache_dir=mine, check=False)
        ref = run_restic(None, "cache", *args, cache_dir=theirs, check=False)
        assert ours.returncode == ref.returncode
        assert ours.stderr.decode() == ref.stderr.decode()
        return ours.stdout.decode().replace(str(mine), "BASE"), ref.stdout.decode().replace(str(theirs), "BASE")

    ours, ref = both()
    assert ours == ref, "same files cached, same table"
    assert "1060 days ago  yes" in ours and ours.endswith("2 cache dirs in BASE\n")
    ours, ref = both("--no-size")
    assert ours == ref and "Size" not in ours
    ours, ref = both("--max-age", "2000")
    assert ours == ref and "yes" not in ours
    assert both("--cleanup", "--max-age", "2000") == ("no old cache dirs found\n",) * 2
    assert both("--cleanup") == ("remove 1 old cache directories\n",) * 2
    assert not (mine / OLD_ID).exists()
    assert both("--cleanup") == ("no old cache dirs found\n",) * 2
    assert both("extra")[0] == ""


def test_empty_cache_folder_listing(tmp_path):
    ours = run_restique(None, "cache", cache_dir=tmp_path / "none").stdout.decode()
    ref = run_restic(None, "cache", cache_dir=tmp_path / "none").stdout.decode()
    assert ours == ref == f"no cache dirs found, basedir is {tmp_path / 'none'}\n"
