"""prune killed with SIGKILL at many points of its run (at its Nth save, at each stage of a
save; just before its Nth removal; by time while it reads) never leaves a repository that `restic check` rejects or
that has lost a blob of a kept snapshot, and a second prune finishes the job."""
import os
import shutil

import pytest

from conftest import restique_cmd, run_restic, run_restique
from kill_points import REMOVAL, SAVE_STAGES, repository_files, run_killed_at_save, run_until_changes, spread
from test_prune import FAST_KDF, PASSWORD, snapshot_contents

SAVE_POINTS = 7
REMOVAL_POINTS = 5


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


def prune_cmd(repo) -> list:
    return restique_cmd() + ["-r", str(repo), "--pack-size", "4", "prune", "--max-unused", "0"]


def kill_prune(repo, point) -> None:
    """SIGKILL a prune at point: (N, stage) for its Nth save or removal, or seconds."""
    if isinstance(point, float):
        run_until_changes(prune_cmd(repo), repo, 0, point)
        return
    killed = run_killed_at_save(prune_cmd(repo), *point)
    assert killed.returncode == -9, (point, killed.returncode, killed.stderr)  # the point was reached


def test_killed_prune_loses_nothing(forgotten, tmp_path):
    original, expected = forgotten
    # one uninterrupted run tells how many files a prune saves and removes (its lock included)
    reference = tmp_path / "reference"
    shutil.copytree(original, reference)
    before = repository_files(reference)
    run_restique(reference, "--pack-size", "4", "prune", "--max-unused", "0")
    after = repository_files(reference)
    saves, removals = len(after - before) + 1, len(before - after) + 1
    assert saves >= 4 and removals >= 6, (saves, removals)
    points = [0.3] + [(save, SAVE_STAGES[k % len(SAVE_STAGES)]) for k, save in enumerate(spread(saves, SAVE_POINTS))]
    points += [(removal, REMOVAL) for removal in spread(removals - 1, REMOVAL_POINTS)]  # not the lock's
    for n, point in enumerate(points):
        repo = tmp_path / f"kill-{n}"
        shutil.copytree(original, repo)
        kill_prune(repo, point)
        run_restic(repo, "unlock")
        checked = run_restic(repo, "check", check=False)
        assert checked.returncode == 0, (point, checked.stdout, checked.stderr)
        assert snapshot_contents(repo) == expected, point
        run_restique(repo, "prune", "--max-unused", "0")
        assert nothing_left_to_prune(repo), point
        assert snapshot_contents(repo) == expected
        checked = run_restic(repo, "check", *(("--read-data",) if n % 4 == 0 else ())).stdout
        assert b"no errors were found" in checked
        shutil.rmtree(repo)


def nothing_left_to_prune(repo) -> bool:
    from restique.operations.prune import PruneOptions, plan_prune
    from restique.repository.repository import open_repository

    with open_repository(str(repo), PASSWORD) as opened:
        plan = plan_prune(opened, PruneOptions(dry_run=True, max_unused="0"))
    stats = plan.stats
    return stats.blobs.remove_total == 0 and stats.bytes.remaining_unused == 0 and not plan.repack
