"""dump's gathered output (operations/dump_output.py): every byte written arrives in order,
through short writes, more pieces than one writev takes, and pieces of every size; close()
closes only a descriptor it was given to close."""
import os

import pytest

from restique.operations import dump_output
from restique.operations.dump_output import GatheredOutput


def _pieces():
    for i in range(5000):
        yield bytes([i % 251]) * (i % 7)  # empty pieces too
    yield b"x" * (3 * dump_output.GATHER_BYTES + 5)
    yield memoryview(b"0123456789" * 1000)[3:9001]


def test_every_piece_arrives_in_order(tmp_path):
    path = tmp_path / "out"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT)
    out = GatheredOutput(fd, close_fd=True)
    expected = b""
    for piece in _pieces():
        assert out.write(piece) == len(piece)
        expected += bytes(piece)
    out.close()
    assert path.read_bytes() == expected
    with pytest.raises(OSError):
        os.fstat(fd)  # closed


def test_short_writes_resume_where_they_stopped(tmp_path, monkeypatch):
    path = tmp_path / "out"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT)
    real_writev = os.writev

    def short_writev(fd, buffers):  # at most 1000 bytes a call, cut anywhere
        taken, size = [], 0
        for b in buffers:
            b = memoryview(b)[:1000 - size]
            taken.append(b)
            size += len(b)
            if size == 1000:
                break
        return real_writev(fd, taken)

    monkeypatch.setattr(dump_output.os, "writev", short_writev)
    out = GatheredOutput(fd)
    expected = b""
    for i in range(300):
        piece = bytes([i % 256]) * (i * 37 % 4001)
        out.write(piece)
        expected += piece
    out.close()
    os.fstat(fd)  # still open: not given to close
    os.close(fd)
    assert path.read_bytes() == expected


def test_a_closed_pipe_raises_broken_pipe():
    read_end, write_end = os.pipe()
    os.close(read_end)
    out = GatheredOutput(write_end, close_fd=True)
    out.write(b"data")
    with pytest.raises(BrokenPipeError):
        out.close()
