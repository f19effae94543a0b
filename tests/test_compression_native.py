"""zstd frames made and read by the native sealing module's libzstd (repository/compression.py):
the same frames the zstandard module makes, frames of other writers without a recorded size,
and damaged frames refused with one clear error, never a crash or an unbounded allocation."""
import os

import pytest
import zstandard

from restique.errors import IntegrityError
from restique.repository import compression

SIZES = [0, 1, 100, 70_000, 3 << 20]


def sample(n: int) -> bytes:
    return os.urandom(n // 2) + bytes(n - n // 2)


@pytest.mark.parametrize("n", SIZES)
def test_frames_are_the_zstandard_modules_and_read_back(n):
    data = sample(n)
    frame = compression.compress(data, 3)
    assert frame == zstandard.ZstdCompressor(level=3, write_content_size=True, write_checksum=False).compress(data)
    assert zstandard.ZstdDecompressor().decompress(frame) == data
    assert compression.decompress(frame) == data
    assert compression.decompress(frame, n) == data


@pytest.mark.parametrize("n", SIZES)
def test_frames_without_a_recorded_size_are_streamed(n):
    data = sample(n)
    frame = zstandard.ZstdCompressor(level=3, write_content_size=False).compress(data)
    assert compression.decompress(frame) == data


def test_a_size_other_than_the_recorded_one_is_refused():
    frame = compression.compress(sample(70_000), 3)
    for wrong in (69_999, 70_001):
        with pytest.raises(IntegrityError):
            compression.decompress(frame, wrong)


@pytest.mark.parametrize("recorded", [True, False])
def test_damaged_frames_are_refused(recorded):
    frame = zstandard.ZstdCompressor(level=3, write_content_size=recorded).compress(sample(1 << 20))
    for bad in (b"", b"xx", frame[:5], frame[: len(frame) // 2], frame[:-1], b"xx" + frame):
        with pytest.raises(IntegrityError):
            compression.decompress(bad)


def test_a_size_far_beyond_what_the_frame_can_hold_allocates_nothing():
    frame = compression.compress(b"a" * 1000, 3)  # no frame decodes to over 32768 times its size
    with pytest.raises(IntegrityError):
        compression.decompress(frame, 1 << 40)
