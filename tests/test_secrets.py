"""The password stays secret, and what restique writes is the owner's alone.

The password never appears in any process's command line (restique's own, rclone's, a
--stdin-from-command child's), in an error message, in the cache or in a temporary file; a
--password-command's output is never printed, also when the command fails. Repository files
and folders get the modes restic 0.14 gives them (folders 0700, files 0400, whatever the
umask), the cache folders 0700 and its files 0600.
"""
import json
import os
import subprocess
import time
from pathlib import Path

import pytest

from conftest import both, clean_env, restique_cmd, run_restic, run_restique

SECRET = "s3cret-Pa55word-7f1c"  # distinctive: found wherever it leaks to
ENV = {"RESTIC_PASSWORD": SECRET}


def _env(tmp: Path, **extra) -> dict:
    """The suite's environment with SECRET as password, temporary files and the cache kept
    in the test's folder."""
    (tmp / "tmpdir").mkdir(exist_ok=True)
    env = clean_env(TMPDIR=str(tmp / "tmpdir"), XDG_CACHE_HOME=str(tmp / "cache"))
    env["RESTIC_PASSWORD"] = SECRET
    env.update(extra)
    return env


def _modes(root: Path, family: str) -> set:
    """(kind, mode, path with ids replaced) of everything below root; the cache's top folder
    is named after the program, so family replaces it."""
    import re

    out = set()
    for path in [root, *root.rglob("*")]:
        st = os.lstat(path)
        rel = str(path.relative_to(root)).replace(family, "PROGRAM")
        rel = re.sub(r"[0-9a-f]{64}", "ID", rel)
        rel = re.sub(r"(^|/)[0-9a-f]{2}(/|$)", r"\1XX\2", rel)
        out.add(("d" if path.is_dir() else "f", oct(st.st_mode & 0o7777), rel))
    return out


@pytest.mark.parametrize("umask", [0o000, 0o077])
def test_repository_and_cache_modes_as_restic(tmp_path, umask):
    """init, backup, key add: every file and folder of the repository and of the cache has
    the mode restic gives it, whatever the umask."""
    src = tmp_path / "src"
    src.mkdir()
    (src / "file").write_bytes(b"data\n")
    (tmp_path / "new-password").write_text("another " + SECRET)
    old = os.umask(umask)
    try:
        for tool in (run_restic, run_restique):
            name = "restic" if tool is run_restic else "restique"
            repo, cache = tmp_path / f"repo-{name}", tmp_path / f"cache-{name}"
            tool(repo, "init", env=_env(tmp_path))
            tool(repo, "--cache-dir", cache, "backup", src, env=_env(tmp_path))
            tool(repo, "key", "add", "--new-password-file", tmp_path / "new-password", env=_env(tmp_path))
    finally:
        os.umask(old)
    repo_modes = {t: _modes(tmp_path / f"repo-{t}", t) for t in ("restic", "restique")}
    assert repo_modes["restique"] == repo_modes["restic"]
    assert {m for kind, m, _ in repo_modes["restique"]} == {"0o700", "0o400"}
    cache_modes = {t: _modes(tmp_path / f"cache-{t}", t) for t in ("restic", "restique")}
    assert cache_modes["restique"] == cache_modes["restic"]
    assert {m for kind, m, p in cache_modes["restique"] if kind == "d"} == {"0o700"}
    assert {m for kind, m, p in cache_modes["restique"] if kind == "f" and p.endswith("/ID")} == {"0o600"}


def _descendants(pid: int) -> dict:
    """pid -> command line (list of bytes) of pid and every process below it."""
    parents = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
                parents[int(entry)] = int(stat.rsplit(")", 1)[1].split()[1])
            except OSError:
                continue
    family = {pid}
    grew = True
    while grew:
        more = {p for p, parent in parents.items() if parent in family} - family
        family |= more
        grew = bool(more)
    out = {}
    for p in family:
        try:
            out[p] = Path(f"/proc/{p}/cmdline").read_bytes().split(b"\0")
        except OSError:
            pass
    return out


def _watch(argv, env, seconds: float):
    """Run argv; while it runs, collect the command lines of it and its children. Returns
    (CompletedProcess-like (returncode, stdout, stderr), every command line seen)."""
    proc = subprocess.Popen(argv, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    seen = {}
    deadline = time.monotonic() + seconds
    while proc.poll() is None and time.monotonic() < deadline:
        seen.update({(p, b" ".join(c)): c for p, c in _descendants(proc.pid).items()})
        time.sleep(0.05)
    out, err = proc.communicate(timeout=60)
    return proc.returncode, out, err, [b" ".join(c) for c in seen.values()]


@pytest.mark.parametrize("backend", ["local", "rclone"])
def test_password_not_in_any_command_line(tmp_path, backend):
    """A backup whose source is a command that takes a moment: neither restique's command
    line nor its children's (the source command, rclone) hold the password, given in the
    environment or in a password file."""
    repo = str(tmp_path / "repo") if backend == "local" else f"rclone::local:{tmp_path / 'repo'}"
    env = _env(tmp_path)
    run_restique(repo, "init", env=env, timeout=120)
    (tmp_path / "pw").write_text(SECRET + "\n")
    file_env = dict(env)
    del file_env["RESTIC_PASSWORD"]
    for how, run_env, extra in (("environment", env, []), ("file", file_env, ["--password-file", str(tmp_path / "pw")])):
        argv = [*restique_cmd(), "-r", repo, *extra, "backup", "--stdin-from-command", "--stdin-filename", "x",
                "--", "sh", "-c", "sleep 1.5; echo data"]
        code, out, err, lines = _watch(argv, run_env, 60)
        assert code == 0, err
        assert any(b"sleep 1.5" in line for line in lines)  # the watch saw the child
        if backend == "rclone":
            assert any(b"serve restic" in line for line in lines)
        leaks = [line for line in lines if SECRET.encode() in line]
        assert not leaks, f"password in a command line ({how}): {leaks}"


def test_lock_and_temporary_files_while_running(tmp_path):
    """While a backup runs, its lock file is 0400 and its cache folder 0700, as restic makes
    them; nothing restique writes holds the password."""
    repo = tmp_path / "repo"
    env = _env(tmp_path)
    run_restique(repo, "init", env=env)
    argv = [*restique_cmd(), "-r", str(repo), "backup", "--stdin-from-command", "--stdin-filename", "x",
            "--", "sh", "-c", "sleep 1.5; echo data"]
    proc = subprocess.Popen(argv, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    lock_modes = set()
    deadline = time.monotonic() + 30
    while proc.poll() is None and time.monotonic() < deadline:
        for lock in (repo / "locks").iterdir():
            if "-tmp-" in lock.name:  # being written (0600 until it is complete, as restic's)
                continue
            try:
                lock_modes.add(oct(os.stat(lock).st_mode & 0o777))
            except FileNotFoundError:
                pass
        time.sleep(0.05)
    proc.communicate(timeout=60)
    assert proc.returncode == 0
    assert lock_modes == {"0o400"}
    cache = tmp_path / "cache" / "restique"
    assert all(oct(p.stat().st_mode & 0o777) == "0o700" for p in [cache, *cache.rglob("*")] if p.is_dir())
    _assert_not_written(tmp_path)


def _assert_not_written(root: Path, allowed=()) -> None:
    """No file below root (but the password files in allowed) holds the password, as text or
    as the bytes of any common encoding."""
    needles = [SECRET.encode(), SECRET.encode("utf-16-le"), SECRET.encode().hex().encode()]
    for path in root.rglob("*"):
        if path.is_file() and not path.is_symlink() and path.name not in allowed:
            data = path.read_bytes()
            assert not any(n in data for n in needles), f"password written to {path}"


def test_password_not_in_files(tmp_path):
    """The commands that handle passwords (init, backup, restore, key add/passwd, copy with a
    second password, check --read-data, prune, dump): neither the repository, the cache nor the
    temporary folder holds a password afterwards."""
    env = _env(tmp_path)
    src = tmp_path / "src"
    src.mkdir()
    (src / "file").write_bytes(b"not a secret\n" * 100)
    (tmp_path / "pw-new").write_text("new-" + SECRET)
    (tmp_path / "pw-from").write_text(SECRET)
    repo, other = tmp_path / "repo", tmp_path / "other"
    run_restique(repo, "init", env=env)
    run_restique(other, "init", env=env)
    run_restique(repo, "backup", src, env=env)
    run_restique(repo, "restore", "latest", "--target", tmp_path / "restored", env=env)
    run_restique(repo, "dump", "-a", "zip", "latest", "/", "--target", tmp_path / "dump.zip", env=env)
    run_restique(repo, "key", "add", "--new-password-file", tmp_path / "pw-new", env=env)
    run_restique(other, "copy", "--from-repo", repo, "--from-password-file", tmp_path / "pw-from", env=env)
    run_restique(other, "key", "passwd", "--new-password-file", tmp_path / "pw-new", env=env)
    run_restique(repo, "forget", "--keep-last", "1", "--prune", env=env)
    run_restique(repo, "check", "--read-data", env=env)
    _assert_not_written(tmp_path, allowed=("pw-new", "pw-from"))
    assert not list((tmp_path / "tmpdir").iterdir()), "temporary files left behind"


FAILING_COMMANDS = [
    ("wrong password", {"RESTIC_PASSWORD": "wrong-" + SECRET}, []),
    ("command fails", {}, ["--password-command", f"sh -c 'echo {SECRET}; echo oops >&2; exit 3'"]),
    ("command killed", {}, ["--password-command", f"sh -c 'echo {SECRET}; kill -9 $$'"]),
    ("command prints a wrong password", {}, ["--password-command", f"echo wrong-{SECRET}"]),
    ("no repository", {"RESTIC_REPOSITORY": "/nonexistent/" + "repo"}, []),
    ("password file missing", {}, ["--password-file", "/nonexistent/pw"]),
]


@pytest.fixture(scope="module")
def secret_repo(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("secret-repo")
    run_restique(tmp / "repo", "init", env=_env(tmp))
    return tmp


@pytest.mark.parametrize("case", FAILING_COMMANDS, ids=[c[0] for c in FAILING_COMMANDS])
def test_password_not_in_error_messages(secret_repo, case):
    """A failing command (wrong password, a password command that fails, is killed or prints
    a wrong password) says so in one line and never shows the password or the password
    command's output; restic 0.14 does the same, and restique's exit code is restic's (the
    documented 12 for a wrong password, 10 for no repository, where restic 0.14 says 1)."""
    name, extra_env, args = case
    repo = secret_repo / "repo"
    env = _env(secret_repo, **extra_env)
    if args:
        del env["RESTIC_PASSWORD"]
    if "RESTIC_REPOSITORY" in extra_env:
        repo = None
    for json_flag in ([], ["--json"]):
        restic, restique = both([(tool, (repo, *args, *json_flag, "-v", "snapshots"),
                                  {"env": env, "check": False, "timeout": 60})
                                 for tool in (run_restic, run_restique)])
        for proc in (restic, restique):
            assert proc.returncode != 0
            assert SECRET.encode() not in proc.stdout + proc.stderr
        # restic's documented codes where restic 0.14 still says 1
        assert restique.returncode == {"wrong password": 12, "command prints a wrong password": 12,
                                       "no repository": 10}.get(name, restic.returncode)
        lines = restique.stderr.decode().strip().splitlines()
        assert lines[-1].startswith("Fatal: ")
        if "fails" in name:
            assert lines == ["oops", "Fatal: Resolving password failed: exit status 3"]
            assert restic.stderr.decode().strip().splitlines() == ["oops", lines[1][len("Fatal: "):]]


@pytest.mark.parametrize("command, message", [
    (" ", "Resolving password failed: command string is empty"),
    ("no-such-password-program", 'Resolving password failed: exec: "no-such-password-program": executable file not found in $PATH'),
    ("/nonexistent/program", "Resolving password failed: fork/exec /nonexistent/program: no such file or directory"),
])
def test_password_command_that_cannot_run(tmp_path, command, message):
    """restic's message for a password command that cannot be started, one line, no traceback."""
    env = clean_env()
    del env["RESTIC_PASSWORD"]
    restic, restique = both([(tool, (tmp_path / "repo", "--password-command", command, "snapshots"),
                              {"env": env, "check": False}) for tool in (run_restic, run_restique)])
    assert restic.stderr.decode().strip() == message
    assert restique.stderr.decode().strip() == "Fatal: " + message
    assert restic.returncode == restique.returncode == 1
