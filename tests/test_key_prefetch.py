"""The key derivation started before the command line is parsed (cli.key_prefetch) and the
derivations it hands over (repository.derivations): the prefetch starts only in the common
case, the opening takes only a result made from exactly its own inputs, derivations run one at
a time (each has a 32 MiB work area) in a thread that takes no signals, and commands give the
same results and errors with and without it."""
import hashlib
import json
import signal
import sys
import threading
import time

import pytest

from conftest import PASSWORD, clean_env, run_program, run_restique
from restique.cli import key_prefetch
from restique.cli.main import COMMANDS
from restique.repository import derivations

KEY_ID = "ab" * 32


@pytest.fixture
def local_repo(tmp_path, monkeypatch):
    for name in ("RESTIC_REPOSITORY", "RESTIC_PASSWORD_FILE", "RESTIC_PASSWORD_COMMAND"):
        monkeypatch.delenv(name, raising=False)
    (tmp_path / "keys").mkdir()
    (tmp_path / "keys" / KEY_ID).write_text("{}")
    return tmp_path


def key_file(argv):
    return key_prefetch._key_file([str(a) for a in argv], COMMANDS)


@pytest.mark.parametrize("form", ["-r", "--repo", "--repo=", "-r-attached", "local:", "env"])
def test_prefetch_finds_the_only_key_of_a_local_repository(local_repo, monkeypatch, form):
    argv = {"-r": ["-r", local_repo], "--repo": ["--repo", local_repo], "--repo=": [f"--repo={local_repo}"],
            "-r-attached": [f"-r{local_repo}"], "local:": ["-r", f"local:{local_repo}"], "env": []}[form]
    if form == "env":
        monkeypatch.setenv("RESTIC_REPOSITORY", str(local_repo))
    assert key_file([*argv, "--cache-dir", "/nowhere", "snapshots", "--json"]) == str(local_repo / "keys" / KEY_ID)


@pytest.mark.parametrize("args", [
    ["init"], ["version"], ["help", "snapshots"], ["cache"],
    ["--password-file", "pw", "snapshots"], ["-p", "pw", "snapshots"], ["-ppw", "snapshots"],
    ["--password-command", "echo x", "snapshots"], ["--profile", "home", "snapshots"],
    ["--repository-file", "where", "snapshots"], ["snapshots", "--", "-p"],
])
def test_prefetch_leaves_other_commands_and_password_sources_alone(local_repo, args):
    argv = ["-r", local_repo, *args]
    expected = str(local_repo / "keys" / KEY_ID) if args == ["snapshots", "--", "-p"] else None
    assert key_file(argv) == expected


@pytest.mark.parametrize("args, found", [
    (["--cache-dir", "cache", "snapshots"], True),  # a value that names a command is still a value
    (["--cache-dir", "snapshots", "init"], False),
    (["-o", "s3.region=x", "--key-hint", "ls", "ls"], True),
    (["--retry-lock", "1m", "--compression", "max", "check"], True),
    (["stray", "snapshots"], False),  # click refuses the stray argument: nothing to derive for
])
def test_prefetch_skips_the_values_of_global_options(local_repo, args, found):
    expected = str(local_repo / "keys" / KEY_ID) if found else None
    assert key_file(["-r", local_repo, *args]) == expected


def test_prefetch_leaves_other_backends_and_several_keys_alone(local_repo, monkeypatch):
    assert key_file(["-r", "sftp:host:/srv/repo", "snapshots"]) is None
    with pytest.raises(FileNotFoundError):  # start() catches it
        key_file(["-r", local_repo / "missing", "snapshots"])
    key_prefetch.start(["-r", str(local_repo / "missing"), "snapshots"], COMMANDS)
    (local_repo / "keys" / ("cd" * 32)).write_text("{}")
    assert key_file(["-r", local_repo, "snapshots"]) is None
    monkeypatch.setenv("RESTIC_PASSWORD_FILE", "pw")
    assert key_file(["-r", local_repo, "snapshots"]) is None


def test_prefetch_ignores_unreadable_key_files(local_repo, monkeypatch):
    monkeypatch.setenv("RESTIC_PASSWORD", "pw")
    for text in ("not json", "[" * 100000, '{"kdf": "scrypt", "N": 1024}', '{"kdf":"scrypt","N":3,"r":1,"p":1,"salt":"AAAAAAAAAAA="}'):
        (local_repo / "keys" / KEY_ID).write_text(text)
        key_prefetch.start(["-r", str(local_repo), "snapshots"], COMMANDS)  # neither raises nor starts
    assert not derivations._started


def test_a_started_derivation_is_handed_to_exactly_its_inputs():
    salt = b"s" * 16
    derivations.start(b"password", salt, 1024, 8, 2)
    assert derivations.scrypt(b"other", salt, 1024, 8, 2) == hashlib.scrypt(b"other", salt=salt, n=1024, r=8, p=2, dklen=64)
    assert derivations._started  # still waiting for its own request
    assert derivations.scrypt(b"password", salt, 1024, 8, 2) == hashlib.scrypt(b"password", salt=salt, n=1024, r=8, p=2, dklen=64)
    assert not derivations._started


def test_an_error_in_the_background_reaches_the_request(monkeypatch):
    def failing(*inputs, **options):
        raise MemoryError()

    monkeypatch.setattr(derivations._kdf, "scrypt", failing)
    derivations.start(b"password", b"s" * 16, 1024, 8, 1)
    with pytest.raises(MemoryError):
        derivations.scrypt(b"password", b"s" * 16, 1024, 8, 1)


def test_derivations_run_one_at_a_time_in_a_thread_without_signals(monkeypatch):
    running, most, masks = [0], [0], []
    guard = threading.Lock()

    def slow(password, *rest, **options):
        with guard:
            running[0] += 1
            most[0] = max(most[0], running[0])
        if threading.current_thread() is not threading.main_thread():
            masks.append(signal.pthread_sigmask(signal.SIG_BLOCK, []))
        time.sleep(0.05)
        with guard:
            running[0] -= 1
        return password

    monkeypatch.setattr(derivations._kdf, "scrypt", slow)
    for password in (b"a", b"b"):
        derivations.start(password, b"s" * 16, 1024, 8, 1)
    assert derivations.scrypt(b"c", b"s" * 16, 1024, 8, 1) == b"c"
    assert [derivations.scrypt(p, b"s" * 16, 1024, 8, 1) for p in (b"a", b"b")] == [b"a", b"b"]
    assert most[0] == 1
    assert len(masks) == 2 and all({signal.SIGINT, signal.SIGTERM, signal.SIGHUP} <= mask for mask in masks)


def slow_derivations(monkeypatch, seconds):
    def slow(password, *rest, **options):
        time.sleep(seconds)
        return password

    monkeypatch.setattr(derivations._kdf, "scrypt", slow)


@pytest.mark.parametrize("args, waits", [(["snapshots"], True), (["key", "list"], True), (["ls", "latest"], False),
                                         (["forget", "--prune", "--keep-last", "1"], False), (["backup", "src"], False)])
def test_the_prefetch_waits_for_the_key_only_for_the_light_commands(local_repo, monkeypatch, args, waits):
    slow_derivations(monkeypatch, 0.3)
    monkeypatch.setenv("RESTIC_PASSWORD", "pw")
    (local_repo / "keys" / KEY_ID).write_text('{"kdf":"scrypt","N":1024,"r":8,"p":1,"salt":"AAAAAAAAAAAAAAAAAAAAAA=="}')
    began = time.monotonic()
    key_prefetch.start(["-r", str(local_repo), *args], COMMANDS)
    assert (time.monotonic() - began >= 0.3) is waits
    assert derivations._started  # handed over to the opening as before
    derivations._started.clear()
    derivations.allow_helper_lane(False)


def test_a_stop_signal_ends_the_wait_for_the_key(monkeypatch):
    slow_derivations(monkeypatch, 1.0)
    derivations.start(b"pw", b"s" * 16, 1024, 8, 1)
    began = time.monotonic()
    asked = []
    derivations.wait_for_started(lambda: asked.append(1) or len(asked) > 2, poll=0.02)
    assert time.monotonic() - began < 0.5 and len(asked) == 3
    assert derivations.scrypt(b"pw", b"s" * 16, 1024, 8, 1) == b"pw"


@pytest.mark.parametrize("args, allowed", [
    (["ls", "latest"], True), (["restore", "latest", "--target", "t"], True), (["check"], True),
    (["--cache-dir", "c", "find", "x"], True), (["prune"], True), (["forget", "--prune", "--keep-last", "1"], True),
    (["forget", "--keep-last", "1"], False), (["snapshots"], False), (["key", "list"], False),
    (["cat", "config"], False), (["tag", "--add", "x"], False), ("backup src".split(), "until lent"),
    ("backup --stdin".split(), "until lent"), (["init"], False), (["version"], False),
    (["--cache-dir", "ls", "snapshots"], False),
])
def test_the_helper_lane_is_for_commands_that_wait_for_the_key_and_then_hold_more(local_repo, args, allowed):
    """A helper lane costs a quarter of the derivation's work area more: only where the command
    needs more than that later anyway, and has nothing else for the other core meanwhile
    (backup's helper waits until its prescan lends the core)."""
    derivations.allow_helper_lane(not allowed)
    key_prefetch.start(["-r", str(local_repo), *args], COMMANDS)
    assert derivations._helper_allowed is bool(allowed)
    assert derivations._helper_waits is (allowed == "until lent")
    derivations.allow_helper_lane(False)


def test_a_derivation_with_the_helper_lane_allowed_offers_it_a_quarter_of_v(monkeypatch):
    offered = []

    def recording(password, salt, n, r, p, dklen, **options):
        offered.append(options)
        return password

    monkeypatch.setattr(derivations._kdf, "scrypt", recording)
    for allowed, until_lent in ((False, False), (True, False), (True, True)):
        derivations.allow_helper_lane(allowed, until_lent)
        assert derivations.scrypt(b"pw", b"s" * 16, 1024, 8, 3) == b"pw"
    derivations.allow_helper_lane(False)
    quarter = 128 * 8 * 1024 // 4
    assert offered == [{"helper_memory": 0, "helper_waits": False}, {"helper_memory": quarter, "helper_waits": False},
                       {"helper_memory": quarter, "helper_waits": True}]


# --- whole commands ---
# Runs main() and reports which thread derived the key.
PROBE = """
import sys, threading
from restique.repository import derivations
derived_in = []
original = derivations._derive_now
def recording(inputs):
    key = original(inputs)
    derived_in.append(threading.current_thread().name)
    print("click loaded by the end of the derivation:", "click" in sys.modules, file=sys.stderr)
    return key
derivations._derive_now = recording
sys.argv = ["restique"] + sys.argv[1:]
import atexit
atexit.register(lambda: print("derived in", derived_in, file=sys.stderr))  # however main() exits
from restique.cli.main import main
main()
"""


@pytest.fixture(scope="module")
def repo(tmp_path_factory):
    base = tmp_path_factory.mktemp("prefetch")
    run_restique(base / "repo", "init")
    run_restique(base / "repo", "backup", "--stdin", "--stdin-filename", "f", input=b"data")
    return base / "repo"


def test_snapshots_uses_the_prefetched_key(repo):
    proc = run_program([sys.executable, "-c", PROBE], "snapshots", "--json", repo=repo)
    assert len(json.loads(proc.stdout)) == 1
    assert b"derived in ['key-derivation']" in proc.stderr


def test_a_light_command_loads_its_modules_once_the_work_area_is_freed(repo):
    """The peak of snapshots, key, tag... is the derivation's 32 MiB work area plus what is
    loaded meanwhile: they load click and their command only after it. (The heavier ones hold
    more later anyway and load meanwhile, for time: that they do not wait is tested above.)"""
    proc = run_program([sys.executable, "-c", PROBE], "snapshots", repo=repo)
    assert b"click loaded by the end of the derivation: False" in proc.stderr
    assert b"derived in ['key-derivation']" in proc.stderr


def test_a_wrong_password_is_still_wrong_with_the_prefetch(repo):
    proc = run_program([sys.executable, "-c", PROBE], "snapshots", repo=repo, check=False,
                       env=clean_env(RESTIC_PASSWORD="wrong"))
    assert proc.returncode == 12
    assert b"wrong password" in proc.stderr and b"derived in ['key-derivation']" in proc.stderr


def test_a_password_file_wins_over_the_environment(repo, tmp_path):
    (tmp_path / "pw").write_text(PASSWORD)
    proc = run_program([sys.executable, "-c", PROBE], "--password-file", tmp_path / "pw", "snapshots", "--json",
                       repo=repo, env=clean_env(RESTIC_PASSWORD="wrong"))
    assert len(json.loads(proc.stdout)) == 1
    assert b"derived in ['MainThread']" in proc.stderr
