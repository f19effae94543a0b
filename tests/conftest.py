"""Shared fixtures: the real restic binary (the oracle) and restique run as a subprocess."""
import os
import shutil
import subprocess
import sys

import pytest

PASSWORD = "test-password"


def clean_env(**extra):
    """Environment without any RESTIC_* variable the developer may have set."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("RESTIC_")}
    env["RESTIC_PASSWORD"] = PASSWORD
    env.update(extra)
    return env


def _run(cmd, repo, args, env=None, input=None, check=True, cache_dir=None):
    full = list(cmd)
    if repo is not None:
        full += ["-r", str(repo)]
    if cache_dir is not None:
        full += ["--cache-dir", str(cache_dir)]
    full += [str(a) for a in args]
    proc = subprocess.run(
        full,
        env=env if env is not None else clean_env(),
        input=input,
        stdin=None if input is not None else subprocess.DEVNULL,
        capture_output=True,
        timeout=600,
    )
    if check and proc.returncode != 0:
        raise AssertionError(
            f"{' '.join(full)} exited {proc.returncode}\nstdout: {proc.stdout[-2000:]!r}\n"
            f"stderr: {proc.stderr[-2000:]!r}"
        )
    return proc


def restic_path():
    path = shutil.which("restic")
    if not path:
        pytest.fail("the restic binary is not installed (the README's test command installs it)")
    return path


def run_restic(repo, *args, **kw):
    """Run the real restic against repo; returns CompletedProcess (bytes)."""
    return _run([restic_path()], repo, args, **kw)


def restique_cmd():
    """The command under test. RESTIQUE_UNDER_TEST lets a test author check a test against
    the real restic (e.g. RESTIQUE_UNDER_TEST=restic) before restique implements it."""
    override = os.environ.get("RESTIQUE_UNDER_TEST")
    return override.split() if override else [sys.executable, "-m", "restique"]


def run_restique(repo, *args, **kw):
    """Run restique as a separate process, exactly as a user would."""
    return _run(restique_cmd(), repo, args, **kw)


@pytest.fixture(scope="session", autouse=True)
def private_cache(tmp_path_factory):
    """Keep restic's and restique's caches out of the developer's home directory."""
    mp = pytest.MonkeyPatch()
    mp.setenv("XDG_CACHE_HOME", str(tmp_path_factory.mktemp("xdg-cache")))
    yield
    mp.undo()


@pytest.fixture
def restic_repo(tmp_path):
    """A fresh repository initialised by the real restic (format 2)."""
    repo = tmp_path / "restic-repo"
    run_restic(repo, "init")
    return repo
