"""What the local cache reads from disk: a cached file is read once to be checked against its
name and that copy is used, a file checked earlier is read by range, and a pack of data blobs
(never cached) is loaded from the repository without looking in the cache folder."""
import hashlib
import os

import pytest

from restique.backend import FileType
from restique.backend.cache import CachedBackend
from restique.backend.cache_dir import CacheDir
from restique.backend.memory import MemoryBackend


class CountingCacheDir(CacheDir):
    def __init__(self, base, repo_id):
        super().__init__(base, repo_id)
        self.reads = []

    def read(self, ftype, name):
        self.reads.append(("whole", name))
        return super().read(ftype, name)

    def read_range(self, ftype, name, offset, length):
        self.reads.append(("range", name))
        return super().read_range(ftype, name, offset, length)


def _named(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _cached_backend(storage, base, tree_packs=()):
    cache, _ = CountingCacheDir.open(str(base), "ab" * 32)
    backend = CachedBackend(storage)
    backend.use_cache(cache, lambda name, data: name in tree_packs)
    return backend, cache


def test_a_cached_file_is_read_once_to_check_it(tmp_path):
    storage = MemoryBackend()
    index = os.urandom(5000)
    writer, _ = _cached_backend(storage, tmp_path)
    writer.save(FileType.INDEX, _named(index), index)

    reader, cache = _cached_backend(storage, tmp_path)  # a new process: nothing checked yet
    assert reader.load(FileType.INDEX, _named(index)) == index
    assert cache.reads == [("whole", _named(index))]
    assert reader.load(FileType.INDEX, _named(index), 10, 20) == index[10:30]
    assert cache.reads[1:] == [("range", _named(index))]


def test_a_damaged_cached_file_is_fetched_again(tmp_path):
    storage = MemoryBackend()
    index = os.urandom(5000)
    writer, cache = _cached_backend(storage, tmp_path)
    writer.save(FileType.INDEX, _named(index), index)
    with open(cache.filename(FileType.INDEX, _named(index)), "r+b") as f:
        f.write(b"X")
    reader, _ = _cached_backend(storage, tmp_path)
    assert reader.load(FileType.INDEX, _named(index), 0, 100) == index[:100]
    with open(cache.filename(FileType.INDEX, _named(index)), "rb") as f:
        assert f.read() == index


def test_data_packs_are_not_looked_for_in_the_cache(tmp_path):
    storage = MemoryBackend()
    tree_pack, data_pack = os.urandom(3000), os.urandom(3000)
    for pack in (tree_pack, data_pack):
        storage.save(FileType.PACK, _named(pack), pack)
    backend, cache = _cached_backend(storage, tmp_path, tree_packs={_named(tree_pack)})
    assert backend.load(FileType.PACK, _named(data_pack), 100, 50) == data_pack[100:150]
    assert cache.reads == []
    assert backend.load(FileType.PACK, _named(tree_pack), 100, 50) == tree_pack[100:150]
    assert os.path.exists(cache.filename(FileType.PACK, _named(tree_pack)))
    assert not os.path.exists(cache.filename(FileType.PACK, _named(data_pack)))


def _open_descriptors() -> int:
    return len(os.listdir("/proc/self/fd"))


def test_ranges_are_read_from_the_files_as_they_are_now(tmp_path):
    """read_range keeps files open, yet reads what the cache's own writes and removals left."""
    cache, _ = CacheDir.open(str(tmp_path), "ab" * 32)
    first, second = os.urandom(3000), os.urandom(2000)
    cache.write(FileType.PACK, "aa" * 32, first)
    assert cache.read_range(FileType.PACK, "aa" * 32, 100, 50) == first[100:150]
    assert cache.read_range(FileType.PACK, "aa" * 32, 2900, None) == first[2900:]
    assert cache.read_range(FileType.PACK, "aa" * 32, 2990, 50) == first[2990:]  # cut at the end
    assert cache.read_range(FileType.PACK, "aa" * 32, 5000, None) == b""
    cache.write(FileType.PACK, "aa" * 32, second)  # replaced
    assert cache.read_range(FileType.PACK, "aa" * 32, 0, None) == second
    cache.remove(FileType.PACK, "aa" * 32)
    with pytest.raises(FileNotFoundError):
        cache.read_range(FileType.PACK, "aa" * 32, 0, 10)
    cache.write(FileType.INDEX, "bb" * 32, first)
    assert cache.read_range(FileType.INDEX, "bb" * 32, 0, 10) == first[:10]
    cache.clear(FileType.INDEX, keep=())
    with pytest.raises(FileNotFoundError):
        cache.read_range(FileType.INDEX, "bb" * 32, 0, 10)
    cache.close()


def test_open_files_are_bounded_shared_by_threads_and_closed(tmp_path, monkeypatch):
    """Ten files read by four threads through three kept descriptors: every read right."""
    from concurrent.futures import ThreadPoolExecutor

    from restique.backend import cache_dir

    monkeypatch.setattr(cache_dir, "OPEN_FILES", 3)
    before = _open_descriptors()
    cache, _ = CacheDir.open(str(tmp_path), "ab" * 32)
    files = {_named(bytes([n]) * 5000): bytes([n]) * 4000 + os.urandom(1000) for n in range(10)}
    for name, data in files.items():
        cache.write(FileType.PACK, name, data)

    def read(job):
        name, offset = job
        return cache.read_range(FileType.PACK, name, offset, 700) == files[name][offset:offset + 700]

    names = list(files)
    jobs = [(names[n * 7 % 10], n * 337 % 4500) for n in range(400)]
    with ThreadPoolExecutor(4) as pool:
        assert all(pool.map(read, jobs))
    assert _open_descriptors() <= before + 3
    cache.close()
    assert _open_descriptors() == before
    assert read((names[0], 10))  # usable after close
    cache.close()
