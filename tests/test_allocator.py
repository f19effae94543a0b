"""Fixed glibc thresholds (operations/allocator.py): a large block freed does not make later
ones come from the heap, where freed pages stay; restores and backups both fix them."""
import ctypes
import os
import subprocess
import sys

from restique.operations import backup
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


PROBE = """
import sys
sys.path.insert(0, sys.argv[1])
from test_allocator import _mapped_on_its_own
from restique.operations import allocator

threshold = 256 * 1024
glibc_alone = _mapped_on_its_own(2 * threshold), _mapped_on_its_own(4 << 20), _mapped_on_its_own(2 * threshold)
allocator.return_large_buffers(threshold)
fixed = _mapped_on_its_own(threshold // 2), _mapped_on_its_own(4 << 20), _mapped_on_its_own(2 * threshold)
print(glibc_alone, fixed)
"""


def test_a_freed_large_block_does_not_raise_the_threshold():
    """In a fresh process (glibc maps a block on its own only when no free heap chunk is large
    enough, and a test worker's heap holds whatever earlier tests freed): glibc alone raises
    its threshold once a 4 MiB block is freed and serves the next 512 KiB from the heap; with
    the thresholds fixed, 512 KiB is mapped on its own after it too."""
    out = subprocess.run([sys.executable, "-c", PROBE, os.path.dirname(__file__)],
                         capture_output=True, text=True, check=True).stdout
    assert out.split() == ["(True,", "True,", "False)", "(False,", "True,", "True)"]


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
