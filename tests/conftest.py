"""Shared fixtures and helpers: the real restic binary (the oracle) and restique, each run as
a subprocess exactly as a user would.

Test modules import the helpers with ``from conftest import ...`` (pytest puts this directory
on sys.path): run_restic / run_restique (one command), run_program (any command, same checks),
both (independent calls side by side) and restic_and_restique (one command by both programs).
"""
import os
import shutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

from pathlib import Path

import pytest

from restique.repository.keys import INSECURE_TEST_KEYS_VARIABLE

PASSWORD = "test-password"


def clean_env(**extra):
    """Environment without any RESTIC_* variable the developer may have set."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("RESTIC_")}
    env["RESTIC_PASSWORD"] = PASSWORD
    env[INSECURE_TEST_KEYS_VARIABLE] = "1"  # see _cheapen_new_restic_key
    env.update(extra)
    return env


TRACEBACK = b"Traceback (most recent call last)"


def run_program(cmd, *args, repo=None, cache_dir=None, cwd=None, env=None, input=None,
                check=True, timeout=600):
    """Run a program the way a user would and return its CompletedProcess (bytes output).

    The command line is cmd (a list), then ``-r repo`` and ``--cache-dir cache_dir`` when
    given, then args (each passed through str()). env defaults to clean_env(); stdin is
    `input` when given, else empty. A Python traceback in stdout or stderr always fails the
    test; with check (the default) so does a non-zero exit code.
    """
    full = [str(c) for c in cmd]
    if repo is not None:
        full += ["-r", str(repo)]
    if cache_dir is not None:
        full += ["--cache-dir", str(cache_dir)]
    full += [str(a) for a in args]
    proc = subprocess.run(
        full,
        cwd=cwd,
        env=env if env is not None else clean_env(),
        input=input,
        stdin=None if input is not None else subprocess.DEVNULL,
        capture_output=True,
        timeout=timeout,
    )
    shown = " ".join(full) + (f"  (in {cwd})" if cwd else "")
    assert TRACEBACK not in proc.stderr and TRACEBACK not in proc.stdout, (
        f"{shown} printed a Python traceback:\n"
        f"stdout: {proc.stdout.decode(errors='replace')[-3000:]}\n"
        f"stderr: {proc.stderr.decode(errors='replace')[-3000:]}"
    )
    if check and proc.returncode != 0:
        raise AssertionError(
            f"{shown} exited {proc.returncode}\nstdout: {proc.stdout[-2000:]!r}\n"
            f"stderr: {proc.stderr[-2000:]!r}"
        )
    if proc.returncode == 0 and "init" in args:
        _cheapen_new_restic_key(full, cwd, env if env is not None else clean_env())
    return proc


def _cheapen_new_restic_key(command, cwd, env):
    """Both programs derive every key with scrypt tuned to take half a second, on every command;
    over the suite's thousands of commands that is most of its time. restique makes cheap keys
    when the suite's environment says so (clean_env); a local repository restic has just
    initialised gets its key replaced by a cheap one here. The key-derivation tests use keys
    made as in real use."""
    if env.get(INSECURE_TEST_KEYS_VARIABLE) != "1" or "RESTIC_PASSWORD" not in env:
        return
    if not any(os.path.basename(part) == "restic" for part in command):
        return
    location = env.get("RESTIC_REPOSITORY")
    for flag, value in zip(command, command[1:]):
        if flag in ("-r", "--repo"):
            location = value
    if not location or ":" in location:
        return
    path = Path(cwd or ".") / location
    if not (path / "keys").is_dir():
        return
    from restique.backend.base import FileType
    from restique.errors import WrongPassword
    from restique.repository.keys import INSECURE_TEST_KDF, create_key
    from restique.repository.repository import open_repository

    try:
        repo = open_repository(str(path), env["RESTIC_PASSWORD"])
    except WrongPassword:  # the test gave restic another password
        return
    with repo:
        old = repo.list_ids(FileType.KEY)
        owner = os.stat(path / "keys" / old[0])  # restic may have run as another user (setpriv)
        new = create_key(repo.backend, repo.key, env["RESTIC_PASSWORD"], INSECURE_TEST_KDF)
        os.chown(path / "keys" / new, owner.st_uid, owner.st_gid)
        for key_id in old:
            repo.backend.remove(FileType.KEY, key_id)


def both(calls):
    """Run independent calls side by side; returns their results in order.

    calls is a list of (function, args tuple, kwargs dict), e.g.
    ``both([(run_restique, (repo_a, "init"), {}), (run_restic, (repo_b, "init"), {})])``.
    The calls must not interfere (different repositories, or read-only commands).
    """
    with ThreadPoolExecutor(max_workers=len(calls)) as pool:
        futures = [pool.submit(fn, *args, **kw) for fn, args, kw in calls]
        return [f.result() for f in futures]


def restic_path():
    path = shutil.which("restic")
    if not path:
        pytest.fail("the restic binary is not installed (the README's test command installs it)")
    return path


def run_restic(repo, *args, **kw):
    """Run the real restic against repo (None: no -r); keywords as for run_program."""
    return run_program([restic_path()], *args, repo=repo, **kw)


def restique_cmd():
    """The command under test. RESTIQUE_UNDER_TEST lets a test author check a test against
    the real restic (e.g. RESTIQUE_UNDER_TEST=restic) before restique implements it."""
    override = os.environ.get("RESTIQUE_UNDER_TEST")
    return override.split() if override else [sys.executable, "-m", "restique"]


def run_restique(repo, *args, **kw):
    """Run restique as a separate process, exactly as a user would (repo None: no -r);
    keywords as for run_program."""
    return run_program(restique_cmd(), *args, repo=repo, **kw)


def restic_and_restique(repo, *args, check=False, **kw):
    """The same command run by restic and by restique on repo: returns (restic's result,
    restique's result). By default a non-zero exit fails nothing, so that the two can be
    compared; keywords as for run_program. Side by side only with --no-lock: otherwise restic
    may list the other program's lock just before it is removed and print retry messages."""
    kw["check"] = check
    calls = [(run_restic, (repo, *args), kw), (run_restique, (repo, *args), kw)]
    if "--no-lock" in args:
        return both(calls)
    return [fn(*fn_args, **fn_kw) for fn, fn_args, fn_kw in calls]


@pytest.fixture(scope="session", autouse=True)
def private_cache(tmp_path_factory):
    """Keep restic's and restique's caches out of the developer's home directory."""
    mp = pytest.MonkeyPatch()
    mp.setenv("XDG_CACHE_HOME", str(tmp_path_factory.mktemp("xdg-cache")))
    yield
    mp.undo()


@pytest.fixture(scope="session")
def sshd(tmp_path_factory):
    """OpenSSH's sshd on a private loopback port with a test key (tests/servers.py)."""
    from servers import Sshd

    server = Sshd(tmp_path_factory.mktemp("sshd"))
    server.write_keys_and_config()
    server.start()
    yield server
    server.stop()


@pytest.fixture
def restic_repo(tmp_path):
    """A fresh repository initialised by the real restic (format 2)."""
    repo = tmp_path / "restic-repo"
    run_restic(repo, "init")
    return repo
