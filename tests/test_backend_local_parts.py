"""A local save hands a pack's parts back once they are written (PackParts.written, before the
fsync), so the backup can reuse their memory; nothing that may save the same parts again
(a retried save) says it does, and a pack the cache keeps is not given back before the cache
has written it."""
import hashlib
import os

from restique.backend import FileType
from restique.backend.cache import CachedBackend
from restique.backend.cache_dir import CacheDir
from restique.backend.compose import with_cache, wrap_backend
from restique.backend.local import LocalBackend
from restique.backend.options import BackendOptions
from restique.backend.retry import RetryBackend
from restique.repository.pack import PackParts

NAME = "ab" * 32


def _backend(tmp_path) -> LocalBackend:
    be = LocalBackend(str(tmp_path / "repo"))
    be.create()
    return be


def _parts():
    return [b"first part " * 100, bytearray(b"second " * 1000), memoryview(b"third" * 7)]


def test_written_is_called_once_after_every_byte_is_in_the_file(tmp_path):
    be = _backend(tmp_path)
    parts = _parts()
    whole = b"".join(parts)
    seen = []

    def on_written():
        # the temporary file (not yet renamed) already holds every byte
        folder = os.path.dirname(be._file(FileType.PACK, NAME))
        temporary = [e for e in os.scandir(folder) if "-tmp-" in e.name]
        seen.append([e.stat().st_size for e in temporary])

    data = PackParts(parts, on_written)
    be.save(FileType.PACK, NAME, data)
    assert seen == [[len(whole)]]
    assert list(data) == []  # emptied: nobody reads reused memory through it
    assert be.load(FileType.PACK, NAME) == whole


def test_plain_parts_and_bytes_are_saved_as_before(tmp_path):
    be = _backend(tmp_path)
    parts = _parts()
    be.save(FileType.PACK, NAME, parts)
    assert len(parts) == 3
    assert be.load(FileType.PACK, NAME) == b"".join(parts)
    be.save(FileType.SNAPSHOT, NAME, b"snapshot")
    assert be.load(FileType.SNAPSHOT, NAME) == b"snapshot"


def test_only_a_save_that_is_never_tried_again_releases_its_parts(tmp_path):
    be = _backend(tmp_path)
    composed = with_cache(wrap_backend(be, BackendOptions()))  # a local backend is not retried
    assert composed.releases_written_parts is True
    assert RetryBackend(be).releases_written_parts is False


def test_a_pack_the_cache_keeps_is_not_released_before_the_cache_has_it(tmp_path):
    be = _backend(tmp_path)
    cached = CachedBackend(be)
    looked_at = []

    def holds_trees(name, data):
        looked_at.append(None if data is None else b"".join(bytes(p) for p in data))
        return True

    cached.use_cache(CacheDir.open(str(tmp_path / "cache"), "repo-id")[0], holds_trees)
    parts = _parts()
    whole = b"".join(parts)
    name = hashlib.sha256(whole).hexdigest()
    cached.save(FileType.PACK, name, PackParts(parts, lambda: None))
    assert looked_at == [whole]
    assert cached.load(FileType.PACK, name) == whole
