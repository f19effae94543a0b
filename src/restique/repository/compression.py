"""zstd compression for blobs and unpacked files (repository format 2).

`--compression` modes map to zstd levels close to the speeds restic's encoder offers.
Both ways are native, with the libzstd the sealing links (one context of each kind per
thread), so commands never load the zstandard module: 2 MiB of memory and ~10 ms of start-up.
"""
from typing import Optional

from .. import _seal
from ..errors import IntegrityError, UsageError
from .crypto import MAX_ZSTD_RATIO, check_uncompressed_length

LEVELS = {"off": None, "fastest": 1, "auto": 3, "better": 7, "max": 11}
# zstd's level 2 looks for fewer matches than its level 3: on blobs up to 128 KiB (a source
# tree's files) it takes a third less time for 0.3% more bytes; on larger ones only 5-10% less
# time for 1-4% more bytes
SMALL_BLOB = 128 * 1024


def check_mode(mode: str) -> str:
    if mode not in LEVELS:
        raise UsageError(f"invalid compression mode {mode!r}: use one of off, fastest, auto, better, max")
    return mode


def blob_level(level: Optional[int], size: int) -> Optional[int]:
    """The zstd level for a data blob of size bytes in the mode of `level`: "auto" takes
    level 2 for small blobs; the other modes keep theirs."""
    if level == LEVELS["auto"] and size <= SMALL_BLOB:
        return level - 1
    return level


def compress(data, level: int) -> bytes:
    try:
        return _seal.compress(data, level)
    except _seal.SealError as exc:
        raise IntegrityError(str(exc)) from None


def decompress(data, expected_size: int = 0) -> bytes:
    """Decompress one zstd frame; expected_size (when known) also bounds the output."""
    try:
        check_uncompressed_length(expected_size, len(data))
        claimed = _seal.frame_content_size(data)  # -1: not recorded in the frame; -2: no frame
        if claimed == -2:
            raise IntegrityError("decompression failed: not a zstd frame")
        if claimed > 0:
            check_uncompressed_length(claimed, len(data))
        size = expected_size or claimed  # -1: streamed, at most what the frame can hold
        return _seal.decompress(data, size, max(len(data), 1) * MAX_ZSTD_RATIO)
    except _seal.SealError as exc:
        raise IntegrityError(str(exc)) from None
