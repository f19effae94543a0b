"""Locks shared with restic: backups side by side, a backup against an exclusive lock (and
--retry-lock), lock refresh, stale locks and unlock, restic's SIGHUP liveness probe, and the
lock removed on SIGINT, SIGTERM and SIGHUP while backup, restore, prune, check and mount are
in their main phase."""
import json
import math
import os
import shutil
import signal
import socket
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from conftest import PASSWORD, TRACEBACK, both, clean_env, restic_path, restique_cmd, run_restic, run_restique

MiB = 1 << 20
SIGNAL_CODES = {signal.SIGINT: 130, signal.SIGTERM: 143, signal.SIGHUP: 129}


def lock_ids(repo):
    """The lock files, not a lock being written (its temporary name has "-tmp-" in it)."""
    return sorted(name for name in os.listdir(repo / "locks") if "-tmp-" not in name)


def snapshot_ids(repo):
    return sorted(os.listdir(repo / "snapshots"))


def write_lock(repo, *, exclusive, pid, age=0.0, hostname=None):
    """A lock file as restic writes it (whole seconds, so `restic cat lock` shows it back)."""
    from restique.repository.repository import open_repository

    stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() - age))
    lock = {"time": stamp, "exclusive": exclusive, "hostname": hostname or socket.gethostname(),
            "username": "root", "pid": pid}
    with open_repository(str(repo), PASSWORD) as r:
        return r.save_unpacked("lock", json.dumps(lock).encode())


def start(cmd, repo, *args, env=None, **kw):
    full = [str(c) for c in cmd] + ["-r", str(repo)] + [str(a) for a in args]
    # SIGHUP as a terminal would deliver it, even when the suite runs under nohup (restique,
    # like nohup expects, keeps ignoring SIGHUP when it starts with it ignored)
    return subprocess.Popen(full, env=env or clean_env(PYTHONUNBUFFERED="1"), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, preexec_fn=_default_hangup, **kw)


def _default_hangup():
    signal.signal(signal.SIGHUP, signal.SIG_DFL)


def wait_for(condition, what, proc=None, timeout=30):
    deadline = time.monotonic() + timeout
    while not condition():
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"exited {proc.returncode} before {what}: {proc.communicate()}")
        assert time.monotonic() < deadline, f"no {what} within {timeout} s"
        time.sleep(0.02)


def finished(proc, input=None, timeout=60):
    out, err = proc.communicate(input=input, timeout=timeout)
    assert TRACEBACK not in err, err.decode(errors="replace")
    return proc.returncode, out.decode(errors="replace"), err.decode(errors="replace")


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    base = tmp_path_factory.mktemp("lock-src")
    for name in ("one", "two"):
        (base / name / "sub").mkdir(parents=True)
        (base / name / "big.bin").write_bytes(os.urandom(MiB))
        (base / name / "sub" / f"{name}.txt").write_text(name * 100)
    return base


@pytest.fixture
def live_pid():
    """A process of this host that survives restic's SIGHUP probe (nohup)."""
    proc = subprocess.Popen(["nohup", "sleep", "600"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    yield proc.pid
    proc.kill()
    proc.wait()


# --- two backups at once ---------------------------------------------------------------------

@pytest.mark.parametrize("other", ["restique", "restic"])
def test_two_backups_at_once_both_succeed_and_restore(tmp_path, small_repo, folders, other):
    repo = small_repo
    # the first one reads stdin, kept open until the second has run from start to end while
    # the first holds its lock (a slowed-down backup was not slow enough on a busy machine)
    first = start(restique_cmd(), repo, "backup", "--stdin", "--stdin-filename", "one.bin", stdin=subprocess.PIPE)
    wait_for(lambda: lock_ids(repo), "lock of the first backup", first)
    second = run_restique if other == "restique" else run_restic
    second(repo, "backup", folders / "two")
    assert first.poll() is None
    data = (folders / "one" / "big.bin").read_bytes()
    code, out, err = finished(first, input=data)
    assert code == 0, err
    assert lock_ids(repo) == []
    assert len(snapshot_ids(repo)) == 2
    run_restic(repo, "check", "--read-data")
    assert run_restique(repo, "dump", "--path", "/one.bin", "latest", "/one.bin").stdout == data
    target = tmp_path / "restored-two"
    run_restic(repo, "restore", "latest", "--path", folders / "two", "--target", target)
    restored = target / str(folders / "two").lstrip("/")
    assert (restored / "big.bin").read_bytes() == (folders / "two" / "big.bin").read_bytes()
    assert (restored / "sub" / "two.txt").read_text() == "two" * 100


# --- an exclusive lock of another process ------------------------------------------------------

@pytest.fixture(scope="module")
def empty_repo(tmp_path_factory):
    repo = tmp_path_factory.mktemp("lock-template") / "repo"
    run_restic(repo, "init")
    return repo


@pytest.fixture
def small_repo(tmp_path, empty_repo):
    """A private copy of an empty repository restic made."""
    shutil.copytree(empty_repo, tmp_path / "repo")
    return tmp_path / "repo"


def test_backup_against_exclusive_lock_fails_like_restic(small_repo, folders, live_pid):
    lock_id = write_lock(small_repo, exclusive=True, pid=live_pid, age=5)
    theirs, ours = both([(run_restic, (small_repo, "backup", folders / "two"), {"check": False}),
                         (run_restique, (small_repo, "backup", folders / "two"), {"check": False})])
    assert theirs.returncode == 1  # restic 0.14; exit 11 since restic 0.17
    assert ours.returncode == 11, ours.stderr
    restic_lines = theirs.stderr.decode().strip().splitlines()
    (line,) = ours.stderr.decode().strip().splitlines()
    assert restic_lines[0].startswith("unable to create lock in backend: repository is already locked exclusively")
    assert line.startswith("Fatal: " + restic_lines[0] + ", "), (line, restic_lines)
    created = restic_lines[1].split(" (")[0]  # the age differs
    assert f", {created} (" in line and f", {restic_lines[2]}; {restic_lines[3]}" in line, (line, restic_lines)
    assert f"PID {live_pid} " in line and lock_id[:8] in line
    assert lock_ids(small_repo) == [lock_id] and snapshot_ids(small_repo) == []


def test_retry_lock_waits_then_gives_up_or_gets_the_lock(small_repo, folders, live_pid):
    """The retry time is a multiple of what a command failing at its first lock attempt takes
    here, so that a busy machine's first attempt ends well before it."""
    from restique.cli.fmt import format_go_duration

    lock_id = write_lock(small_repo, exclusive=True, pid=live_pid)
    began = time.monotonic()
    assert run_restique(small_repo, "backup", folders / "two", check=False).returncode == 11
    wait = max(1, math.ceil(3 * (time.monotonic() - began)))
    waiting = "repo already locked, waiting up to {} for the lock".format

    began = time.monotonic()
    proc = run_restique(small_repo, "--retry-lock", f"{wait}s", "backup", folders / "two", check=False)
    assert proc.returncode == 11 and time.monotonic() - began >= wait
    assert proc.stdout.decode().splitlines()[0] == waiting(format_go_duration(wait))
    assert len(proc.stderr.splitlines()) == 1 and b"already locked exclusively" in proc.stderr

    proc = start(restique_cmd(), small_repo, "--retry-lock", f"{2 * wait}s", "backup", folders / "two")
    assert proc.stdout.readline().decode() == waiting(format_go_duration(2 * wait)) + "\n"
    os.remove(small_repo / "locks" / lock_id)  # the other process ends
    code, _, err = finished(proc)
    assert code == 0, err
    assert len(snapshot_ids(small_repo)) == 1 and lock_ids(small_repo) == []


def test_retry_lock_shorter_than_the_first_attempt_still_says_so_and_tries_again(small_repo, live_pid, monkeypatch):
    """A first attempt that outlasts --retry-lock (a slow backend) still prints the waiting
    message and makes restic's last attempt at the deadline, rather than failing silently."""
    from restique.repository import locks
    from restique.repository.repository import open_repository

    write_lock(small_repo, exclusive=True, pid=live_pid)
    attempts, waits = [], []
    slow_conflicts = locks.Lock._conflicts

    def conflicts(self):
        attempts.append(time.monotonic())
        time.sleep(0.2)  # longer than the whole retry time below
        return slow_conflicts(self)

    monkeypatch.setattr(locks.Lock, "_conflicts", conflicts)
    with open_repository(str(small_repo), PASSWORD) as repo:
        with pytest.raises(locks.LockFailed, match="already locked exclusively"):
            locks.Lock(repo, exclusive=False, retry_seconds=0.05, on_wait=lambda: waits.append(1))
    assert len(attempts) == 2 and waits == [1]
    assert len(lock_ids(small_repo)) == 1  # only the other holder's: ours were removed


@pytest.mark.parametrize("where", ["after the file is written", "while looking for conflicts"])
def test_an_interruption_while_locking_leaves_no_lock_file(small_repo, monkeypatch, where):
    """Ctrl-C raises wherever the main thread is: once also between writing the lock file and
    the code that removes it again (a lock left behind after `ls` was stopped)."""
    from restique.repository import locks
    from restique.repository.repository import open_repository

    with open_repository(str(small_repo), PASSWORD) as repo:
        if where == "after the file is written":
            save = repo.backend.save

            def interrupted_save(*args):
                save(*args)
                raise KeyboardInterrupt

            monkeypatch.setattr(repo.backend, "save", interrupted_save)
        else:
            monkeypatch.setattr(locks, "list_locks", lambda *a, **k: (_ for _ in ()).throw(KeyboardInterrupt))
        before = lock_ids(small_repo)
        with pytest.raises(KeyboardInterrupt):
            repo.lock(exclusive=True)
        assert lock_ids(small_repo) == before
        monkeypatch.undo()
        repo.lock(exclusive=False)  # still usable
        assert len(lock_ids(small_repo)) == len(before) + 1
    assert lock_ids(small_repo) == before


# --- refresh, stale locks, unlock ------------------------------------------------------------

def test_lock_is_refreshed_while_a_command_runs(small_repo):
    proc = start(restique_cmd(), small_repo, "backup", "--stdin", "--stdin-filename", "slow",
                 env=clean_env(RESTIQUE_LOCK_REFRESH_SECONDS="0.3"), stdin=subprocess.PIPE)
    seen = {}
    try:
        wait_for(lambda: lock_ids(small_repo), "lock", proc)
        deadline = time.monotonic() + 20  # three refreshes take 0.6 s; a busy machine takes longer
        while time.monotonic() < deadline and len(seen) < 3:
            for lock_id in lock_ids(small_repo):
                if lock_id not in seen:
                    shown = run_restic(small_repo, "--no-lock", "cat", "lock", lock_id, check=False)
                    if shown.returncode == 0:  # not replaced meanwhile
                        seen[lock_id] = json.loads(shown.stdout)
            assert len(lock_ids(small_repo)) <= 2  # the new one is written before the old goes
            time.sleep(0.05)
        code, _, err = finished(proc, input=b"data")
    finally:
        proc.kill()
    assert code == 0, err
    assert len(seen) >= 3, f"the lock was not refreshed: {seen}"
    times = sorted(lock["time"] for lock in seen.values())
    assert times[0] < times[-1] and {lock["pid"] for lock in seen.values()} == {proc.pid}
    assert lock_ids(small_repo) == []


def test_a_failed_lock_refresh_is_reported_and_the_command_goes_on(tmp_path, small_repo):
    """restic warns `unable to refresh lock: ...` and carries on; so does restique."""
    repo = shutil.copytree(small_repo, tmp_path / "copy")
    proc = start(restique_cmd(), repo, "backup", "--stdin", "--stdin-filename", "slow",
                 env=clean_env(RESTIQUE_LOCK_REFRESH_SECONDS="0.3"), stdin=subprocess.PIPE)
    locks = repo / "locks"
    try:
        wait_for(lambda: lock_ids(repo), "lock", proc)
        first = lock_ids(repo)
        # after its first refresh: right after taking it the command still lists locks/ for
        # conflicts, and a file there would fail that check instead of a refresh
        wait_for(lambda: lock_ids(repo) not in ([], first), "lock refresh", proc)
        shutil.move(locks, tmp_path / "locks-aside")
        locks.write_text("not a folder")  # no lock file can be written now, not even by root
        time.sleep(1.2)
        locks.unlink()
        shutil.move(tmp_path / "locks-aside", locks)
        code, _, err = finished(proc, input=b"data")
    finally:
        proc.kill()
    assert code == 0, err
    assert "unable to refresh lock: " in err, err  # finished() has checked for a traceback


def test_unlock_removes_stale_locks_and_keeps_live_ones(small_repo, live_pid, tmp_path):
    dead = subprocess.Popen(["true"])
    dead.wait()
    stale_old = write_lock(small_repo, exclusive=False, pid=live_pid, age=31 * 60)
    stale_dead = write_lock(small_repo, exclusive=True, pid=dead.pid)
    live = write_lock(small_repo, exclusive=False, pid=live_pid)
    foreign = write_lock(small_repo, exclusive=True, pid=live_pid, hostname="otherhost")
    copy = tmp_path / "copy"
    shutil.copytree(small_repo, copy)

    blocked = run_restique(small_repo, "backup", "--stdin", input=b"x", check=False)
    assert blocked.returncode == 11 and b"already locked" in blocked.stderr  # stale locks block too, as in restic

    ours, theirs = run_restique(small_repo, "unlock"), run_restic(copy, "unlock")
    assert ours.stdout == theirs.stdout == b"successfully removed locks\n"
    assert lock_ids(small_repo) == lock_ids(copy) == sorted([live, foreign])
    assert stale_old not in lock_ids(small_repo) and stale_dead not in lock_ids(small_repo)
    run_restique(small_repo, "unlock", "--remove-all")
    assert lock_ids(small_repo) == []


def test_restic_liveness_probe_does_not_stop_restique(small_repo):
    """restic's unlock sends SIGHUP to the owner of every lock of this host to see whether it
    is alive; a running restique must take that as restic does: keep going."""
    proc = start(restique_cmd(), small_repo, "backup", "--stdin", "--stdin-filename", "probe", stdin=subprocess.PIPE)
    try:
        wait_for(lambda: lock_ids(small_repo), "lock", proc)
        (ours,) = lock_ids(small_repo)
        run_restic(small_repo, "unlock")
        time.sleep(0.3)
        assert proc.poll() is None, f"restique stopped on restic's probe: {proc.communicate()}"
        assert lock_ids(small_repo) == [ours]
        code, out, err = finished(proc, input=b"probe data")
    finally:
        proc.kill()
    assert code == 0, err
    assert len(snapshot_ids(small_repo)) == 1 and lock_ids(small_repo) == []


# --- signals in the main phase of long commands -----------------------------------------------

@pytest.fixture(scope="module")
def prunable_repo(tmp_path_factory, folders):
    """Two files backed up together, then one of them forgotten: prune has a pack to repack."""
    base = tmp_path_factory.mktemp("signal-repo")
    repo, source = base / "repo", base / "src"
    source.mkdir()
    for name in ("kept.bin", "dropped.bin"):
        (source / name).write_bytes(os.urandom(2 * MiB))
    run_restique(repo, "init")
    run_restique(repo, "backup", source)
    os.remove(source / "dropped.bin")
    run_restique(repo, "backup", source)
    run_restique(repo, "forget", "--keep-last", "1")
    return repo


def data_files(repo):
    return sum(len(files) for _, _, files in os.walk(repo / "data"))


def printed(line):
    def started(proc, repo, workdir):
        wait_for(lambda: proc.stdout.readline().decode().startswith(line), f"line {line!r}", proc)
    return started


def backup_phase(proc, repo, workdir):
    before = data_files(repo)
    proc.stdin.write(os.urandom(24 * MiB))
    proc.stdin.flush()
    wait_for(lambda: data_files(repo) > before, "pack written by the backup", proc)


def mount_phase(proc, repo, workdir):
    wait_for(lambda: os.path.isdir(workdir / "mnt" / "ids") and os.listdir(workdir / "mnt" / "ids"),
             "mounted snapshots", proc)


SLOW = ("--limit-download", "256")  # long enough that a signal sent from a busy machine lands first
COMMANDS = {
    "backup": (("backup", "--stdin", "--stdin-filename", "big"), backup_phase),
    "restore": (SLOW + ("restore", "latest", "--target", "{workdir}/target"), printed("restoring")),
    "prune": (SLOW + ("prune", "--max-unused", "0"), printed("repacking packs")),
    "check": (SLOW + ("check", "--read-data"), printed("read all data")),
    "mount": (("mount", "{workdir}/mnt"), mount_phase),
}


def interrupt(repo, workdir, command, signum):
    args, in_main_phase = COMMANDS[command]
    args = [a.format(workdir=workdir) for a in args]
    (workdir / "mnt").mkdir()
    proc = start(restique_cmd(), repo, *args, stdin=subprocess.PIPE)
    try:
        in_main_phase(proc, repo, workdir)
        assert lock_ids(repo), f"{command} holds no lock"
        proc.send_signal(signum)
        return finished(proc)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        subprocess.run(["fusermount3", "-u", "-z", str(workdir / "mnt")], capture_output=True)


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_signals_remove_the_lock(prunable_repo, tmp_path, command):
    """SIGINT, SIGTERM and SIGHUP each stop the command with 128 + the signal's number and
    remove its lock (restic 0.14 leaves it after SIGTERM); what was written stays consistent."""
    runs = {}
    for signum in SIGNAL_CODES:
        workdir = tmp_path / signal.Signals(signum).name
        workdir.mkdir()
        shutil.copytree(prunable_repo, workdir / "repo")
        runs[signum] = workdir
    with ThreadPoolExecutor(len(runs)) as pool:
        results = dict(zip(runs, pool.map(lambda s: interrupt(runs[s] / "repo", runs[s], command, s), runs)))
    for signum, (code, out, err) in results.items():
        repo = runs[signum] / "repo"
        assert code == SIGNAL_CODES[signum], (signal.Signals(signum).name, code, out[-500:], err)
        assert lock_ids(repo) == [], f"{command} left its lock after {signal.Signals(signum).name}"
        assert not os.path.ismount(runs[signum] / "mnt")
        if command in ("backup", "prune"):
            run_restic(repo, "check")
