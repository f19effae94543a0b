"""The sftp backend against a real OpenSSH server on 127.0.0.1, started here with its own keys.

The backend contract (test_backend_conformance) runs again over sftp, then the command line:
round trips, restic 0.14 reading what restique wrote and the other way round, and failures
(ssh unable to connect, the server killed during a backup).
"""
import inspect
import os
import subprocess
import time

import pytest

import test_backend_conformance
from test_backend_conformance import *  # noqa: F401,F403 - the contract's tests, run over sftp here

from conftest import clean_env, restique_cmd, run_restic, run_restique
from servers import SSH_HOST as HOST, free_port
from restique.backend import FileType
from restique.backend.options import BackendOptions
from restique.backend.sftp import open_sftp, parse_location, ssh_command, SftpConfig
from restique.errors import RestiqueError, UsageError

# the contract's tests that need no backend already ran in their own module
for _name, _test in list(vars(test_backend_conformance).items()):
    if _name.startswith("test_") and not {"be", "fresh"} & set(inspect.signature(_test).parameters):
        del globals()[_name]


def options_for(server) -> dict:
    return BackendOptions(extended={"sftp.args": f"-F {server.client_config}"})


@pytest.fixture
def fresh(sshd, tmp_path):
    """A backend over sftp where no repository has been created yet."""
    be = open_sftp(f"sftp:{HOST}:{tmp_path}/repo", options_for(sshd))
    yield be
    be.close()


# --------------------------------------------------------------------------------------------
# locations and the ssh command


@pytest.mark.parametrize("location, parts", [
    ("sftp:host:/srv/repo", ("", "host", "", "/srv/repo")),
    ("sftp:user@host:repo/", ("user", "host", "", "repo")),
    ("sftp:me@example.com@host:/r", ("me@example.com", "host", "", "/r")),
    ("sftp://user@host:2222//srv/repo", ("user", "host", "2222", "/srv/repo")),
    ("sftp://host/rel/../repo", ("", "host", "", "repo")),
])
def test_locations_as_restic_reads_them(location, parts):
    assert parse_location(location) == SftpConfig(*parts)


@pytest.mark.parametrize("location, message", [
    ("sftp:hostonly", "hostname or path not found"),
    ("sftp://host", "no directory specified"),
    ("sftp:host:~/repo", "starts with the tilde"),
])
def test_locations_restic_refuses(location, message):
    with pytest.raises(UsageError, match=message):
        parse_location(location)


def test_the_ssh_command_as_restic_builds_it():
    config = SftpConfig("user", "host", "2222", "/r")
    assert ssh_command(config, {}) == ["ssh", "host", "-p", "2222", "-l", "user", "-s", "sftp"]
    assert ssh_command(config, {"args": "-F 'my config' -v"}) == \
        ["ssh", "host", "-p", "2222", "-l", "user", "-F", "my config", "-v", "-s", "sftp"]
    assert ssh_command(config, {"command": "my-ssh x -s sftp"}) == ["my-ssh", "x", "-s", "sftp"]
    with pytest.raises(UsageError, match="cannot specify both sftp.command and sftp.args options"):
        ssh_command(config, {"command": "a", "args": "b"})


def test_sftp_command_option(sshd, tmp_path):
    command = f"ssh -F {sshd.client_config} {HOST} -s sftp"
    be = open_sftp(f"sftp:ignored:{tmp_path}/repo", BackendOptions(extended={"sftp.command": command}))
    be.create()
    be.save(FileType.KEY, "ab" * 32, b"key")
    assert (tmp_path / "repo" / "keys" / ("ab" * 32)).read_bytes() == b"key"
    assert oct((tmp_path / "repo" / "keys" / ("ab" * 32)).stat().st_mode & 0o777) == "0o400"
    assert len(os.listdir(tmp_path / "repo" / "data")) == 256
    process = be._session.process
    be.close()
    assert process.poll() is not None, "ssh is gone after close"


def test_a_failed_connection_is_one_line(sshd, tmp_path):
    with pytest.raises(RestiqueError) as err:
        open_sftp(f"sftp://127.0.0.1:{free_port()}/{tmp_path}",
                  BackendOptions(extended={"sftp.args": "-o BatchMode=yes"}))
    message = str(err.value)
    assert "\n" not in message and "ssh exited with status 255" in message and "refused" in message


# --------------------------------------------------------------------------------------------
# the command line, and restic 0.14 on the same server


def restique_opts(server) -> list:
    return ["-o", f"sftp.args=-F {server.client_config}"]


def restic_opts(server) -> list:  # restic 0.14 knows sftp.command, not sftp.args
    return ["-o", f"sftp.command=ssh -F {server.client_config} {HOST} -s sftp"]


@pytest.fixture
def files(tmp_path):
    src = tmp_path / "src"
    (src / "sub").mkdir(parents=True)
    (src / "small.txt").write_text("hello over sftp\n")
    (src / "sub" / "random.bin").write_bytes(os.urandom(3 << 20))
    return src


def _same_tree(restored, src) -> None:
    for path in src.rglob("*"):
        if path.is_file():
            assert (restored / path.relative_to(src.anchor)).read_bytes() == path.read_bytes(), path


def test_restique_writes_restic_reads(sshd, files, tmp_path):
    repo = f"sftp:{HOST}:{tmp_path}/repo"
    run_restique(repo, *restique_opts(sshd), "init")
    run_restique(repo, *restique_opts(sshd), "backup", files)
    run_restique(repo, *restique_opts(sshd), "restore", "latest", "--target", tmp_path / "mine")
    _same_tree(tmp_path / "mine", files)
    run_restic(repo, *restic_opts(sshd), "check", "--read-data")
    run_restic(repo, *restic_opts(sshd), "restore", "latest", "--target", tmp_path / "theirs")
    _same_tree(tmp_path / "theirs", files)
    again = run_restique(repo, *restique_opts(sshd), "init", check=False)
    assert again.returncode == 1
    assert again.stderr.decode().strip() == f"Fatal: create repository at {repo} failed: config file already exists"


def test_restic_writes_restique_reads(sshd, files, tmp_path):
    repo = f"sftp:{HOST}:{tmp_path}/repo"
    run_restic(repo, *restic_opts(sshd), "init")
    run_restic(repo, *restic_opts(sshd), "backup", files)
    run_restique(repo, *restic_opts(sshd), "check", "--read-data")  # sftp.command works here too
    run_restique(repo, *restique_opts(sshd), "restore", "latest", "--target", tmp_path / "out")
    _same_tree(tmp_path / "out", files)


def test_missing_repository_and_failed_connections(sshd, tmp_path):
    missing = run_restique(f"sftp:{HOST}:{tmp_path}/none", *restique_opts(sshd), "snapshots", check=False)
    assert missing.returncode == 10
    assert missing.stderr.decode().startswith("Fatal: repository does not exist: unable to open config file")
    refused = run_restique(f"sftp://127.0.0.1:{free_port()}/{tmp_path}", "-o", "sftp.args=-o BatchMode=yes",
                           "snapshots", check=False)
    lines = refused.stderr.decode().splitlines()
    assert refused.returncode == 1 and len(lines) == 1, lines
    assert lines[0].startswith("Fatal: unable to open repository at sftp://") and "Connection refused" in lines[0]


def test_server_killed_during_backup(sshd, tmp_path):
    repo = f"sftp:{HOST}:{tmp_path}/repo"
    src = tmp_path / "big"
    src.mkdir()
    for i in range(2):
        (src / f"part{i}").write_bytes(os.urandom(20 << 20))
    run_restique(repo, *restique_opts(sshd), "init")
    cmd = restique_cmd() + ["-r", repo, *restique_opts(sshd), "backup", str(src)]
    backup = subprocess.Popen(cmd, env=clean_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    data = tmp_path / "repo" / "data"
    deadline = time.monotonic() + 30
    while not any(data.rglob("*-restic-temp-*")) and time.monotonic() < deadline and backup.poll() is None:
        time.sleep(0.01)
    sshd.stop()  # in the middle of writing a pack
    try:
        out, err = backup.communicate(timeout=60)
    finally:
        sshd.start()
    lines = err.decode().splitlines()
    assert backup.returncode == 1, lines
    assert lines[-1].startswith("Fatal: connection to sftptest lost: ssh exited with status 255"), lines
    assert not os.listdir(tmp_path / "repo" / "snapshots")
    run_restique(repo, *restique_opts(sshd), "unlock")  # the lost connection could not remove its lock
    run_restique(repo, *restique_opts(sshd), "backup", src)
    run_restic(repo, *restic_opts(sshd), "check", "--read-data")
