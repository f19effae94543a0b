"""Switching on the local cache for an opened repository, and the cache folders' listing
and cleanup used by the `cache` command and `--cleanup-cache`."""
from __future__ import annotations

import os
import time
from typing import Callable, List, NamedTuple, Optional

from ..backend.cache import CachedBackend
from ..backend.parts import FileBody
from ..backend.cache_dir import (MAX_AGE_DAYS, CacheDir, default_base, folder_size, is_old,
                                 list_cache_dirs, old_cache_dirs, remove_cache_dirs)

# plain classes, not dataclasses: every command that opens a repository loads this module, and
# making a dataclass costs more than a millisecond


class CacheSetup:
    """What opening the cache has to say, in restic's words; the CLI decides what to show."""

    def __init__(self, warnings: List[str]):
        self.cache: Optional[CacheDir] = None
        self.created = False
        self.removed_old = 0  # old folders removed (--cleanup-cache)
        self.old_found = 0  # old folders left in place
        self.warnings = warnings


def setup_cache(repo, base: Optional[str] = None, cleanup: bool = False) -> CacheSetup:
    """Use the cache folder of repo under base (default_base() when None); with cleanup,
    remove the folders of repositories unused for 30 days. A cache that cannot be opened is
    a warning: the repository works without it."""
    setup = CacheSetup(warnings=[])
    backend = repo.backend
    if not isinstance(backend, CachedBackend):
        return setup
    base = base or default_base()
    try:
        setup.cache, setup.created = CacheDir.open(base, repo.config.id)
    except OSError as exc:
        setup.warnings.append(f"unable to open cache: {exc.strerror or exc}")
        return setup
    backend.use_cache(setup.cache, TreePacks(repo))
    old = old_cache_dirs(base)
    if old and cleanup:
        setup.removed_old = len(old)
        setup.warnings += remove_cache_dirs(base, old)
    else:
        setup.old_found = len(old)
    return setup


class TreePacks:
    """Which packs hold tree blobs: from the pack's own header when it is being saved, from
    the index when it is being loaded (restic caches exactly these packs)."""

    def __init__(self, repo):
        self.repo = repo
        self._known = set()
        self._read_from = (None, -1)  # the index _known was read from, and its changes then

    def __call__(self, pack_id: str, data=None) -> bool:
        from ..repository.pack import TREE  # only once a pack is saved or loaded

        if data is not None:
            return self._header_has_trees(data)
        if pack_id not in self._known:
            index = self.repo.index
            if self._read_from != (index, index.changes):  # else the pack holds no trees
                self._read_from = (index, index.changes)
                self._known = {index.lookup(TREE, blob_id).pack_id for _, blob_id in index.blobs(TREE)}
        return pack_id in self._known

    def _header_has_trees(self, data) -> bool:
        from ..repository.pack import TREE, header_length_from_tail, parse_header

        if isinstance(data, FileBody):  # a pack in a file: only its end is read
            tail, size = data.tail, len(data)
        else:
            pieces = [data] if isinstance(data, (bytes, bytearray, memoryview)) else list(data)
            tail, size = (lambda n: _tail(pieces, n)), sum(len(p) for p in pieces)
        try:
            header_length = header_length_from_tail(tail(4), size)
            sealed = tail(header_length + 4)[:header_length]
            return any(e.type == TREE for e in parse_header(self.repo.key, sealed, size))
        except Exception:  # noqa: BLE001 - an unreadable pack is simply not cached
            return False


def _tail(pieces, n: int) -> bytes:
    """The last n bytes of pieces stored one after the other, without joining them all."""
    out, need = [], n
    for piece in reversed(pieces):
        if need <= 0:
            break
        part = bytes(piece[-need:]) if need < len(piece) else bytes(piece)
        out.append(part)
        need -= len(part)
    return b"".join(reversed(out))


# --- the `cache` command ---

class CacheFolder(NamedTuple):
    name: str
    days_unused: int
    old: bool
    size: Optional[int]  # bytes; None when not asked for


def cache_folders(base: str, max_age_days: int = MAX_AGE_DAYS, sizes: bool = True) -> List[CacheFolder]:
    """The repository cache folders under base, least recently used first."""
    now = time.time()
    entries = sorted(list_cache_dirs(base), key=lambda e: e.mtime)
    return [CacheFolder(e.name, int((now - e.mtime) // 86400), is_old(e.mtime, max_age_days),
                        folder_size(os.path.join(base, e.name)) if sizes else None)
            for e in entries]


def cleanup_old(base: str, max_age_days: int, warn: Callable[[str], None]) -> int:
    """Remove the folders unused for max_age_days; how many there were."""
    old = old_cache_dirs(base, max_age_days)
    for message in remove_cache_dirs(base, old):
        warn(message)
    return len(old)
