"""Backup's pack uploads: as many packs stored at once as a remote backend has connections (two
at a time on a local disk), never more full packs held in memory than that, an index file only
once every pack it names is stored, and a failed upload failing the run instead of being lost."""
import json
import random
import threading
import time

import pytest

from restique.backend import FileType
from restique.backend.base import PermanentBackendError
from restique.backend.memory import MemoryBackend
from restique.model.ids import hash_id
from restique.repository import blob_store, pack_uploads
from restique.repository.blob_store import BlobStore
from restique.repository.crypto import MasterKey
from restique.repository.index import MasterIndex

PACK_SIZE = 64 * 1024
UPLOAD_SECONDS = 0.05


class SlowStorage(MemoryBackend):
    """Memory storage whose pack uploads take a while; counts how many run at once and checks,
    as each index file arrives, that every pack it names is already stored."""

    def __init__(self, connections: int = 0, fail_on_pack: int = 0):
        super().__init__()
        if connections:
            self.connections = connections
        self.fail_on_pack = fail_on_pack
        self.uploading = self.most_at_once = self.packs_started = 0
        self.early_indexes = []
        self._count = threading.Lock()

    def save(self, ftype, name, data):
        if ftype is not FileType.PACK:
            if ftype is FileType.INDEX:
                named = [p["id"] for p in json.loads(b"".join(data) if isinstance(data, list) else data)["packs"]]
                self.early_indexes += [p for p in named if not self._stored(p)]
            return super().save(ftype, name, data)
        with self._count:
            self.uploading += 1
            self.packs_started += 1
            self.most_at_once = max(self.most_at_once, self.uploading)
            failing = self.packs_started == self.fail_on_pack
        try:
            time.sleep(UPLOAD_SECONDS)
            if failing:
                raise PermanentBackendError("disk quota exceeded")
            super().save(ftype, name, data)
        finally:
            with self._count:
                self.uploading -= 1

    def _stored(self, pack_id):
        try:
            self.stat(FileType.PACK, pack_id)
            return True
        except FileNotFoundError:
            return False


def _store(backend):
    key = MasterKey.random()

    def save_file(ftype, data):
        name = hash_id(data)
        backend.save(ftype, name, data)
        return name

    return BlobStore(backend, key, MasterIndex(), None, save_file, pack_size=PACK_SIZE)


def _save_blobs(store, count=40, seed=5):
    rng = random.Random(seed)
    for _ in range(count):
        store.save("data", rng.randbytes(24 * 1024))


@pytest.fixture
def small_index_files(monkeypatch):
    monkeypatch.setattr(blob_store, "MAX_BLOBS_PER_INDEX_FILE", 6)  # index files written mid-run


def test_remote_backend_stores_packs_side_by_side(small_index_files):
    backend = SlowStorage(connections=3)
    store = _store(backend)
    _save_blobs(store)
    store.flush()
    store.close()
    assert backend.packs_started >= 10
    assert 2 <= backend.most_at_once <= 3
    assert backend.early_indexes == []
    assert len(list(backend.list(FileType.INDEX))) >= 2
    assert _indexed_packs(backend) == {name for name, _ in backend.list(FileType.PACK)}


def test_local_backend_stores_two_packs_at_a_time(small_index_files):
    """One pack is written while the other waits for its fsync, as restic's two local connections."""
    backend = SlowStorage()
    store = _store(backend)
    _save_blobs(store, count=20)
    store.flush()
    store.close()
    assert backend.packs_started >= 5 and backend.most_at_once == pack_uploads.LOCAL_UPLOADS == 2
    assert backend.early_indexes == []


def test_savers_wait_for_a_free_upload_slot():
    """With every upload slot busy, a saver filling another pack waits: memory holds at most
    as many full packs as there are connections."""
    backend = SlowStorage(connections=2)
    store = _store(backend)
    held = []
    original = store.uploads.write
    store.uploads.write = lambda writer, *rest: (held.append(writer), time.sleep(0.2), original(writer, *rest))
    started = time.monotonic()
    _save_blobs(store, count=30)  # about 10 packs: 5 rounds of 2 uploads of 0.25 s
    store.flush()
    store.close()
    assert time.monotonic() - started >= 4 * 0.25
    assert backend.most_at_once <= 2


def test_failed_upload_fails_the_run_and_names_no_lost_pack(small_index_files):
    backend = SlowStorage(connections=3, fail_on_pack=4)
    store = _store(backend)
    with pytest.raises(PermanentBackendError, match="disk quota exceeded"):
        _save_blobs(store, count=60)
        store.flush()
    store.close()
    assert backend.early_indexes == []
    assert _indexed_packs(backend) <= {name for name, _ in backend.list(FileType.PACK)}


def _indexed_packs(backend) -> set:
    indexed = set()
    for name, _ in backend.list(FileType.INDEX):
        indexed |= {p["id"] for p in json.loads(backend.load(FileType.INDEX, name))["packs"]}
    return indexed


def test_full_packs_in_memory_are_bounded_in_bytes(monkeypatch):
    """More connections than the memory budget has room for: uploads at once stop at the budget
    (restic keeps its packs in temporary files; 5 packs of 16 MiB each is memory it never holds)."""
    monkeypatch.setattr(pack_uploads, "UPLOAD_MEMORY", 2 * PACK_SIZE + PACK_SIZE // 2)
    backend = SlowStorage(connections=5)
    store = _store(backend)
    _save_blobs(store, count=40)
    store.flush()
    store.close()
    assert backend.packs_started >= 10
    assert backend.most_at_once == 2


def test_one_pack_larger_than_the_budget_still_goes(monkeypatch):
    monkeypatch.setattr(pack_uploads, "UPLOAD_MEMORY", PACK_SIZE // 4)
    backend = SlowStorage(connections=5)
    store = _store(backend)
    _save_blobs(store, count=12)
    store.flush()
    store.close()
    assert backend.packs_started >= 3 and backend.most_at_once == 1
