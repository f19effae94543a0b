"""Killing a command with SIGKILL at points spread over its run, for the crash-safety tests
(prune, backup) and scripts/backup_kill.py.

Two ways to pick a point: by watching the repository's data/ and index/ folders change
(any program, restic included), or by restique's own switch in its local backend, which
SIGKILLs the process at its Nth save at a chosen stage of that save (before it starts,
half written, written and synced but not renamed, renamed) or just before its Nth removal."""
import os
import signal
import subprocess
import time
from typing import List, Optional, Sequence, Set

from conftest import clean_env

KILL_VARIABLE = "RESTIQUE_TEST_KILL_AT_SAVE"
SAVE_STAGES = ("start", "partial", "synced", "renamed")
REMOVAL = "remove"  # the stage that kills just before the Nth removal instead


def repository_files(repo) -> Set[str]:
    """The names of the files in data/ and index/."""
    found = set()
    for folder in ("data", "index"):
        for entry in os.scandir(os.path.join(repo, folder)):
            if entry.is_dir():
                found.update(e.name for e in os.scandir(entry.path))
            else:
                found.add(entry.name)
    return found


def temporary_files(repo) -> List[str]:
    """Every temporary file of an unfinished save anywhere in the repository."""
    return sorted(os.path.join(d, f) for d, _, files in os.walk(repo) for f in files if "-tmp-" in f)


def run_until_changes(cmd: Sequence[str], repo, changes: int, after_seconds: float = 0.0,
                      env: Optional[dict] = None, cwd=None) -> int:
    """Start cmd and SIGKILL it once `changes` files of data/ and index/ have appeared or
    vanished and after_seconds have passed. Returns how many changes were seen."""
    before = repository_files(repo)
    proc = subprocess.Popen(list(cmd), env=env or clean_env(), cwd=cwd, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    start, seen = time.monotonic(), 0
    try:
        while proc.poll() is None:
            seen = len(before ^ repository_files(repo))
            if seen >= changes and time.monotonic() - start >= after_seconds:
                proc.send_signal(signal.SIGKILL)
                break
    finally:
        proc.wait()
    return seen


def run_killed_at_save(cmd: Sequence[str], save: int, stage: str, env: Optional[dict] = None,
                       cwd=None) -> subprocess.CompletedProcess:
    """Run restique with its kill switch set: it SIGKILLs itself at its `save`th save, at
    `stage` (with stage REMOVAL: before its `save`th removal). returncode is -9 when the point was reached (else the run's own code)."""
    assert stage in SAVE_STAGES + (REMOVAL,), stage
    run_env = dict(env or clean_env())
    run_env[KILL_VARIABLE] = f"{save}:{stage}"
    return subprocess.run(list(cmd), env=run_env, cwd=cwd, capture_output=True, stdin=subprocess.DEVNULL,
                          timeout=300)


def spread(total: int, count: int) -> List[int]:
    """count points from 1 to total, evenly spread (repeats where total < count)."""
    if count <= 1:
        return [1]
    return [1 + (total - 1) * k // (count - 1) for k in range(count)]
