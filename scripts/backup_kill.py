#!/usr/bin/env python3
"""Crash safety and resume of `restique backup`, with more points than CI runs.

Kill mode (default): the setup of tests/test_backup_kill.py (a repository with a restic and
a restique snapshot, a changed source of ~300 files), then POINTS backups killed with SIGKILL,
each at a random save (before it starts, half written, synced but not renamed, renamed) or
at a random time. After each kill: a plain `restic unlock`, then `restic check --read-data`
and `restique check` must accept the repository, every earlier snapshot must be there, and
the next backup must succeed and leave no temporary file; every fifth point its snapshot is
restored and compared with the source. Prints the points killed and the failures found.

    .venv/bin/python scripts/backup_kill.py [--points 200] [--seed 1]

Resume mode: times a first backup of TREE, then a backup interrupted once half of the data
is stored (SIGINT; and SIGKILL with checkpoints every tenth of a full run's time) and the
backup that resumes it, each into a fresh repository; prints the medians of wall and CPU
time (the machine may be shared: CPU time is the steadier figure) and resumed/full ratios.

    .venv/bin/python scripts/backup_kill.py --resume-tree /tmp/bench-work/data-s1/tree [--repeat 3]

Work goes to /dev/shm when it exists (the tools, not the disk, are measured).
"""
import argparse
import os
import random
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TESTS = Path(__file__).resolve().parent.parent / "tests"
sys.path.insert(0, str(TESTS))

from conftest import clean_env, restique_cmd, run_restic, run_restique  # noqa: E402
from kill_points import SAVE_STAGES, run_killed_at_save, run_until_changes, temporary_files  # noqa: E402
from test_backup_kill import (assert_latest_restores, assert_sound, backup_args, backup_cmd,  # noqa: E402
                              kill_env, same_tree, write_generation)


def work_dir(name: str) -> Path:
    return Path(tempfile.mkdtemp(prefix=name, dir="/dev/shm" if os.path.isdir("/dev/shm") else None))


# --- kill mode ---
def kill_points(points: int, seed: int) -> int:
    rnd = random.Random(seed)
    base = work_dir("backup-kill-")
    try:
        original, earlier = base / "repo", None
        run_restic(original, "init", "-q")
        write_generation(base / "src", 1)
        run_restic(original, "--pack-size", "4", "backup", "-q", "src", cwd=base)
        write_generation(base / "src", 2)
        run_restique(original, "--pack-size", "4", "backup", "-q", "src", cwd=base)
        write_generation(base / "src", 3)
        earlier = set(os.listdir(original / "snapshots"))
        total = whole_run_saves(base, original)
        print(f"one whole backup makes {total} saves; killing {points} backups", flush=True)
        killed, failures, started = 0, [], time.monotonic()
        for n in range(points):
            point = kill_point(rnd, total)
            try:
                killed += run_point(base, original, earlier, n, point)
            except AssertionError as exc:
                failures.append((point, str(exc)[:400]))
                print(f"FAILED at {point}: {str(exc)[:400]}", flush=True)
            if (n + 1) % 20 == 0:
                print(f"{n + 1} points, {killed} killed, {len(failures)} failures, "
                      f"{time.monotonic() - started:.0f} s", flush=True)
        print(f"points: {points}, killed: {killed}, failures: {len(failures)}, "
              f"time: {time.monotonic() - started:.0f} s")
        return 1 if failures else 0
    finally:
        shutil.rmtree(base, ignore_errors=True)


def whole_run_saves(base: Path, original: Path) -> int:
    repo = base / "reference"
    shutil.copytree(original, repo)
    before = sum(len(files) for _, _, files in os.walk(repo))
    run_restique(None, *backup_args(repo, base / "reference-cache"), cwd=base, env=kill_env())
    after = sum(len(files) for _, _, files in os.walk(repo))
    shutil.rmtree(repo)
    return after - before + 1  # the lock, saved and removed


def kill_point(rnd: random.Random, total: int):
    if rnd.random() < 0.15:
        return ("time", round(rnd.uniform(0.0, 1.5), 2))
    return (rnd.randint(1, total), rnd.choice(SAVE_STAGES))


def run_point(base: Path, original: Path, earlier: set, n: int, point) -> bool:
    repo, cache = base / "kill", base / "kill-cache"
    shutil.rmtree(repo, ignore_errors=True)
    shutil.rmtree(cache, ignore_errors=True)
    shutil.copytree(original, repo)
    save, stage = point
    if save == "time":
        run_until_changes(backup_cmd(repo, cache), repo, 0, stage, env=kill_env(), cwd=base)
        killed = True
    else:
        killed = run_killed_at_save(backup_cmd(repo, cache), save, stage, kill_env(), cwd=base).returncode == -9
    assert_sound(repo, earlier, point)
    run_restique(None, *backup_args(repo, cache), cwd=base)
    assert temporary_files(repo) == [], (point, temporary_files(repo))
    if n % 5 == 0:
        assert_latest_restores(repo, base)
    return killed


# --- resume mode ---
def timed(cmd, env, cwd=None, interrupt_when=None, sig=signal.SIGINT):
    """(wall seconds, CPU seconds of the process and its children) of cmd; interrupt_when()
    is polled and the process is sent sig once it says so."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.monotonic()
    proc = subprocess.Popen(cmd, env=env, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    while interrupt_when is not None and proc.poll() is None:
        if interrupt_when():
            proc.send_signal(sig)
            break
        time.sleep(0.02)
    _, err = proc.communicate()
    wall = time.monotonic() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if interrupt_when is None and proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed: {err.decode(errors='replace')[-500:]}")
    return wall, after.ru_utime + after.ru_stime - usage.ru_utime - usage.ru_stime


def data_bytes(repo: Path) -> int:
    return sum(os.path.getsize(os.path.join(d, f)) for d, _, files in os.walk(repo / "data") for f in files)


def measure_resume(tree: Path, repeat: int) -> int:
    """Full first backups against backups resumed after an interruption at half of the data
    (by the size of data/ against a full run's): SIGINT, and SIGKILL with checkpoints every
    tenth of a full run's time."""
    base = work_dir("backup-resume-")
    try:
        src = base / "src"
        src.mkdir()
        subprocess.run(["cp", "-a", str(tree), str(src / "tree")], check=True)
        env = clean_env()
        env.pop("RESTIQUE_TEST_INSECURE_KEYS", None)  # keys as in real use: every command pays scrypt
        results = {"full": [], "sigint-resumed": [], "sigkill-resumed": []}
        for r in range(repeat):
            full, size = run_fresh(base, f"full-{r}", env)
            results["full"].append(full)
            results["sigint-resumed"].append(run_fresh(base, f"int-{r}", env, size // 2, signal.SIGINT)[0])
            kill_env_ = dict(env, RESTIQUE_CHECKPOINT_INTERVAL=str(round(full[0] / 10, 2)))
            results["sigkill-resumed"].append(run_fresh(base, f"kill-{r}", kill_env_, size // 2, signal.SIGKILL)[0])
            print(f"repeat {r + 1}: " + ", ".join(f"{k} {v[-1][0]:.2f} s wall {v[-1][1]:.2f} s cpu"
                                                  for k, v in results.items()), flush=True)
        full_wall = statistics.median(w for w, _ in results["full"])
        full_cpu = statistics.median(c for _, c in results["full"])
        for name, values in results.items():
            wall, cpu = statistics.median(w for w, _ in values), statistics.median(c for _, c in values)
            print(f"{name:16} median {wall:6.2f} s wall ({wall / full_wall:4.0%}), "
                  f"{cpu:6.2f} s cpu ({cpu / full_cpu:4.0%} of a full first backup)")
        return 0
    finally:
        shutil.rmtree(base, ignore_errors=True)


def run_fresh(base: Path, name: str, env: dict, interrupt_at_bytes=None, sig=signal.SIGINT):
    """A fresh repository and cache and a backup of src/tree: ((wall, cpu), bytes in data/).
    With interrupt_at_bytes, that backup is interrupted once data/ holds that much, and the
    times are those of the backup that resumes it (its snapshot is checked against src)."""
    repo, cache = base / f"repo-{name}", base / f"cache-{name}"
    subprocess.run(restique_cmd() + ["-r", str(repo), "init", "-q"], env=env, check=True)
    cmd = restique_cmd() + ["-r", str(repo), "--cache-dir", str(cache), "backup", "-q", "src/tree"]
    if interrupt_at_bytes is None:
        times = timed(cmd, env, cwd=base)
    else:
        timed(cmd, env, cwd=base, interrupt_when=lambda: data_bytes(repo) >= interrupt_at_bytes, sig=sig)
        subprocess.run(["restic", "-r", str(repo), "unlock", "-q"], env=env, check=True)
        times = timed(cmd, env, cwd=base)
        restored = base / "restored"
        subprocess.run(["restic", "-r", str(repo), "restore", "-q", "latest", "--target", str(restored)],
                       env=env, check=True)
        if not same_tree(base / "src" / "tree", restored / "src" / "tree"):
            raise SystemExit(f"{name}: the resumed snapshot differs from the source")
        shutil.rmtree(restored)
    size = data_bytes(repo)
    shutil.rmtree(repo)
    shutil.rmtree(cache, ignore_errors=True)
    return times, size


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--points", type=int, default=200)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--resume-tree", type=Path, default=None)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    if args.resume_tree:
        return measure_resume(args.resume_tree, args.repeat)
    return kill_points(args.points, args.seed)


if __name__ == "__main__":
    sys.exit(main())
