"""Reading a regular file past its holes: the ranges the file system reports as holes come
out as zeros without being read, the chunks are the same as a plain read gives, a stream
(stdin redirected from a file) is read this way only when nothing was read ahead into its
buffer, and a --stdin backup of a sparse file restores to the same bytes with restic."""
import hashlib
import os
import random
import subprocess

import pytest

from conftest import clean_env, restique_cmd, run_restic, run_restique
from restique.operations.archiver.file_saver import SparseReader
from restique.repository.chunker import MAX_SIZE, Chunker, ReadBuffers

MiB = 1 << 20
POL = 0x3DA3358B4DC173


def sparse_file(path, size, extents) -> bytes:
    """A file of size bytes that holds the given {offset: bytes} and holes elsewhere;
    returns its content. Skips the test where the file system keeps no holes."""
    with open(path, "wb") as f:
        f.truncate(size)
        for offset, data in extents.items():
            f.seek(offset)
            f.write(data)
    fd = os.open(path, os.O_RDONLY)
    try:
        if os.lseek(fd, 0, os.SEEK_HOLE) >= size:
            pytest.skip("this file system reports no holes")
    finally:
        os.close(fd)
    with open(path, "rb") as f:
        return f.read()


def extents():
    rng = random.Random(1)
    return {3 * MiB: rng.randbytes(2 * MiB + 123), 9 * MiB + 4096: b"text %d " * 300_000,
            30 * MiB - 5000: rng.randbytes(5000)}  # data up to the end


def read_all(reader, sizes) -> bytes:
    out = bytearray()
    for size in sizes:
        buf = bytearray(size)
        n = reader.readinto(buf)
        if n == 0:
            return bytes(out)
        out += buf[:n]
    raise AssertionError("not at the end")


@pytest.mark.parametrize("trailing_hole", [False, True])
def test_holes_read_as_zeros_without_reading_them(tmp_path, trailing_hole):
    path = tmp_path / "image"
    size = 40 * MiB if trailing_hole else 30 * MiB
    content = sparse_file(path, size, extents())
    fd = os.open(path, os.O_RDONLY)
    try:
        rng = random.Random(2)
        reader = SparseReader(fd, 0)
        got = read_all(reader, (rng.choice([1000, 65536, 3 * MiB]) for _ in range(10_000)))
    finally:
        os.close(fd)
    assert got == content
    data = sum(len(d) for d in extents().values())
    assert data <= reader.read_bytes < data + 3 * 64 * 1024  # only the extents (in file system blocks)


def test_ranges_read_from_one_hole_are_known_to_be_zeros(tmp_path):
    path = tmp_path / "image"
    content = sparse_file(path, 40 * MiB, extents())
    fd = os.open(path, os.O_RDONLY)
    try:
        reader = SparseReader(fd, 0)
        read_all(reader, [4 * MiB] * 100)
    finally:
        os.close(fd)
    assert reader.in_hole(0, MiB) and reader.in_hole(MiB, 3 * MiB) and content[:3 * MiB] == bytes(3 * MiB)
    assert not reader.in_hole(3 * MiB - 1, 3 * MiB + 1)  # reaches into data
    assert reader.in_hole(6 * MiB, 9 * MiB + 4096) and not reader.in_hole(6 * MiB, 9 * MiB + 4097)  # then data
    assert reader.in_hole(20 * MiB, 25 * MiB)
    assert reader.in_hole(35 * MiB, 40 * MiB)  # the hole up to the end


def test_chunks_of_a_sparse_file_are_those_of_a_plain_read(tmp_path):
    path = tmp_path / "image"
    content = sparse_file(path, 30 * MiB, extents())
    chunker = Chunker(POL)
    fd = os.open(path, os.O_RDONLY)
    try:
        lengths = []
        for chunk in chunker.held_chunks(SparseReader(fd, 0), ReadBuffers(2, MAX_SIZE + MiB)):
            lengths.append((len(chunk), hashlib.sha256(chunk.data).digest()))
            chunk.release()
    finally:
        os.close(fd)
    expected, pos = [], 0
    for n in chunker.cut_lengths(content):
        expected.append((n, hashlib.sha256(content[pos:pos + n]).digest()))
        pos += n
    assert lengths == expected


def test_a_stream_is_read_past_its_holes_only_from_where_it_is_with_nothing_read_ahead(tmp_path):
    path = tmp_path / "image"
    content = sparse_file(path, 30 * MiB, extents())
    with open(path, "rb") as f:
        f.seek(5 * MiB + 7)
        reader = SparseReader.of_stream(f)
        assert reader is not None and read_all(reader, [MiB] * 100) == content[5 * MiB + 7:]
    with open(path, "rb") as f:
        f.read(10)  # the buffer holds more than was read
        assert SparseReader.of_stream(f) is None
    r, w = os.pipe()
    with open(r, "rb") as f, open(w, "wb"):
        assert SparseReader.of_stream(f) is None
    assert SparseReader.of_stream(object()) is None


def test_a_stdin_backup_of_a_sparse_file_restores_to_its_bytes(tmp_path):
    path = tmp_path / "disk.img"
    content = sparse_file(path, 30 * MiB, extents())
    repo = tmp_path / "repo"
    run_restique(repo, "init")
    with open(path, "rb") as stdin:
        subprocess.run(restique_cmd() + ["-r", str(repo), "backup", "--stdin", "--stdin-filename", "disk.img"],
                       stdin=stdin, env=clean_env(), check=True, capture_output=True, timeout=600)
    assert run_restic(repo, "dump", "latest", "/disk.img").stdout == content
    assert b"no errors were found" in run_restic(repo, "check", "--read-data").stdout


def test_a_file_with_more_data_than_its_size_says_is_read_to_its_end(tmp_path):
    # procfs files report no size; a file may grow after its hole was found
    fd = os.open("/proc/self/status", os.O_RDONLY)
    try:
        if os.fstat(fd).st_size:
            pytest.skip("procfs reports a size here")
        got = read_all(SparseReader(fd, 0), [1 << 16] * 10)
    finally:
        os.close(fd)
    assert got.startswith(b"Name:") and len(got) > 200
    path = tmp_path / "grows"
    sparse_file(path, 8 * MiB, {0: b"head"})
    fd = os.open(path, os.O_RDONLY)
    try:
        reader = SparseReader(fd, 0)
        buf, seen = bytearray(MiB), 0
        while seen < 8 * MiB:  # up to the size it had: the hole at its end
            seen += reader.readinto(buf)
        with open(path, "ab") as f:
            f.write(b"tail" * 1000)
        rest = read_all(reader, [MiB] * 10)
    finally:
        os.close(fd)
    assert rest == b"tail" * 1000
