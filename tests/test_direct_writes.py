"""Pack files of a local repository are appended past the page cache (O_DIRECT) on local disk
file systems: whole blocks straight from the pack's buffer, the bytes short of a block held
until the next append, the rest through the page cache. The file's bytes are exactly what
was appended, whatever the parts look like, and anything unusual falls back to ordinary
writes for the rest of the file."""
import errno
import fcntl
import mmap
import os
import random
import shutil
import tempfile
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from conftest import run_restic, run_restique
from test_pack_files import _resident_pages
from restique import _seal
from restique.backend import direct_writes
from restique.backend.direct_writes import BLOCK, LOCAL_DISK_FILE_SYSTEMS, DirectAppender

BUFFER = 1024 * 1024


@pytest.fixture(autouse=True)
def this_file_system_is_a_local_disk(tmp_path, monkeypatch):
    """The tests' folder takes direct writes (ext4 on the test machines; a tmpfs takes them
    too since Linux 6.6): whatever it is, the appender is made to use them there."""
    fd = os.open(tmp_path, os.O_RDONLY)
    try:
        kind = _seal.file_system_type(fd)
    finally:
        os.close(fd)
    monkeypatch.setattr(direct_writes, "LOCAL_DISK_FILE_SYSTEMS",
                        direct_writes.LOCAL_DISK_FILE_SYSTEMS | {kind})


def _new_file(tmp_path, name="pack"):
    return os.open(tmp_path / name, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)


def _is_direct(fd) -> bool:
    return bool(fcntl.fcntl(fd, fcntl.F_GETFL) & os.O_DIRECT)


def _buffer(seed=1):
    mem = mmap.mmap(-1, BUFFER)  # page aligned, as a pack buffer
    mem.write(random.Random(seed).randbytes(BUFFER))
    return mem


def test_a_pack_buffer_goes_out_in_whole_blocks_and_the_rest_at_finish(tmp_path):
    mem, fd = _buffer(), _new_file(tmp_path)
    appender = DirectAppender.start(fd)
    assert appender is not None and _is_direct(fd)
    view = memoryview(mem)
    cuts = [0, 5000, 70001, 70002, 300000, 300000 + BLOCK, 500003]
    for start, end in zip(cuts, cuts[1:]):
        appender.append([view[start:end]])
        assert os.fstat(fd).st_size == end - end % BLOCK  # only whole blocks so far
    assert appender.direct
    appender.finish()
    assert not _is_direct(fd)
    os.write(fd, b"header")  # the file's last parts go through the page cache
    os.close(fd)
    assert (tmp_path / "pack").read_bytes() == mem[:cuts[-1]] + b"header"


# parts of a pack as the pack writer hands them: runs of its buffer, now and then a blob in
# memory of its own (a bytes object, which lies anywhere in memory)
_parts = st.lists(st.tuples(st.integers(0, 3 * BLOCK + 7), st.booleans()), max_size=25)


@settings(max_examples=150, deadline=None)
@given(_parts)
def test_the_file_holds_exactly_what_was_appended(tmp_path_factory, parts):
    folder = tmp_path_factory.mktemp("appends")
    mem, fd = _buffer(), _new_file(folder)
    appender = DirectAppender.start(fd)
    expected, at = [], 0
    for length, own in parts:
        if own:
            piece = random.Random(length).randbytes(length)
        else:
            piece = memoryview(mem)[at:at + length]
        at += length  # the buffer keeps its offsets lined up with the file's
        expected.append(bytes(piece))
        appender.append(piece)
    still_direct = appender.direct
    appender.finish()
    os.close(fd)
    assert (folder / "pack").read_bytes() == b"".join(expected)
    if not any(own and length >= BLOCK for length, own in parts):
        assert still_direct  # short parts of their own only pass through the held block


def test_a_part_off_the_blocks_in_memory_stops_direct_writes_for_the_file(tmp_path):
    mem, fd = _buffer(), _new_file(tmp_path)
    appender = DirectAppender.start(fd)
    appender.append(memoryview(mem)[:3 * BLOCK + 10])
    own = bytes(mem[100:100 + 2 * BLOCK])  # not where it lands in the file, relative to a block
    appender.append(own)
    assert not appender.direct and not _is_direct(fd)
    appender.append(memoryview(mem)[:BLOCK])
    appender.finish()
    os.close(fd)
    assert (tmp_path / "pack").read_bytes() == mem[:3 * BLOCK + 10] + own + mem[:BLOCK]


@pytest.mark.parametrize("refusal", ["EINVAL", "partial block"])
def test_a_refused_direct_write_is_written_through_the_page_cache(tmp_path, monkeypatch, refusal):
    mem, fd = _buffer(), _new_file(tmp_path)
    appender = DirectAppender.start(fd)
    appender.append(memoryview(mem)[:BLOCK + 3])  # one direct write done, 3 bytes held
    real_write = os.write

    def refusing(fd_, data):
        if _is_direct(fd_):
            if refusal == "EINVAL":
                raise OSError(errno.EINVAL, "Invalid argument")
            return real_write(fd_, memoryview(data)[:BLOCK + 512])  # as a device with 512 B blocks
        return real_write(fd_, data)

    monkeypatch.setattr(direct_writes.os, "write", refusing)
    appender.append(memoryview(mem)[BLOCK + 3:5 * BLOCK + 100])
    assert not appender.direct and not _is_direct(fd)
    appender.append(memoryview(mem)[5 * BLOCK + 100:6 * BLOCK])
    appender.finish()
    os.close(fd)
    assert (tmp_path / "pack").read_bytes() == mem[:6 * BLOCK]


def test_other_errors_of_a_direct_write_are_raised(tmp_path, monkeypatch):
    mem, fd = _buffer(), _new_file(tmp_path)
    appender = DirectAppender.start(fd)

    def full(fd_, data):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(direct_writes.os, "write", full)
    with pytest.raises(OSError) as raised:
        appender.append(memoryview(mem)[:2 * BLOCK])
    assert raised.value.errno == errno.ENOSPC
    os.close(fd)


def test_network_and_memory_file_systems_are_written_as_usual(tmp_path, monkeypatch):
    monkeypatch.setattr(direct_writes, "LOCAL_DISK_FILE_SYSTEMS", frozenset({0xEF53}))
    monkeypatch.setattr(direct_writes._seal, "file_system_type", lambda fd: 0x6969)  # NFS
    fd = _new_file(tmp_path)
    assert DirectAppender.start(fd) is None and not _is_direct(fd)
    os.close(fd)


def test_the_file_system_type_is_statfs_magic(tmp_path):
    with open("/proc/self/mountinfo") as f:
        proc = [line.split(" - ")[1].split()[0] for line in f if line.split()[4] == "/proc"]
    fd = os.open("/proc", os.O_RDONLY)
    try:
        assert proc == ["proc"] and _seal.file_system_type(fd) == 0x9FA0
    finally:
        os.close(fd)
    with pytest.raises(OSError):
        _seal.file_system_type(10**6)  # not an open descriptor


def _cached_pages(path) -> int:
    """How many pages of the file are in the page cache (mincore over a copy-on-write map of
    it, which shares the cached pages until written)."""
    size = os.path.getsize(path)
    with open(path, "rb") as f, mmap.mmap(f.fileno(), size, access=mmap.ACCESS_COPY) as mem:
        return _resident_pages(mem, size)


def _on_a_local_disk(tmp_path):
    """A new folder on a file system the command writes packs to directly: the tests' own
    folder, else one beside the checkout (the command runs in its own process: the fixture
    above does not reach it)."""
    for base in (tmp_path, Path(__file__).resolve().parent):
        fd = os.open(base, os.O_RDONLY)
        try:
            kind = _seal.file_system_type(fd)
        finally:
            os.close(fd)
        if kind in LOCAL_DISK_FILE_SYSTEMS:
            folder = Path(tempfile.mkdtemp(dir=base, prefix=".direct-writes-"))
            _made.append(folder)
            return folder
    raise AssertionError("neither the tests' folder nor the checkout is on a local disk file system")


_made = []


@pytest.fixture(autouse=True)
def _remove_folders_made():
    yield
    while _made:
        shutil.rmtree(_made.pop(), ignore_errors=True)


def test_a_backup_leaves_its_packs_out_of_the_page_cache_and_restic_reads_them(tmp_path):
    """What a backup writes is not read again soon: its packs do not push the user's files
    out of the page cache (only their last, partial block and header pass through it)."""
    repo, source = _on_a_local_disk(tmp_path) / "repo", tmp_path / "src"
    source.mkdir()
    (source / "big").write_bytes(os.urandom(40 * 1024 * 1024))
    run_restique(repo, "init")
    run_restique(repo, "backup", source)
    packs = [os.path.join(d, n) for d, _, names in os.walk(repo / "data") for n in names]
    assert len(packs) >= 2
    for path in packs:
        assert _cached_pages(path) <= 3, path
    check = run_restic(repo, "check", "--read-data")
    assert b"no errors were found" in check.stdout
    restored = tmp_path / "restored"
    run_restique(repo, "restore", "latest", "--target", restored)
    assert (restored / source.relative_to("/") / "big").read_bytes() == (source / "big").read_bytes()
