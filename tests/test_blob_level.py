"""The zstd level a data blob gets (repository/compression.py blob_level): "auto" compresses
blobs up to SMALL_BLOB at level 2 (a third less time there for 0.3% more bytes); larger blobs
and the other modes keep their level."""
import hashlib
import random

from restique.repository import compression
from restique.repository.compression import LEVELS, SMALL_BLOB, blob_level


def test_auto_takes_level_2_for_small_blobs_only():
    auto = LEVELS["auto"]
    assert [blob_level(auto, size) for size in (1, 4096, SMALL_BLOB)] == [2, 2, 2]
    assert [blob_level(auto, size) for size in (SMALL_BLOB + 1, 8 * 1024 * 1024)] == [auto, auto]


def test_other_modes_keep_their_level():
    for mode in ("off", "fastest", "better", "max"):
        assert blob_level(LEVELS[mode], 4096) == LEVELS[mode]
        assert blob_level(LEVELS[mode], 4 * SMALL_BLOB) == LEVELS[mode]


def test_a_small_blob_at_its_level_compresses_and_decodes():
    words = [bytes(random.Random(i).choices(b"abcdefghij", k=6)) for i in range(64)]
    data = b" ".join(random.Random(13).choices(words, k=5000))
    frame = compression.compress(data, blob_level(LEVELS["auto"], len(data)))
    assert len(frame) < len(data) // 2
    assert compression.decompress(frame, len(data)) == data


def test_the_blob_store_seals_data_blobs_at_their_level(tmp_path, monkeypatch):
    """Both ways into a pack (a sealed copy, and sealing straight into the pack buffer) ask
    blob_level for each data blob; trees keep the tree level."""
    from restique.repository import blob_store
    from restique.repository.repository import init_repository

    asked = []

    def recording(level, size):
        asked.append(size)
        return blob_level(level, size)

    monkeypatch.setattr(blob_store, "blob_level", recording)
    repo = init_repository(str(tmp_path / "repo"), "pw", kdf_params=(1 << 10, 8, 1))
    try:
        small, large = b"a" * 1000, random.Random(5).randbytes(SMALL_BLOB + 10)
        repo.blobs.save("data", small)
        repo.blobs.store("data", hashlib.sha256(large).hexdigest(), large)
        repo.blobs.save("tree", b'{"nodes":[]}\n')
        assert asked == [len(small), len(large)]
    finally:
        repo.close()

