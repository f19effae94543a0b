"""Fixed glibc thresholds (operations/allocator.py): a large block freed does not make later
ones come from the heap, where freed pages stay; restores and backups both fix them."""
import ctypes

from restique.operations import allocator, backup
from restique.operations.archiver import BackupOptions
from restique.operations.backup import BackupRequest, run_backup
from restique.repository.repository import init_repository

from conftest import PASSWORD

_libc = ctypes.CDLL(None)
_libc.malloc.restype = ctypes.c_void_p
_libc.malloc.argtypes = [ctypes.c_size_t]
_libc.free.argtypes = [ctypes.c_void_p]


_IS_MMAPPED = 0x2  # glibc's flag in a chunk's size field, just before the block


def _mapped_on_its_own(size: int) -> bool:
    """Whether a block of size bytes gets a mapping of its own: read from the block's own
    chunk header (process-wide counters such as mallinfo2 change under other threads)."""
    block = _libc.malloc(size)
    try:
        return bool(ctypes.c_size_t.from_address(block - ctypes.sizeof(ctypes.c_size_t)).value & _IS_MMAPPED)
    finally:
        _libc.free(block)


def test_a_freed_large_block_does_not_raise_the_threshold():
    threshold = 256 * 1024
    try:
        allocator.return_large_buffers(threshold)
        assert not _mapped_on_its_own(threshold // 2)
        # glibc alone would raise its threshold to 4 MiB once this block is freed, and serve
        # the next 512 KiB from the heap
        assert _mapped_on_its_own(4 * 1024 * 1024)
        assert _mapped_on_its_own(2 * threshold)
    finally:
        allocator.return_large_buffers()


def test_backups_fix_the_thresholds(tmp_path, monkeypatch):
    fixed = []
    monkeypatch.setattr(backup, "return_large_buffers", lambda *args: fixed.append(args))
    src = tmp_path / "src"
    src.mkdir()
    (src / "file").write_bytes(b"content" * 1000)
    repo = init_repository(str(tmp_path / "repo"), PASSWORD, kdf_params=(1 << 10, 8, 1))
    try:
        outcome = run_backup(repo, BackupRequest(paths=[str(src)], options=BackupOptions(read_concurrency=1)))
    finally:
        repo.close()
    assert fixed == [()]
    assert outcome.progress.stats.files.new == 1
