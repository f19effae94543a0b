"""What makes the remote backends fast, and must stay correct: SFTP requests from many threads
pipelined on one ssh session (replies handed to the request they answer, a server's short
answers completed, a lost session failing every waiting request), REST loads returning their
connection to the pool, S3's pool as large as its connections."""
import os
import random
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest

from restique.backend import FileType
from restique.backend.base import BackendError
from restique.backend.options import BackendOptions
from restique.backend.parts import PartsBody
from restique.backend.rest import RestBackend
from restique.backend.s3 import open_s3
from restique.backend.sftp import open_sftp
from restique.backend.sftp_pipelined import MAX_BLOCK
from servers import SSH_HOST, RcloneServer, s3_environment, start_moto

NAMES = [f"{i:02x}" + "ab" * 31 for i in range(12)]


@pytest.fixture(scope="module")
def contents():
    rng = random.Random(11)
    return {name: rng.randbytes(rng.randrange(100_000, 1_500_000)) for name in NAMES}


@pytest.fixture(scope="module")
def sftp(sshd, contents, tmp_path_factory):
    """One backend over one session, with every file of contents saved from parallel threads."""
    options = BackendOptions(extended={"sftp.args": f"-F {sshd.client_config}"})
    be = open_sftp(f"sftp:{SSH_HOST}:{tmp_path_factory.mktemp('sftp')}/repo", options)
    be.create()
    with ThreadPoolExecutor(6) as pool:
        list(pool.map(lambda name: be.save(FileType.PACK, name, [contents[name][:999], contents[name][999:]]),
                      NAMES))
    yield be
    be.close()


def _ranges(contents, count, seed):
    rng = random.Random(seed)
    for _ in range(count):
        name = rng.choice(sorted(contents))
        size = len(contents[name])
        offset = rng.randrange(size)
        yield name, offset, rng.randrange(0, size - offset + 1)


def _check_loads(be, contents, count, seed, threads=8):
    def load(item):
        name, offset, length = item
        return be.load(FileType.PACK, name, offset, length) == contents[name][offset:offset + length]

    with ThreadPoolExecutor(threads) as pool:
        assert all(pool.map(load, _ranges(contents, count, seed)))


def test_sftp_threads_share_one_session(sftp, contents):
    _check_loads(sftp, contents, 120, seed=1)
    assert all(sftp.load(FileType.PACK, name) == contents[name] for name in NAMES)
    assert sorted(sftp.list(FileType.PACK)) == sorted((name, len(contents[name])) for name in NAMES)


def test_sftp_uses_the_servers_block_sizes(sftp):
    client = sftp._session.client
    assert "limits@openssh.com" in client.extensions  # OpenSSH says how much one request may move
    assert client.read_block == client.write_block == MAX_BLOCK


def test_sftp_short_answers_are_completed(sftp, contents):
    """A server may answer a read with fewer bytes than asked (OpenSSH does, above its limit):
    the rest is asked for again, never taken for the file's end."""
    client = sftp._session.client
    client.read_block = 4 * MAX_BLOCK + 1
    try:
        _check_loads(sftp, contents, 20, seed=2, threads=3)
        with pytest.raises(EOFError):
            sftp.load(FileType.PACK, NAMES[0], 10, len(contents[NAMES[0]]))
    finally:
        client.read_block = MAX_BLOCK


def test_sftp_lost_session_fails_every_waiting_request(sshd, contents, tmp_path):
    options = BackendOptions(extended={"sftp.args": f"-F {sshd.client_config}"})
    be = open_sftp(f"sftp:{SSH_HOST}:{tmp_path}/repo", options)
    be.create()
    be.save(FileType.PACK, NAMES[0], contents[NAMES[0]])
    failures, started = [], threading.Barrier(5)

    def keep_loading():
        started.wait()
        try:
            while True:
                be.load(FileType.PACK, NAMES[0])
        except BackendError as exc:
            failures.append(exc)

    threads = [threading.Thread(target=keep_loading) for _ in range(4)]
    for thread in threads:
        thread.start()
    started.wait()
    be._session.process.kill()
    for thread in threads:
        thread.join(30)
    assert not any(thread.is_alive() for thread in threads), "a request waits forever for its reply"
    assert len(failures) == 4 and all("connection to" in str(exc) for exc in failures)
    be.close()


def test_rest_loads_return_their_connection(tmp_path, contents):
    server = RcloneServer(tmp_path / "rest").start()
    try:
        be = RestBackend(f"{server.url}/repo/", connections=3)
        be.create()
        for name in NAMES[:4]:
            be.save(FileType.PACK, name, contents[name])
        _check_loads(be, {name: contents[name] for name in NAMES[:4]}, 60, seed=3, threads=6)
        assert 1 <= be.pool.num_connections <= 3  # kept alive and reused, never more than the pool
        be.close()
    finally:
        server.stop()


def test_s3_pool_holds_every_connection(tmp_path, contents, monkeypatch):
    for name, value in s3_environment(dict(os.environ), tmp_path).items():
        monkeypatch.setenv(name, value)
    server = start_moto(tmp_path)
    try:
        options = BackendOptions(extended={"s3.connections": "4"})
        be = open_s3(server.url("speed/repo"), options)
        be.create()
        assert be.client.pool.pool.maxsize >= 4
        for name in NAMES[:3]:
            be.save(FileType.PACK, name, contents[name])
        _check_loads(be, {name: contents[name] for name in NAMES[:3]}, 24, seed=4, threads=4)
        be.close()
    finally:
        server.stop()


def test_parts_are_sent_as_the_joined_file():
    """A pack saved from its parts (no joined copy): iterated as a request body, again for a
    retried request, it is byte for byte the joined file."""
    rng = random.Random(3)
    parts = [rng.randbytes(rng.randint(0, 3000)) for _ in range(40)] + [bytearray(b"tail")]
    whole = b"".join(parts)
    body = PartsBody(parts)
    assert len(body) == len(whole) and b"".join(body) == whole and b"".join(body) == whole
