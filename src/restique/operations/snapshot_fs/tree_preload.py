"""Tree blobs read a batch at a time, for the folders a listing will reach next.

Read one by one, every tree costs a read request of its own (from the local cache: a file
open each, a tenth of a cold listing). The folders of one level were written together, so
their trees lie side by side in few packs: read sorted by place, one window of a pack
serves many of them.
"""
import threading
from typing import Dict, Iterable

from ...errors import RestiqueError
from ..archiver.parent import TreeWindows

KEPT_BYTES = 16 << 20  # plaintext read ahead and not yet used; the oldest go first


class PreloadedTrees:
    """A repository for a TreeLoader: load_blob answers a preloaded tree once (it is decoded
    and kept by the loader then), any other blob from the repository."""

    def __init__(self, repo):
        self.repo = repo
        self._plain: Dict[str, bytes] = {}
        self._held = 0
        self._lock = threading.Lock()

    def __contains__(self, tree_id: str) -> bool:
        return tree_id in self._plain

    def size(self, tree_id: str) -> int:
        """Bytes of the preloaded tree's JSON (0 when it is not preloaded)."""
        plain = self._plain.get(tree_id)
        return len(plain) if plain is not None else 0

    def load_blob(self, blob_type: str, blob_id: str) -> bytes:
        if blob_type == "tree":
            with self._lock:
                plain = self._plain.pop(blob_id, None)
                if plain is not None:
                    self._held -= len(plain)
                    return plain
        return self.repo.load_blob(blob_type, blob_id)

    def preload(self, tree_ids: Iterable[str]) -> None:
        """Read the trees in pack order; a tree that fails is left for its own load to
        report."""
        located = []
        for tree_id in set(tree_ids):
            if tree_id in self._plain:
                continue
            loc = self.repo.index.lookup("tree", tree_id)
            if loc is not None:
                located.append((loc.pack_id, loc.offset, tree_id))
        if len(located) < 2:
            return  # nothing to share a read with
        located.sort()
        windows = TreeWindows(self.repo)
        for _, _, tree_id in located:
            try:
                self._keep(tree_id, windows.load(tree_id))
            except (RestiqueError, OSError, EOFError):
                continue

    def _keep(self, tree_id: str, plain: bytes) -> None:
        with self._lock:
            if tree_id in self._plain:
                return
            self._plain[tree_id] = plain
            self._held += len(plain)
            while self._held > KEPT_BYTES and len(self._plain) > 1:
                oldest = next(iter(self._plain))
                self._held -= len(self._plain.pop(oldest))

