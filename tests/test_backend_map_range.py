"""Reads of a local pack as views of the file's pages (LocalBackend.map_range, base.load_view):
the same bytes and the same errors as load(), small ranges copied, and every wrapper either
mapping too (the cache, for a file it does not keep) or reading through load() (the rate
limiter, which meters what load() returns)."""
import hashlib
import os

import pytest

from restique.backend import FileType, local
from restique.backend.base import BackendNotFound, BackendShortRead, load_view
from restique.backend.cache import CachedBackend
from restique.backend.cache_dir import CacheDir
from restique.backend.limiter import RateLimitedBackend
from restique.backend.local import LocalBackend

DATA = os.urandom(3 * local.MAP_MIN + 12345)
NAME = hashlib.sha256(DATA).hexdigest()


@pytest.fixture
def backend(tmp_path) -> LocalBackend:
    be = LocalBackend(str(tmp_path / "repo"))
    be.create()
    be.save(FileType.PACK, NAME, DATA)
    return be


@pytest.mark.parametrize("offset, length", [(0, len(DATA)), (4097, 2 * local.MAP_MIN), (1, local.MAP_MIN),
                                            (len(DATA) - local.MAP_MIN, local.MAP_MIN)])
def test_a_mapped_range_holds_what_load_returns(backend, offset, length):
    view = backend.map_range(FileType.PACK, NAME, offset, length)
    assert isinstance(view, memoryview) and view.readonly
    assert view == DATA[offset:offset + length] == backend.load(FileType.PACK, NAME, offset, length)


def test_small_ranges_are_copied(backend):
    got = backend.map_range(FileType.PACK, NAME, 10, local.MAP_MIN - 1)
    assert isinstance(got, bytes) and got == DATA[10:10 + local.MAP_MIN - 1]


def test_ranges_past_the_end_and_missing_files_fail_as_load_does(backend):
    with pytest.raises(BackendShortRead, match="short read"):
        backend.map_range(FileType.PACK, NAME, len(DATA) - local.MAP_MIN, local.MAP_MIN + 1)
    with pytest.raises(BackendShortRead, match="past the end"):
        backend.map_range(FileType.PACK, NAME, len(DATA) + 5, local.MAP_MIN)
    with pytest.raises(BackendNotFound):
        backend.map_range(FileType.PACK, "cd" * 32, 0, local.MAP_MIN)
    with pytest.raises(ValueError):
        backend.map_range(FileType.PACK, NAME, -1, local.MAP_MIN)


def test_a_mapping_whose_pages_cannot_be_read_in_falls_back_to_load(backend, monkeypatch):
    monkeypatch.setattr(local, "_POPULATE_READ", 12345)  # no such advice: madvise fails
    got = backend.map_range(FileType.PACK, NAME, 7, 2 * local.MAP_MIN)
    assert isinstance(got, bytes) and got == DATA[7:7 + 2 * local.MAP_MIN]


def test_the_rate_limiter_reads_through_load_and_meters_it(backend):
    limited = RateLimitedBackend(backend, download_kib=1 << 20)
    taken = []
    limited.download.take = taken.append
    got = load_view(limited, FileType.PACK, NAME, 0, 2 * local.MAP_MIN)
    assert isinstance(got, bytes) and taken == [2 * local.MAP_MIN]


def test_the_cache_maps_packs_it_does_not_keep_and_reads_those_it_keeps(backend, tmp_path):
    cached = CachedBackend(backend)
    keeps = {"tree": False}
    cached.use_cache(CacheDir.open(str(tmp_path / "cache"), "repo-id")[0], lambda name, data: keeps["tree"])
    got = load_view(cached, FileType.PACK, NAME, 3, 2 * local.MAP_MIN)
    assert isinstance(got, memoryview) and got == DATA[3:3 + 2 * local.MAP_MIN]
    keeps["tree"] = True
    got = load_view(cached, FileType.PACK, NAME, 3, 2 * local.MAP_MIN)
    assert isinstance(got, bytes) and got == DATA[3:3 + 2 * local.MAP_MIN]


def test_backends_without_mapping_load(tmp_path):
    class Plain:
        def load(self, ftype, name, offset=0, length=None):
            return b"x" * length

    assert load_view(Plain(), FileType.PACK, NAME, 0, 5) == b"xxxxx"
