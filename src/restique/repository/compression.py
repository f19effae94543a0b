"""zstd compression for blobs and unpacked files (repository format 2).

`--compression` modes map to zstd levels close to the speeds restic's encoder offers.
Compressor objects are not thread-safe, so each thread keeps its own.
"""
import threading

import zstandard

from ..errors import IntegrityError, UsageError
from .crypto import check_uncompressed_length

LEVELS = {"off": None, "fastest": 1, "auto": 3, "better": 7, "max": 11}
_local = threading.local()


def check_mode(mode: str) -> str:
    if mode not in LEVELS:
        raise UsageError(f"invalid compression mode {mode!r}: use one of off, fastest, auto, better, max")
    return mode


def _compressor(level: int) -> zstandard.ZstdCompressor:
    cache = getattr(_local, "compressors", None)
    if cache is None:
        cache = _local.compressors = {}
    comp = cache.get(level)
    if comp is None:
        comp = cache[level] = zstandard.ZstdCompressor(level=level, write_content_size=True, write_checksum=False)
    return comp


def _decompressor() -> zstandard.ZstdDecompressor:
    dec = getattr(_local, "decompressor", None)
    if dec is None:
        dec = _local.decompressor = zstandard.ZstdDecompressor()
    return dec


def compress(data, level: int) -> bytes:
    return _compressor(level).compress(data)


def decompress(data, expected_size: int = 0) -> bytes:
    """Decompress one zstd frame; expected_size (when known) also bounds the output."""
    try:
        check_uncompressed_length(expected_size, len(data))
        claimed = zstandard.frame_content_size(data)  # -1: not recorded in the frame
        if claimed > 0:
            check_uncompressed_length(claimed, len(data))
        if expected_size:
            out = _decompressor().decompress(data, max_output_size=expected_size)
        else:
            try:
                out = _decompressor().decompress(data)
            except zstandard.ZstdError:
                # frames without a content size (other writers) need the streaming decoder
                out = _decompressor().decompressobj().decompress(data)
    except zstandard.ZstdError as exc:
        raise IntegrityError(f"decompression failed: {exc}") from None
    if expected_size and len(out) != expected_size:
        raise IntegrityError(f"decompressed size {len(out)} differs from the recorded {expected_size}")
    return out
