"""The repository facade: a backend opened with a password, its config, index and blobs."""
from __future__ import annotations

from functools import cached_property
from typing import TYPE_CHECKING, Callable, List, Optional, Tuple

from ..backend.base import BackendNotFound, FileType, load_view
from ..backend.location import open_backend
from ..errors import IntegrityError, RepositoryNotFound, UsageError
from ..model import gojson
from . import compression, keys, unpacked
from .config import STABLE_VERSION, Config
from .crypto import MasterKey
from .locks import Lock

if TYPE_CHECKING:
    from .blob_store import BlobStore
    from .index import IndexFile, MasterIndex


def pack_size_bytes(mib: Optional[int]) -> int:
    """`--pack-size` in MiB (restic allows 4 to 128)."""
    from .blob_store import DEFAULT_PACK_SIZE, MAX_PACK_SIZE, MIN_PACK_SIZE

    if not mib:
        return DEFAULT_PACK_SIZE
    size = int(mib) * 1024 * 1024
    if not MIN_PACK_SIZE <= size <= MAX_PACK_SIZE:
        raise UsageError("pack size must be between 4 and 128 MiB")
    return size


class Repository:
    """An open repository. Use as a context manager, or call close()."""

    def __init__(self, backend, key_id: str, master: MasterKey, config: Config,
                 compression_mode: str = "auto", pack_size: Optional[int] = None):
        self.backend = backend
        self.key_id = key_id
        self.key = master
        self.config = config
        self.compression = compression.check_mode(compression_mode)
        self.index_loaded = False
        if pack_size:
            pack_size_bytes(pack_size)  # a wrong --pack-size is refused now, not at the first save
        self._pack_size = pack_size
        self._locks: List[Lock] = []
        # told when a held lock's background refresh fails (the CLI prints it, as restic)
        self.on_lock_refresh_error: Optional[Callable[[str], None]] = None

    # The index and the blob store are made on first use: commands that only read snapshots,
    # keys or locks do not load their modules.
    @cached_property
    def index(self) -> "MasterIndex":
        from .index import MasterIndex

        return MasterIndex()

    @cached_property
    def blobs(self) -> "BlobStore":
        from .blob_store import BlobStore

        blob_level = compression.LEVELS[self.compression] if self.config.version >= 2 else None
        tree_level = (blob_level or compression.LEVELS["auto"]) if self.config.version >= 2 else None
        return BlobStore(self.backend, self.key, self.index, blob_level, self.save_unpacked,
                         pack_size_bytes(self._pack_size), tree_level)

    # --- unpacked files ---
    @property
    def _file_level(self) -> Optional[int]:
        # format 2 compresses every unpacked file but the config, even with --compression off
        if self.config.version < 2:
            return None
        return compression.LEVELS["max"] if self.compression == "max" else compression.LEVELS["auto"]

    def save_unpacked(self, kind, plaintext: bytes) -> str:
        return unpacked.save(self.backend, self.key, FileType.parse(kind), plaintext, self._file_level)

    def seal_unpacked(self, kind, plaintext: bytes) -> Tuple[str, bytes]:
        """(id, bytes) of a file save_unpacked would write, for backend.save."""
        return unpacked.seal(self.key, FileType.parse(kind), plaintext, self._file_level)

    def load_unpacked(self, kind, file_id: str) -> bytes:
        return unpacked.load(self.backend, self.key, FileType.parse(kind), file_id, self.config.version)

    def save_json(self, kind, obj) -> str:
        return self.save_unpacked(kind, gojson.encode(obj))

    def load_json(self, kind, file_id: str):
        raw = self.load_unpacked(kind, file_id)
        try:
            return gojson.loads(raw)
        except ValueError:
            raise IntegrityError(f"{FileType.parse(kind).label} {file_id[:8]} is not valid JSON") from None

    def list_ids(self, kind) -> List[str]:
        return [name for name, _ in self.backend.list(FileType.parse(kind))]

    def remove(self, kind, file_id: str) -> None:
        self.backend.remove(FileType.parse(kind), file_id)

    # --- index ---
    def load_index_file(self, index_id: str) -> "IndexFile":
        from .index import IndexFile

        return IndexFile.parse(self.load_unpacked(FileType.INDEX, index_id))

    def load_index(self) -> "MasterIndex":
        if not self.index_loaded:
            for index_id in self.list_ids(FileType.INDEX):
                self.index.add_index_bytes(index_id, self.load_unpacked(FileType.INDEX, index_id))
            self.index_loaded = True
        return self.index

    # --- pack files ---
    def load_pack(self, pack_id: str, offset: int = 0, length: Optional[int] = None) -> bytes:
        """The raw (encrypted) bytes of a pack file, or length bytes of it from offset."""
        return self.backend.load(FileType.PACK, pack_id, offset, length)

    def load_pack_view(self, pack_id: str, offset: int, length: int):
        """load_pack() of a range as a read-only buffer, without a copy where the backend
        maps its files (a local one): for a caller that only reads it, once."""
        return load_view(self.backend, FileType.PACK, pack_id, offset, length)

    # --- blobs ---
    def save_blob(self, blob_type: str, data, blob_id: Optional[str] = None):
        """(id, newly stored?) of a data or tree blob; call flush() to make it durable."""
        blob_id, new, _ = self.blobs.save(blob_type, data, blob_id)
        return blob_id, new

    def load_blob(self, blob_type: str, blob_id: str) -> bytes:
        self.load_index()
        return self.blobs.load(blob_type, blob_id)

    def flush(self) -> None:
        self.blobs.flush()

    # --- locks ---
    def lock(self, exclusive: bool = False, retry_seconds: float = 0.0,
             on_wait: Optional[Callable[[], None]] = None) -> Lock:
        """Take the lock, waiting up to retry_seconds for a conflicting holder (on_wait() is
        called once before the first wait); released by unlock() or close()."""
        lock = Lock(self, exclusive, retry_seconds, on_wait, self.on_lock_refresh_error, acquire=False)
        self._locks.append(lock)  # first: an interruption while it is taken still removes it
        lock.acquire()
        return lock

    def unlock(self) -> None:
        while self._locks:
            self._locks.pop().release()

    def close(self) -> None:
        if "blobs" in self.__dict__:  # made (cached_property)
            self.blobs.close()
        self.unlock()
        self.backend.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def init_repository(location: str, password: str, version: int = STABLE_VERSION,
                    polynomial: Optional[int] = None, compression_mode: str = "auto",
                    pack_size: Optional[int] = None, kdf_params=None) -> Repository:
    """Create a new repository (format 1 or 2) and return it opened with password."""
    from .chunker import random_polynomial

    if not password:
        raise UsageError("an empty password is not a password")
    compression.check_mode(compression_mode)
    backend = open_backend(location) if isinstance(location, str) else location
    config = Config.new(version, polynomial or random_polynomial())
    master = MasterKey.random()
    backend.create()
    key_id = keys.create_key(backend, master, password, kdf_params)
    backend.save(FileType.CONFIG, "", unpacked.encode(master, gojson.encode(config.to_json()), None))
    return Repository(backend, key_id, master, config, compression_mode, pack_size)


def open_repository(location: str, password: str, key_hint: Optional[str] = None,
                    compression_mode: str = "auto", pack_size: Optional[int] = None) -> Repository:
    """Open an existing repository; WrongPassword, RepositoryNotFound or IntegrityError."""
    backend = open_backend(location) if isinstance(location, str) else location
    _check_exists(backend)
    key_id, master = keys.find_key(backend, password, key_hint)
    try:
        stored = backend.load(FileType.CONFIG, "")
        config = Config.from_json(unpacked.decode(master, stored, 1))
    except IntegrityError as exc:
        raise IntegrityError(f"config or key {key_id} is damaged: {exc}") from None
    return Repository(backend, key_id, master, config, compression_mode, pack_size)


def _check_exists(backend) -> None:
    """RepositoryNotFound unless the backend holds a config file, in restic's words."""
    try:
        backend.stat(FileType.CONFIG, "")
    except BackendNotFound as exc:
        raise RepositoryNotFound(
            f"repository does not exist: unable to open config file: stat {exc.filename}: "
            f"no such file or directory (is there a repository at {backend.location}?)"
        ) from None
