"""The local cache as a backend wrapper: snapshots, index files and the packs holding tree
blobs are kept on local disk, as the backend stores them (encrypted), so that listing and
browsing a remote repository does not download them again.

The wrapper starts switched off: the cache folder is named by the repository id, which is
only known once the config has been decrypted; use_cache() switches it on.

A cached file is never trusted blindly. Every repository file is named by the SHA-256 of its
content, so the first time a cached file is used in a process its hash is checked; a file
that does not match (damaged on disk, cut short) is removed and fetched again.
"""
from __future__ import annotations

import hashlib
import threading
from typing import Callable, Dict, Optional, Set

from .base import BackendShortRead, FileType, check_range, is_not_found, load_view
from .cache_dir import LAYOUT, CacheDir

_VERIFIED = object()  # a cached file whose hash was checked earlier in this process

# holds_trees(pack name, pack bytes or None): whether a pack holds tree blobs. Given the
# bytes when the pack is being saved, None when it is being loaded.
TreePackTest = Callable[[str, Optional[object]], bool]


class CachedBackend:
    def __init__(self, backend):
        self.backend = backend
        self.cache: Optional[CacheDir] = None
        self._holds_trees: TreePackTest = lambda name, data: False
        self._verified: Set[str] = set()  # cached files whose hash was checked in this process
        self._guard = threading.Lock()
        self._fetching: Dict[str, threading.Lock] = {}

    def use_cache(self, cache: CacheDir, holds_trees: TreePackTest) -> None:
        self.cache = cache
        self._holds_trees = holds_trees

    def __getattr__(self, name):  # location, atomic_replace and the backend's own settings
        return getattr(self.backend, name)

    def create(self) -> None:
        self.backend.create()

    def close(self) -> None:
        if self.cache is not None:
            self.cache.close()  # the files kept open for ranged reads
        self.backend.close()

    def _caches(self, ftype: FileType, name: str, data=None) -> bool:
        """Whether this file belongs in the cache (restic's automatically cached types)."""
        if self.cache is None or ftype not in LAYOUT:
            return False
        return ftype is not FileType.PACK or self._holds_trees(name, data)

    # --- writing ---
    def save(self, ftype: FileType, name: str, data) -> None:
        caches = self._caches(ftype, name, data)
        # the cache writes the parts after the save: a backend given a plain list of them
        # cannot give them back (PackParts.written) before that
        self.backend.save(ftype, name, list(data) if caches and hasattr(data, "written") else data)
        if caches:
            try:
                self.cache.write(ftype, name, data)
                with self._guard:
                    self._verified.add(name)
            except OSError:
                self.cache.remove(ftype, name)  # the cache only speeds things up

    def remove(self, ftype: FileType, name: str) -> None:
        self.backend.remove(ftype, name)
        self._forget(ftype, name)

    # --- reading ---
    def stat(self, ftype: FileType, name: str) -> int:
        try:
            return self.backend.stat(ftype, name)
        except OSError as exc:
            if is_not_found(exc):
                self._forget(ftype, name)
            raise

    def list(self, ftype: FileType):
        """The backend's listing; once it is complete, cached files of that type the
        repository no longer has are removed (snapshots forgotten, indexes replaced)."""
        if self.cache is None or ftype not in LAYOUT:
            yield from self.backend.list(ftype)
            return
        present = set()
        for name, size in self.backend.list(ftype):
            present.add(name)
            yield name, size
        self.cache.clear(ftype, present)

    def load(self, ftype: FileType, name: str, offset: int = 0, length: Optional[int] = None) -> bytes:
        check_range(offset, length)
        if self.cache is None or ftype not in LAYOUT or not self._caches(ftype, name):
            # a pack of data blobs is never cached: a restore's reads do not look for it
            return self.backend.load(ftype, name, offset, length)
        cached = self._sound_cached_copy(ftype, name)
        if cached is _VERIFIED:
            try:
                return self._read_cached(ftype, name, offset, length)
            except FileNotFoundError:  # cleared meanwhile by another process
                self._forget(ftype, name)
        elif cached is not None:
            return _slice(cached, offset, length, ftype, name)
        whole = self._fetch(ftype, name)
        if whole is None:  # the repository's own copy is damaged: let the caller see it
            return self.backend.load(ftype, name, offset, length)
        return _slice(whole, offset, length, ftype, name)

    def map_range(self, ftype: FileType, name: str, offset: int, length: int):
        """load() as a view of the repository's file where the backend maps files and the
        file is not one for the cache (a pack of data blobs)."""
        if self._caches(ftype, name):
            return self.load(ftype, name, offset, length)
        return load_view(self.backend, ftype, name, offset, length)

    def _read_cached(self, ftype: FileType, name: str, offset: int, length: Optional[int]) -> bytes:
        data = self.cache.read_range(ftype, name, offset, length)
        if length is not None and len(data) != length:
            raise BackendShortRead(f"{ftype.folder}/{name}: file is shorter than the range read")
        return data

    def _sound_cached_copy(self, ftype: FileType, name: str):
        """_VERIFIED when the cached copy was checked earlier in this process; else the cached
        bytes once their hash matches the name (read once: the caller slices them instead of
        reading the file again), or None when there is no sound copy (a damaged one is removed)."""
        with self._guard:
            if name in self._verified:
                return _VERIFIED
        with self._fetch_lock(name):
            with self._guard:
                if name in self._verified:  # checked by another thread meanwhile
                    return _VERIFIED
            cached = self.cache.read(ftype, name)
            if cached is None:
                return None
            if hashlib.sha256(cached).hexdigest() != name:
                self.cache.remove(ftype, name)
                return None
            with self._guard:
                self._verified.add(name)
            return cached

    def _fetch(self, ftype: FileType, name: str) -> Optional[bytes]:
        """Download a whole file into the cache (once, when threads ask together); its bytes,
        or None when the repository's copy does not match its name."""
        with self._fetch_lock(name):
            with self._guard:
                if name in self._verified:
                    return self.cache.read(ftype, name)
            whole = self.backend.load(ftype, name)
            if hashlib.sha256(whole).hexdigest() != name:
                return None
            try:
                self.cache.write(ftype, name, whole)
                with self._guard:
                    self._verified.add(name)
            except OSError:
                self.cache.remove(ftype, name)
            return whole

    def _fetch_lock(self, name: str) -> threading.Lock:
        with self._guard:
            return self._fetching.setdefault(name, threading.Lock())

    def _forget(self, ftype: FileType, name: str) -> None:
        if self.cache is not None and ftype in LAYOUT:
            self.cache.remove(ftype, name)
            with self._guard:
                self._verified.discard(name)


def _slice(whole: bytes, offset: int, length: Optional[int], ftype: FileType, name: str) -> bytes:
    end = len(whole) if length is None else offset + length
    if offset > len(whole) or end > len(whole):
        raise BackendShortRead(f"{ftype.folder}/{name}: file is shorter than the range read")
    return whole[offset:end]
