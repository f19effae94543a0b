"""The local record of an interrupted backup: the tree of what it had saved (see
checkpoint.py), kept in the repository's cache folder, one file per host and set of paths.

The record is sealed with the repository's key: it names the backed-up paths, and a
damaged or foreign record fails its MAC and is ignored. It is replaced at every checkpoint
and removed once a backup of the same paths completes.
"""
import hashlib
import json
import os
import time
from dataclasses import asdict, dataclass
from typing import List, Optional

from ...errors import RestiqueError


@dataclass
class ResumeRecord:
    hostname: str
    paths: List[str]
    tree: str  # the root of the checkpoint's trees
    written_ns: int  # when the checkpoint was written (Unix time)


class ResumeRecords:
    def __init__(self, folder: str, key):
        self.folder = folder
        self.key = key  # the repository's master key

    def _file(self, hostname: str, paths: List[str]) -> str:
        name = hashlib.sha256(json.dumps([hostname, sorted(paths)]).encode("utf-8", "surrogateescape"))
        return os.path.join(self.folder, name.hexdigest())

    def save(self, hostname: str, paths: List[str], tree: str) -> None:
        record = ResumeRecord(hostname, sorted(paths), tree, time.time_ns())
        sealed = self.key.seal(json.dumps(asdict(record)).encode("utf-8", "surrogateescape"))
        final = self._file(hostname, paths)
        tmp = final + ".tmp"  # one name: a save killed half-way is overwritten by the next
        os.makedirs(self.folder, mode=0o700, exist_ok=True)
        with open(tmp, "wb") as f:
            f.write(sealed)
        os.replace(tmp, final)

    def load(self, hostname: str, paths: List[str]) -> Optional[ResumeRecord]:
        """The record of an interrupted backup of exactly these paths, or None."""
        try:
            with open(self._file(hostname, paths), "rb") as f:
                sealed = f.read()
            record = ResumeRecord(**json.loads(self.key.open(sealed).decode("utf-8", "surrogateescape")))
        except (OSError, RestiqueError, ValueError, TypeError):
            return None  # none, damaged, or written by another version: only a lost shortcut
        if record.hostname != hostname or record.paths != sorted(paths):
            return None
        return record

    def remove(self, hostname: str, paths: List[str]) -> None:
        final = self._file(hostname, paths)
        for name in (final, final + ".tmp"):
            try:
                os.unlink(name)
            except FileNotFoundError:
                pass
