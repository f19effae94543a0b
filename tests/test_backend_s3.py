"""The S3 backend: the whole backend contract against two real S3 servers on loopback,
moto_server (Amazon's API as the boto ecosystem models it) and SeaweedFS (a distributed store
that checks signatures), then command-line round trips with the real restic both ways, wrong
credentials, a missing repository and restic's location forms."""
import itertools
import os
import time

import pytest

from test_backend_conformance import *  # noqa: F401,F403 - the contract, run here against S3
from test_backend_conformance import DATA_TYPES, listed, store

from conftest import run_restic, run_restique
from servers import S3_KEY_ID as KEY_ID, S3_SECRET as SECRET, s3_environment, start_moto, start_seaweedfs
from restique.backend.base import FileType
from restique.backend.options import BackendOptions
from restique.backend.parts import FileBody
from restique.backend.s3 import S3Location, open_s3, parse_location
from restique.errors import UsageError

_numbers = itertools.count()


@pytest.fixture(scope="module", autouse=True)
def credentials(tmp_path_factory):
    """The test servers' keys in the environment (boto3 and restic both read them), and no
    profile or configuration file of the developer's."""
    wanted = s3_environment(dict(os.environ), tmp_path_factory.mktemp("aws"))
    mp = pytest.MonkeyPatch()
    for name in set(os.environ) - set(wanted):
        mp.delenv(name)
    for name, value in wanted.items():
        mp.setenv(name, value)
    yield
    mp.undo()


@pytest.fixture(scope="module")
def moto(tmp_path_factory, credentials):
    server = start_moto(tmp_path_factory.mktemp("moto"))
    yield server
    server.stop()


@pytest.fixture(scope="module")
def seaweedfs(tmp_path_factory, credentials):
    server = start_seaweedfs(tmp_path_factory.mktemp("seaweedfs"))
    yield server
    server.stop()


@pytest.fixture(params=["moto", "seaweedfs"])
def fresh(request):
    """A new repository prefix in a shared bucket, on each server."""
    server = request.getfixturevalue(request.param)
    be = open_s3(server.url(f"conformance/repo{next(_numbers)}"))
    yield be
    be.close()


# --------------------------------------------------------------------------------------------
# locations, options, listings


@pytest.mark.parametrize("text, parsed", [
    ("s3:eu-central-1/bucket", S3Location("eu-central-1", "bucket", "")),
    ("s3://eu-central-1/bucket/", S3Location("eu-central-1", "bucket", "")),
    ("s3:s3.amazonaws.com/bucket/prefix/dir", S3Location("s3.amazonaws.com", "bucket", "prefix/dir")),
    ("s3:https://hostname:9999/foobar/prefix/dir/", S3Location("hostname:9999", "foobar", "prefix/dir")),
    ("s3:http://hostname:9999/foobar/a//b/../c", S3Location("hostname:9999", "foobar", "a/c", True)),
    ("s3:http://hostname:9999/foobar", S3Location("hostname:9999", "foobar", "", True)),
])
def test_locations_as_restic_parses_them(text, parsed):
    assert parse_location(text) == parsed


@pytest.mark.parametrize("text", ["s3:", "s3://", "s3:host", "s3:http://host", "s3:http://host/"])
def test_locations_without_bucket_are_refused(text):
    with pytest.raises(UsageError, match="s3: "):
        parse_location(text)


def test_options_are_checked(moto):
    options = lambda **kw: BackendOptions(extended={f"s3.{k}": v for k, v in kw.items()})  # noqa: E731
    with pytest.raises(UsageError, match='bad bucket-lookup style "nope"'):
        open_s3(moto.url("b/r"), options(**{"bucket-lookup": "nope"}))
    with pytest.raises(UsageError, match="option s3.bogus is not known"):
        open_s3(moto.url("b/r"), options(bogus="1"))
    be = open_s3("s3:s3.amazonaws.com/b", options(region="eu-west-3", connections="3"))
    assert be.client.region == "eu-west-3" and be.connections == 3
    assert be.client.virtual_hosted and be.client.host == "b.s3.amazonaws.com"  # Amazon: bucket in the host name
    path = open_s3("s3:s3.amazonaws.com/b", options(**{"bucket-lookup": "path"}))
    assert not path.client.virtual_hosted and path.client.host == "s3.amazonaws.com"
    dotted = open_s3("s3:s3.amazonaws.com/my.bucket")  # no certificate covers my.bucket.s3.amazonaws.com
    assert not dotted.client.virtual_hosted


def test_listing_with_version_1_and_many_pages(seaweedfs):
    settings = BackendOptions(extended={"s3.list-objects-v1": "true"})
    be = open_s3(seaweedfs.url(f"listings/repo{next(_numbers)}"), settings)
    be.create()
    assert be.list_v1
    names = sorted((store(be, FileType.PACK, n.to_bytes(2, "big")), 2) for n in range(1100))  # > 1000: paged
    assert listed(be, FileType.PACK) == names
    assert listed(open_s3(be.location), FileType.PACK) == names  # version 2 sees the same


def test_init_creates_the_bucket_and_large_packs_go_in_parts(moto):
    be = open_s3(moto.url(f"newbucket{next(_numbers)}/repo"))
    be.create()
    data = os.urandom(70 << 20)  # above the multipart threshold
    store(be, DATA_TYPES[-1], data)
    name = listed(be, FileType.PACK)[0][0]
    head = be.client.request("HEAD", be._key(FileType.PACK, name)).headers
    assert int(head["Content-Length"]) == len(data) and "-" in head["ETag"], "a multipart ETag"
    assert be.load(FileType.PACK, name, 65 << 20, 10) == data[65 << 20:(65 << 20) + 10]


def test_a_large_pack_goes_in_parts_from_its_file(moto, tmp_path):
    be = open_s3(moto.url(f"newbucket{next(_numbers)}/repo"))
    be.create()
    data = os.urandom(70 << 20)
    with open(tmp_path / "pack-file", "w+b") as f:
        f.write(data)
        f.flush()
        be.save(FileType.PACK, "ab" * 32, FileBody(f.fileno(), len(data)))
    head = be.client.request("HEAD", be._key(FileType.PACK, "ab" * 32)).headers
    assert int(head["Content-Length"]) == len(data) and "-" in head["ETag"], "a multipart ETag"
    assert be.load(FileType.PACK, "ab" * 32) == data


# --------------------------------------------------------------------------------------------
# command line


@pytest.fixture
def files(tmp_path):
    src = tmp_path / "src"
    (src / "sub").mkdir(parents=True)
    (src / "a.txt").write_text("hello s3\n")
    (src / "sub" / "big.bin").write_bytes(os.urandom(3 << 20))
    return src


def _restored(target, src):
    inner = target / str(src).lstrip("/")
    assert (inner / "a.txt").read_text() == "hello s3\n"
    assert (inner / "sub" / "big.bin").read_bytes() == (src / "sub" / "big.bin").read_bytes()


@pytest.mark.parametrize("server_name", ["seaweedfs", "moto"])
def test_restique_writes_restic_reads(request, server_name, files, tmp_path):
    repo = request.getfixturevalue(server_name).url(f"cli{next(_numbers)}/repo")  # a new bucket
    run_restique(repo, "init")
    run_restique(repo, "backup", files)
    run_restique(repo, "restore", "latest", "--target", tmp_path / "mine")
    _restored(tmp_path / "mine", files)
    run_restic(repo, "check", "--read-data")
    run_restic(repo, "restore", "latest", "--target", tmp_path / "theirs")
    _restored(tmp_path / "theirs", files)
    again = run_restique(repo, "init", check=False)
    assert again.returncode == 1 and b"config file already exists" in again.stderr


def test_restic_writes_restique_reads(seaweedfs, files, tmp_path):
    repo = seaweedfs.url(f"cli/repo{next(_numbers)}")
    run_restic(repo, "init")
    run_restic(repo, "backup", files)
    run_restique(repo, "check", "--read-data")
    run_restique(repo, "restore", "latest", "--target", tmp_path / "out")
    _restored(tmp_path / "out", files)


def test_missing_repository(seaweedfs):
    missing = run_restique(seaweedfs.url("cli/nothing-here"), "snapshots", check=False)
    err = missing.stderr.decode()
    assert missing.returncode == 10 and err.count("\n") == 1, err
    assert "repository does not exist" in err


@pytest.mark.parametrize("variable, value", [("AWS_SECRET_ACCESS_KEY", "wrong"), ("AWS_ACCESS_KEY_ID", "nobody")])
def test_wrong_credentials_fail_at_once(seaweedfs, monkeypatch, variable, value):
    repo = seaweedfs.url(f"cli/creds{next(_numbers)}")
    run_restique(repo, "init")
    monkeypatch.setenv(variable, value)
    started = time.monotonic()
    wrong = run_restique(repo, "snapshots", check=False)
    err = wrong.stderr.decode()
    assert wrong.returncode == 1 and err.count("\n") == 1, err
    assert "403" in err and "retrying" not in err.lower() and value not in err
    assert time.monotonic() - started < 10, "no retries of a permanent error"


def test_credentials_from_a_profile(seaweedfs, monkeypatch, tmp_path):
    repo = seaweedfs.url(f"cli/profile{next(_numbers)}")
    run_restique(repo, "init")
    shared = tmp_path / "credentials"
    shared.write_text(f"[backup]\naws_access_key_id = {KEY_ID}\naws_secret_access_key = {SECRET}\n")
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(shared))
    monkeypatch.setenv("AWS_PROFILE", "backup")
    run_restique(repo, "snapshots")
    monkeypatch.setenv("AWS_PROFILE", "default")  # no such profile: no credentials
    none = run_restique(repo, "snapshots", check=False)
    assert none.returncode == 1 and none.stderr.decode().count("\n") == 1, none.stderr
