"""zstd compression for blobs and unpacked files (repository format 2).

`--compression` modes map to zstd levels close to the speeds restic's encoder offers.
Both ways are native, with the libzstd the sealing links (one context of each kind per
thread), so commands never load the zstandard module: 2 MiB of memory and ~10 ms of start-up.
"""
from .. import _seal
from ..errors import IntegrityError, UsageError
from .crypto import MAX_ZSTD_RATIO, check_uncompressed_length

LEVELS = {"off": None, "fastest": 1, "auto": 3, "better": 7, "max": 11}


def check_mode(mode: str) -> str:
    if mode not in LEVELS:
        raise UsageError(f"invalid compression mode {mode!r}: use one of off, fastest, auto, better, max")
    return mode


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
