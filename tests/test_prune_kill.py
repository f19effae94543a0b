"""prune killed with SIGKILL at many points of its run (found by watching the repository's
data/ and index/ folders change) never leaves a repository that `restic check` rejects or
that has lost a blob of a kept snapshot, and a second prune finishes the job."""
import os
import shutil

import pytest

from conftest import restique_cmd, run_restic, run_restique
from kill_points import repository_files, run_until_changes
from test_prune import FAST_KDF, PASSWORD, snapshot_contents

KILL_POINTS = 12


def write_generation(root, g: int) -> None:
    """800 small files, 60% of them rewritten each generation (about 2.5 MB of new data)."""
    for i in range(800):
        path = root / f"d{i % 20}" / f"f{i}.dat"
        if g == 1 or (i + g) % 5 < 3:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(os.urandom(3000 + (i % 7) * 100))


@pytest.fixture(scope="module")
def forgotten(tmp_path_factory):
    """(repository, contents of the kept snapshots): 4 MiB packs, 6 snapshots, 2 kept."""
    from restique.repository.repository import init_repository

    base = tmp_path_factory.mktemp("prune-kill")
    repo, data = base / "repo", base / "data"
    init_repository(str(repo), PASSWORD, kdf_params=FAST_KDF).close()
    for g in range(1, 7):
        write_generation(data, g)
        run_restic(repo, "--pack-size", "4", "backup", "-q", "data", cwd=base)
    run_restic(repo, "forget", "-q", "--keep-last", "2")
    return repo, snapshot_contents(repo)


def prune_until(repo, changes: int, after_seconds: float = 0.0):
    """Start a prune and SIGKILL it once `changes` files of data/ and index/ have appeared
    or vanished (or after after_seconds). Returns how many changes were seen."""
    cmd = restique_cmd() + ["-r", str(repo), "--pack-size", "4", "prune", "--max-unused", "0"]
    return run_until_changes(cmd, repo, changes, after_seconds)


def test_killed_prune_loses_nothing(forgotten, tmp_path):
    original, expected = forgotten
    # one uninterrupted run tells how many files a prune creates and deletes
    reference = tmp_path / "reference"
    shutil.copytree(original, reference)
    before = repository_files(reference)
    run_restique(reference, "--pack-size", "4", "prune", "--max-unused", "0")
    total = len(before ^ repository_files(reference))
    assert total >= 10
    points = [(0, 0.3)] + [(1 + (total - 1) * k // (KILL_POINTS - 2), 0) for k in range(KILL_POINTS - 1)]
    seen = set()
    for n, (changes, delay) in enumerate(points):
        repo = tmp_path / f"kill-{n}"
        shutil.copytree(original, repo)
        seen.add(prune_until(repo, changes, delay))
        run_restic(repo, "unlock")
        checked = run_restic(repo, "check", check=False)
        assert checked.returncode == 0, (changes, checked.stdout, checked.stderr)
        assert snapshot_contents(repo) == expected, changes
        run_restique(repo, "prune", "--max-unused", "0")
        assert nothing_left_to_prune(repo), changes
        assert snapshot_contents(repo) == expected
        checked = run_restic(repo, "check", *(("--read-data",) if n % 4 == 0 else ())).stdout
        assert b"no errors were found" in checked
        shutil.rmtree(repo)
    assert len(seen) >= KILL_POINTS // 2, sorted(seen)  # the kills fell at many different points


def nothing_left_to_prune(repo) -> bool:
    from restique.operations.prune import PruneOptions, plan_prune
    from restique.repository.repository import open_repository

    with open_repository(str(repo), PASSWORD) as opened:
        plan = plan_prune(opened, PruneOptions(dry_run=True, max_unused="0"))
    stats = plan.stats
    return stats.blobs.remove_total == 0 and stats.bytes.remaining_unused == 0 and not plan.repack
