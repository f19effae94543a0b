"""The REST backend: the whole backend contract against `rclone serve restic` (a real server
speaking rest-server's protocol) and a version 1 stub, then the command line round trips
with the real restic reading what restique wrote and the other way round."""
import base64
import itertools
import subprocess

import pytest

from test_backend_conformance import *  # noqa: F401,F403 - the contract, run here against REST
from test_backend_conformance import DATA_TYPES, listed, store

from conftest import clean_env, run_restic, run_restique
from servers import RcloneServer, start_stub
from restique.backend import BackendError, FileType
from restique.backend.options import BackendOptions
from restique.backend.rest import RestBackend, strip_password, with_environment_login

_repo_numbers = itertools.count()


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    srv = RcloneServer(tmp_path_factory.mktemp("rest-server")).start()
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def memory_server():
    """rclone 1.60 writes local files in place, so a reader can see half an upload; its
    in-memory remote stores whole objects, as rest-server (temporary file, rename) does."""
    srv = RcloneServer(":memory:").start()
    yield srv
    srv.stop()


@pytest.fixture
def fresh(memory_server):
    """A new repository path on the shared server for every test."""
    be = RestBackend(f"{memory_server.url}/repo{next(_repo_numbers)}/")
    yield be
    be.close()


def test_version_1_listings_stat_each_file():
    stub = start_stub()
    try:
        be = RestBackend(f"{stub.url}/")
        be.create()
        for ftype in DATA_TYPES:
            names = sorted((store(be, ftype, bytes([n]) * (n + 1)), n + 1) for n in range(3))
            assert listed(be, ftype) == names
        assert sum(1 for method, _ in stub.requests if method == "HEAD") >= 15, "sizes came from HEAD"
        be.close()
    finally:
        stub.shutdown()


def test_passwords_are_not_shown():
    assert strip_password("rest:https://user:secret@host:8000/repo/") == "rest:https://user:***@host:8000/repo/"
    assert strip_password("rest:http://host/") == "rest:http://host/"
    be = RestBackend("http://u:p%40ss@127.0.0.1:1/r/", "rest:http://u:p%40ss@127.0.0.1:1/r/")
    assert be.auth == ("u", "p@ss") and "p%40ss" not in be.location
    # every request carries the decoded user and password
    assert be.headers["authorization"] == "Basic " + base64.b64encode(b"u:p@ss").decode()


# --------------------------------------------------------------------------------------------
# command line


@pytest.fixture
def files(tmp_path):
    src = tmp_path / "src"
    (src / "sub").mkdir(parents=True)
    (src / "a.txt").write_text("hello rest\n")
    (src / "sub" / "big.bin").write_bytes(os.urandom(3 << 20))
    return src


def _restored(target, src):
    inner = target / str(src).lstrip("/")
    assert (inner / "a.txt").read_text() == "hello rest\n"
    assert (inner / "sub" / "big.bin").read_bytes() == (src / "sub" / "big.bin").read_bytes()


def test_restique_writes_restic_reads(server, files, tmp_path):
    repo = f"rest:{server.url}/cli{next(_repo_numbers)}/"
    run_restique(repo, "init")
    run_restique(repo, "backup", files)
    run_restique(repo, "restore", "latest", "--target", tmp_path / "mine")
    _restored(tmp_path / "mine", files)
    run_restic(repo, "check", "--read-data")
    run_restic(repo, "restore", "latest", "--target", tmp_path / "theirs")
    _restored(tmp_path / "theirs", files)
    again = run_restique(repo, "init", check=False)
    assert again.returncode == 1 and b"config file already exists" in again.stderr


def test_restic_writes_restique_reads(server, files, tmp_path):
    repo = f"rest:{server.url}/cli{next(_repo_numbers)}/"
    run_restic(repo, "init")
    run_restic(repo, "backup", files)
    run_restique(repo, "check", "--read-data")
    run_restique(repo, "restore", "latest", "--target", tmp_path / "out")
    _restored(tmp_path / "out", files)


def test_missing_repository_and_unknown_options(server):
    missing = run_restique(f"rest:{server.url}/nothing-here/", "snapshots", check=False)
    assert missing.returncode == 10, missing.stderr
    assert missing.stderr.decode().count("\n") == 1
    unknown = run_restique(f"rest:{server.url}/x/", "-o", "rest.bogus=1", "snapshots", check=False)
    assert (unknown.returncode, unknown.stderr) == (1, b"Fatal: option rest.bogus is not known\n")


def test_basic_auth(tmp_path, files):
    srv = RcloneServer(tmp_path / "auth", "--user", "alice", "--pass", "wonder").start()
    try:
        host = srv.url.partition("//")[2]
        repo = f"rest:http://alice:wonder@{host}/r/"
        run_restique(repo, "init")
        run_restique(repo, "-o", "rest.connections=2", "backup", files)
        run_restic(repo, "check")
        wrong = run_restique(f"rest:http://alice:nope@{host}/r/", "snapshots", check=False)
        err = wrong.stderr.decode()
        assert wrong.returncode == 1 and err.count("\n") == 1, err
        assert "401" in err and "retrying" not in err and "nope" not in err
        # the login from the environment, when the URL names none (current restic's variables)
        login = clean_env(RESTIC_REST_USERNAME="alice", RESTIC_REST_PASSWORD="wonder")
        listed = run_restique(f"rest:http://{host}/r/", "snapshots", "--json", env=login)
        assert listed.returncode == 0 and listed.stdout.startswith(b"[{")
        in_url = run_restique(f"rest:http://alice:nope@{host}/r/", "snapshots", env=login, check=False)
        assert in_url.returncode == 1 and "401" in in_url.stderr.decode()  # the URL's login wins
    finally:
        srv.stop()


def test_environment_login_is_quoted_into_a_url_without_one(monkeypatch):
    monkeypatch.setenv("RESTIC_REST_USERNAME", "al ice")
    monkeypatch.setenv("RESTIC_REST_PASSWORD", "p@ss:word")
    assert with_environment_login("http://host:8000/repo/") == "http://al%20ice:p%40ss%3Aword@host:8000/repo/"
    assert with_environment_login("http://bob@host/repo/") == "http://bob@host/repo/"
    assert with_environment_login("http://:pw@host/repo/") == "http://:pw@host/repo/"
    be = RestBackend(with_environment_login("http://host:8000/repo/"))
    assert be.auth == ("al ice", "p@ss:word") and "p@ss" not in be.location
    monkeypatch.delenv("RESTIC_REST_USERNAME")
    monkeypatch.delenv("RESTIC_REST_PASSWORD")
    assert with_environment_login("http://host/repo/") == "http://host/repo/"


# --------------------------------------------------------------------------------------------
# TLS


def test_https_with_cacert_and_insecure_tls(tmp_path):
    """A server with a self-signed certificate: refused as restic refuses it, reached with
    --cacert naming the certificate, or with --insecure-tls."""
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=127.0.0.1",
                    "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", str(key), "-out", str(cert)],
                   check=True, capture_output=True)
    server = RcloneServer(tmp_path / "served", "--cert", str(cert), "--key", str(key)).start()
    url = f"https://127.0.0.1:{server.port}/repo/"
    try:
        refused = RestBackend(url)
        with pytest.raises(BackendError, match="(?i)certificate"):
            refused.create()
        refused.close()
        trusted = RestBackend(url, options=BackendOptions(cacert=(str(cert),)))
        trusted.create()
        trusted.save(FileType.KEY, "cd" * 32, b"over tls")
        trusted.close()
        insecure = RestBackend(url, options=BackendOptions(insecure_tls=True))
        assert insecure.load(FileType.KEY, "cd" * 32) == b"over tls"
        insecure.close()
    finally:
        server.stop()
