"""Unpacked files (config, index, snapshots, locks): one sealed JSON document per file.

In format 2 every one but the config is compressed: the plaintext is the version byte 2
followed by a zstd frame. Plaintext starting with '{' or '[' is uncompressed JSON (format 1,
or written by an old version). A file's name is the SHA-256 of its stored bytes.
"""
from __future__ import annotations

from typing import Optional, Tuple

from ..backend.base import FileType
from ..errors import IntegrityError
from ..model.ids import hash_id
from . import compression
from .crypto import MasterKey

COMPRESSED_MARKER = 2


def encode(key: MasterKey, plaintext: bytes, level: Optional[int]) -> bytes:
    """Sealed file bytes; level None keeps the plaintext uncompressed (format 1, config)."""
    if level is not None:
        plaintext = bytes([COMPRESSED_MARKER]) + compression.compress(plaintext, level)
    return key.seal(plaintext)


def decode(key: MasterKey, stored: bytes, version: int) -> bytes:
    plain = key.open(stored)
    if version >= 2 and plain[:1] == bytes([COMPRESSED_MARKER]):
        return compression.decompress(memoryview(plain)[1:])
    return plain


def save(backend, key: MasterKey, ftype: FileType, plaintext: bytes, level: Optional[int]) -> str:
    file_id, stored = seal(key, ftype, plaintext, level)
    backend.save(ftype, file_id, stored)
    return file_id


def seal(key: MasterKey, ftype: FileType, plaintext: bytes, level: Optional[int]) -> Tuple[str, bytes]:
    """(id, stored bytes) of a file to save: its name is known before it exists."""
    stored = encode(key, plaintext, level)
    if decode(key, stored, 2) != plaintext:
        raise IntegrityError(f"{ftype.label} file did not decode to its own content after sealing")
    return hash_id(stored), stored


def load(backend, key: MasterKey, ftype: FileType, file_id: str, version: int) -> bytes:
    """Read, check the name against the content hash, decrypt and decompress."""
    stored = backend.load(ftype, file_id)
    where = f"load <{ftype.label}/{file_id[:10]}>"
    if hash_id(stored) != file_id:
        raise IntegrityError(f"{where}: invalid data returned (content does not match its name)")
    try:
        return decode(key, stored, version)
    except IntegrityError as exc:
        raise IntegrityError(f"{where}: {exc}") from None
