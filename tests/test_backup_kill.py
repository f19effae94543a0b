"""A backup killed with SIGKILL at many points of its run (at its Nth save, before it starts,
half written, synced but not renamed, renamed; and by time while it scans) always leaves a
repository that restic 0.14's `check --read-data` and restique's `check` accept after a plain
`unlock`, with every earlier snapshot intact; the next backup succeeds, resumes from what the
killed one had checkpointed, and leaves no temporary file behind."""
import filecmp
import os
import shutil
import tempfile
from pathlib import Path

import pytest

from conftest import PASSWORD, both, clean_env, restique_cmd, run_restic, run_restique
from kill_points import (SAVE_STAGES, repository_files, run_killed_at_save, run_until_changes, spread,
                         temporary_files)

SAVE_POINTS = 20
CHECKPOINT_SECONDS = "0.15"  # checkpoints (packs, index, trees, record) are killed too


def write_generation(root, g: int) -> None:
    """30 folders of small files and a few larger ones: about 3 MB of new data per generation."""
    for i in range(300):
        path = root / f"d{i % 30}" / f"e{i % 4}" / f"f{i}.dat"
        if g == 1 or (i + g) % 3:
            path.parent.mkdir(parents=True, exist_ok=True)
            size = 40_000 if i % 25 == 0 else 1000 + (i * 37) % 9000
            path.write_bytes(os.urandom(size))


def backup_args(repo, cache) -> list:
    return ["-r", repo, "--cache-dir", cache, "--pack-size", "4", "backup", "-q", "src"]


def backup_cmd(repo, cache) -> list:
    return restique_cmd() + [str(a) for a in backup_args(repo, cache)]


def kill_env(checkpoints: bool = True) -> dict:
    return clean_env(RESTIQUE_CHECKPOINT_INTERVAL=CHECKPOINT_SECONDS if checkpoints else "0")


@pytest.fixture(scope="module")
def earlier():
    """(base folder, repository with a restic and a restique snapshot, their ids); the source
    then holds a third generation for the killed backups. On tmpfs when there is one: a
    SIGKILL leaves the page cache as it is, so what survives is the same, without the
    fsyncs' wait on a shared disk."""
    base = Path(tempfile.mkdtemp(prefix="backup-kill-", dir="/dev/shm" if os.path.isdir("/dev/shm") else None))
    repo, src = base / "repo", base / "src"
    run_restic(repo, "init", "-q")
    write_generation(src, 1)
    run_restic(repo, "--pack-size", "4", "backup", "-q", "src", cwd=base)
    write_generation(src, 2)
    run_restique(repo, "--pack-size", "4", "backup", "-q", "src", cwd=base)
    restored = base / "restored"
    run_restic(repo, "restore", "-q", "latest", "--target", restored)
    assert same_tree(src, restored / "src")
    shutil.rmtree(restored)
    write_generation(src, 3)
    yield base, repo, set(os.listdir(repo / "snapshots"))
    shutil.rmtree(base)


def same_tree(a, b) -> bool:
    compared = filecmp.dircmp(a, b)
    if compared.left_only or compared.right_only or compared.funny_files:
        return False
    if filecmp.cmpfiles(a, b, compared.common_files, shallow=False)[1:] != ([], []):
        return False
    return all(same_tree(os.path.join(a, d), os.path.join(b, d)) for d in compared.common_dirs)


def saves_of_a_whole_run(base, original) -> int:
    """How many files one uninterrupted backup without periodic checkpoints saves (its lock
    included); checkpoints only add saves."""
    repo = base / "reference"
    shutil.copytree(original, repo)
    before = set(os.listdir(repo / "snapshots")) | repository_files(repo)
    run_restique(None, *backup_args(repo, base / "reference-cache"), cwd=base, env=kill_env(False))
    after = set(os.listdir(repo / "snapshots")) | repository_files(repo)
    shutil.rmtree(repo)
    return len(after - before) + 1


def test_killed_backup_loses_nothing(earlier):
    """Every other point runs with checkpoints every 150 ms, whose saves the kills hit too;
    the others have a fixed sequence of saves (lock, packs, index, snapshot), all hit."""
    base, original, earlier_snapshots = earlier
    total = saves_of_a_whole_run(base, original)
    assert total >= 5, total
    points = [(save, SAVE_STAGES[k % len(SAVE_STAGES)]) for k, save in enumerate(spread(total, SAVE_POINTS))]
    points += [("time", 0.0), ("time", 0.5)]  # while the walk starts, before the first pack
    killed = 0
    for n, (save, stage) in enumerate(points):
        repo, cache = base / f"kill-{n}", base / f"cache-{n}"
        shutil.copytree(original, repo)
        env = kill_env(checkpoints=n % 2 == 1)
        if save == "time":
            run_until_changes(backup_cmd(repo, cache), repo, 0, stage, env=env, cwd=base)
            killed += 1
        else:
            killed += run_killed_at_save(backup_cmd(repo, cache), save, stage, env, cwd=base).returncode == -9
        assert_sound(repo, earlier_snapshots, (save, stage))
        # the next backup finishes the job and cleans up after the killed one
        run_restique(None, *backup_args(repo, cache), cwd=base)
        assert temporary_files(repo) == [], (save, stage)
        if n % 5 == 0:
            assert_latest_restores(repo, base)
        shutil.rmtree(repo)
        shutil.rmtree(cache, ignore_errors=True)
    assert killed == len(points)


def assert_sound(repo, earlier_snapshots: set, point) -> None:
    """Both checkers accept the repository (restic reads every pack), and every earlier
    snapshot is still there: their trees and blobs are what the checkers walk. restic's
    check takes the exclusive lock (the stale one must be gone); restique's runs beside it
    without a lock."""
    run_restic(repo, "unlock", "-q")
    by_restic, by_restique = both([(run_restic, (repo, "check", "--read-data"), {"check": False}),
                                   (run_restique, (repo, "--no-lock", "check"), {"check": False})])
    assert by_restic.returncode == 0, (point, by_restic.stdout, by_restic.stderr)
    assert by_restique.returncode == 0, (point, by_restique.stdout, by_restique.stderr)
    assert earlier_snapshots <= set(os.listdir(repo / "snapshots")), point


def assert_latest_restores(repo, base) -> None:
    target = base / "restore-check"
    run_restic(repo, "restore", "-q", "latest", "--target", target)
    assert same_tree(base / "src", target / "src")
    shutil.rmtree(target)
    assert b"no errors were found" in run_restic(repo, "check").stdout


def test_stale_temporary_files_are_removed_by_the_next_save(tmp_path):
    """A temporary file of a process that is gone goes at the next save; a fresh one of a
    process that may still be writing (another host, or restic) stays."""
    import socket

    from restique.repository.repository import init_repository

    repo = tmp_path / "repo"
    init_repository(str(repo), PASSWORD, kdf_params=(1 << 10, 8, 1)).close()
    dead = repo / "data" / "ab" / f"ab12-tmp-{socket.gethostname()}-999999999-0"
    foreign = repo / "index" / "cd34-tmp-otherhost-12-0"
    dead.write_bytes(b"half")
    foreign.write_bytes(b"half")
    run_restique(repo, "snapshots", "-q")  # a lock alone does not clean (every command takes one)
    assert dead.exists() and foreign.exists()
    run_restique(repo, "backup", "-q", "--stdin", input=b"new data")
    assert not dead.exists() and foreign.exists()
