"""A stop signal at any moment of a command's life, start-up included, ends it the way restic's
would: exit 128 + the signal (130 after Ctrl-C), no traceback, no lock and no mount left behind.

The moments are spread evenly over the first part of each command's life. Signals that land
while modules are still being imported once gave "Fatal: internal error" (the import machinery
raised on the way out), a crash inside an extension module's set-up, or a traceback; a signal
between mounting and serving left a dead mountpoint."""
import os
import signal
import subprocess
import sys
import time

import pytest

from conftest import clean_env, restique_cmd, run_restic

MOMENTS = [i * 0.025 for i in range(14)]  # 0 to 325 ms after the process starts


@pytest.fixture(scope="module")
def repo(tmp_path_factory):
    base = tmp_path_factory.mktemp("signals")
    (base / "data").mkdir()
    (base / "data" / "file").write_bytes(b"signal" * 1000)
    run_restic(base / "repo", "init")
    run_restic(base / "repo", "backup", base / "data")
    return base / "repo"


def stop_at(cmd, delay, signum):
    """(exit code, stderr) of cmd sent signum delay seconds after it started."""
    proc = subprocess.Popen(cmd, env=clean_env(), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)
    time.sleep(delay)
    proc.send_signal(signum)
    try:
        _, err = proc.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        raise AssertionError(f"{cmd} did not stop {delay:.3f}s after signal {signum}") from None
    return proc.returncode, err.decode(errors="replace")


# the modules that run before restique's first Ctrl-C handler is set (cli.entry's last line)
BEFORE_THE_HANDLER = ("__init__.py", "__main__.py", "entry.py")


def before_main(err: str) -> bool:
    """Python's own report of a Ctrl-C that came before restique's first handler was set: in
    the interpreter's start-up, or in the few lines before cli.entry sets it (the console
    script, `python -m`, the package's __init__ files); never in any other module of ours."""
    ours = [line.split('"')[1] for line in err.splitlines()
            if line.strip().startswith('File "') and "/restique/" in line]
    return err.rstrip().endswith("KeyboardInterrupt") and all(
        path.endswith(BEFORE_THE_HANDLER) for path in ours)


@pytest.mark.parametrize("ignored", [False, True], ids=["sigint-default", "sigint-ignored"])
def test_a_ctrl_c_while_modules_load_ends_as_restic_does(ignored):
    """cli.entry, the first module the command runs, stops a Ctrl-C that comes while the rest
    loads with restic's line and exit code, not Python's traceback (even when started with
    SIGINT ignored, as main() handles it then too)."""
    code = "import restique.cli.entry, time; print('loaded', flush=True); time.sleep(30)"
    proc = subprocess.Popen([sys.executable, "-c", code], env=clean_env(), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE,
                            preexec_fn=(lambda: signal.signal(signal.SIGINT, signal.SIG_IGN)) if ignored else None)
    assert proc.stdout.readline() == b"loaded\n"
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=30)
    assert (proc.returncode, err) == (130, b"signal interrupt received, cleaning up\n")


def assert_no_locks(repo):
    assert run_restic(repo, "list", "locks", "--no-lock").stdout == b""


@pytest.mark.parametrize("signum, code", [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_a_signal_during_start_up_ends_the_command_cleanly(repo, signum, code):
    for delay in MOMENTS:
        rc, err = stop_at(restique_cmd() + ["-r", str(repo), "ls", "latest"], delay, signum)
        # before the program's own code runs, the signal's default action ends it (Python's
        # own Ctrl-C traceback included, or its "Could not import runpy module"); once it
        # runs, restic's exit code and no traceback
        if rc == -signum or (signum == signal.SIGINT and before_main(err)):
            continue
        assert rc in (code, 0), (delay, rc, err)
        assert "Traceback" not in err and "internal error" not in err, (delay, err)
        if rc == 130:
            assert err.endswith("signal interrupt received, cleaning up\n"), (delay, err)
    assert_no_locks(repo)


def test_a_signal_around_mounting_leaves_nothing_mounted(repo, tmp_path):
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    for i, delay in enumerate([0.3 + m * 2 for m in MOMENTS]):  # 0.3 to 0.95 s: mounting
        signum = (signal.SIGTERM, signal.SIGINT)[i % 2]
        rc, err = stop_at(restique_cmd() + ["-r", str(repo), "mount", str(mnt)], delay, signum)
        mounted = os.path.ismount(mnt)
        if mounted:
            subprocess.run(["fusermount3", "-u", "-z", str(mnt)], check=False)
        assert not mounted, (delay, rc, err)
        assert os.listdir(mnt) == []  # not a dead mount ("transport endpoint is not connected")
        if rc == -signum or (signum == signal.SIGINT and before_main(err)):
            continue  # a loaded machine may not have started restique's own code yet
        assert rc == 128 + signum, (delay, rc, err)
        assert "Traceback" not in err, (delay, err)
    assert_no_locks(repo)
