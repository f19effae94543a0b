"""The seal path's shortcuts keep what sealing guarantees.

Sealing skips zstd's full attempt when samples spread over a chunk do not compress: random
data is stored as is, but anything with a compressible stretch (text, zeros, a chunk that is
random in one half and text in the other, a short compressible run between random data)
must still be stored compressed when that saves space. Every sealed blob opens to its input,
and restic reads a repository written this way (check --read-data).
"""
import json
import random

import pytest
import zstandard

from conftest import run_restic, run_restique
from restique import _seal

MiB = 1 << 20
KEYS = (bytes(range(32)), bytes(range(16, 32)), bytes(range(32, 48)))


def text(n: int, seed: int = 1) -> bytes:
    rng = random.Random(seed)
    words = [rng.choice(["backup", "restic", "chunk", "pack", "index", "tree", "blob", "snapshot"])
             + str(rng.randrange(1000)) for _ in range(n // 4)]
    return " ".join(words).encode()[:n]


def noise(n: int, seed: int = 2) -> bytes:
    return random.Random(seed).randbytes(n)


def seal(data, level=3, always=False):
    sealed, ulen = _seal.seal(*KEYS, data, level, always)
    assert _seal.open(*KEYS, sealed, ulen) == data
    return sealed, ulen


def full_attempt_size(data) -> int:
    return len(zstandard.ZstdCompressor(level=3).compress(data))


def test_random_chunk_is_stored_as_is():
    data = noise(MiB + 12345)
    sealed, ulen = seal(data)
    assert ulen == 0 and len(sealed) == len(data) + 32


@pytest.mark.parametrize("name, data", [
    ("text", text(MiB)),
    ("zeros", bytes(2 * MiB)),
    ("random then text", noise(MiB // 2) + text(MiB // 2)),
    ("text then random", text(MiB // 2) + noise(MiB // 2)),
    ("a 40 KiB text run inside random", noise(600 * 1024) + text(40 * 1024) + noise(400 * 1024)),
    ("text at the very end", noise(MiB - 20000) + bytes(20000)),
])
def test_compressible_stretches_are_compressed(name, data):
    sealed, ulen = seal(data)
    assert ulen == len(data), f"{name}: stored uncompressed"
    # about as small as a full attempt at the same level (zstd versions differ a little)
    assert len(sealed) <= full_attempt_size(data) * 1.02 + 32


def test_short_data_always_gets_the_full_attempt():
    data = noise(60 * 1024) + bytes(4096)  # below the sampling threshold
    sealed, ulen = seal(data)
    assert ulen == len(data) and len(sealed) < len(data)


def test_always_compresses_even_random_data():
    data = noise(300 * 1024)
    sealed, ulen = seal(data, always=True)
    assert ulen == len(data) and len(sealed) > len(data)


def test_level_zero_and_empty_data():
    for data in (b"", b"x", text(5000), noise(3 * MiB)):
        sealed, ulen = seal(data, level=0)
        assert ulen == 0 and len(sealed) == len(data) + 32
    assert seal(b"")[1] == 0


def test_memoryview_input_seals_the_viewed_bytes():
    buf = bytearray(noise(MiB) + text(MiB))
    view = memoryview(buf)[MiB - 1000:2 * MiB - 1000]
    sealed, ulen = seal(view)
    assert ulen == MiB


def test_restic_reads_what_the_shortcuts_wrote(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    (src / "random.bin").write_bytes(noise(3 * MiB, seed=5))
    (src / "mixed.bin").write_bytes(noise(MiB, seed=6) + text(MiB, seed=7) + noise(MiB, seed=8))
    (src / "text.txt").write_bytes(text(2 * MiB, seed=9))
    (src / "small.txt").write_bytes(b"hello\n")
    repo = tmp_path / "repo"
    run_restique(repo, "init")
    run_restique(repo, "backup", "--no-cache", str(src), cwd=tmp_path)
    run_restic(repo, "check", "--read-data", "--no-cache")
    stats = json.loads(run_restic(repo, "stats", "--mode", "raw-data", "--json", "--no-cache").stdout)
    # the random 5 MiB stored as is, the 3 MiB of text squeezed to under a third
    assert stats["total_size"] < 6.2 * MiB
    out = tmp_path / "out"
    run_restic(repo, "restore", "latest", "--target", str(out), "--no-cache")
    for name in ("random.bin", "mixed.bin", "text.txt", "small.txt"):
        restored = next(out.rglob(name))
        assert restored.read_bytes() == (src / name).read_bytes()
