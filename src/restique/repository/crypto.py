"""restic's authenticated encryption: AES-256-CTR, then Poly1305-AES over the ciphertext.

A sealed message is ``IV(16) || ciphertext || MAC(16)``. The Poly1305 one-time key is
``r || AES_k(IV)``: ``k`` and ``r`` are the master key's MAC halves. The work is done by the
native module restique._seal (OpenSSL and zstd, without the GIL); the tests check it against
an independent implementation built on the `cryptography` package.
"""
from __future__ import annotations

import base64
import os
from typing import NamedTuple, Optional, Tuple

from .. import _seal
from ..errors import IntegrityError

IV_SIZE = 16
MAC_SIZE = 16
OVERHEAD = IV_SIZE + MAC_SIZE

# Poly1305's clamp of r; restic stores r already clamped.
_R_MASK = bytes.fromhex("ffffff0ffcffff0ffcffff0ffcffff0f")


def _clamp(r: bytes) -> bytes:
    return bytes(a & b for a, b in zip(r, _R_MASK))


class CiphertextVerificationFailed(IntegrityError):
    def __init__(self):
        super().__init__("ciphertext verification failed")


class MasterKey(NamedTuple):
    """A master key (or a user key derived from a password). Immutable; a NamedTuple because
    every command loads this module and a frozen dataclass costs several times as much to
    define. Keys read from files are checked by from_json; the others are made here."""
    encrypt: bytes  # 32 bytes, AES-256
    mac_k: bytes  # 16 bytes, AES-128 key that encrypts the nonce
    mac_r: bytes  # 16 bytes, Poly1305 r

    @classmethod
    def random(cls) -> "MasterKey":
        return cls(os.urandom(32), os.urandom(16), _clamp(os.urandom(16)))

    @classmethod
    def from_kdf_output(cls, derived: bytes) -> "MasterKey":
        """The user key: scrypt output split as encryption key, MAC k, MAC r."""
        return cls(derived[:32], derived[32:48], _clamp(derived[48:64]))

    # --- JSON form, as in key files and `cat masterkey` ---
    def to_json(self) -> dict:
        b64 = lambda b: base64.b64encode(b).decode()
        return {"mac": {"k": b64(self.mac_k), "r": b64(self.mac_r)}, "encrypt": b64(self.encrypt)}

    @classmethod
    def from_json(cls, obj: dict) -> "MasterKey":
        try:
            dec = base64.b64decode
            key = cls(dec(obj["encrypt"]), dec(obj["mac"]["k"]), dec(obj["mac"]["r"]))
        except (KeyError, TypeError, ValueError) as exc:
            raise IntegrityError(f"invalid master key: {exc}") from None
        if len(key.encrypt) != 32 or len(key.mac_k) != 16 or len(key.mac_r) != 16:
            raise IntegrityError("invalid key length")
        return key

    # --- sealing (native: restique._seal, one call without the GIL per blob) ---
    def seal(self, plaintext) -> bytes:
        """IV || AES-256-CTR(plaintext) || Poly1305-AES MAC, checked to decode again."""
        return _seal.seal(self.encrypt, self.mac_k, self.mac_r, plaintext, 0)[0]

    def seal_blob(self, data, level: Optional[int], always: bool = False) -> Tuple[bytes, int]:
        """Seal a blob, zstd-compressed at level when that saves space (or always):
        (sealed, uncompressed length or 0 when stored as is)."""
        try:
            return _seal.seal(self.encrypt, self.mac_k, self.mac_r, data, level or 0, always)
        except _seal.SealError as exc:
            raise IntegrityError(f"sealing failed: {exc}") from None

    def open(self, sealed, uncompressed_length: int = 0) -> bytes:
        """Verify the MAC in constant time, decrypt, and decompress when
        uncompressed_length is given. CiphertextVerificationFailed on any tampering."""
        if uncompressed_length:
            check_uncompressed_length(uncompressed_length, len(sealed) - OVERHEAD)
        try:
            return _seal.open(self.encrypt, self.mac_k, self.mac_r, sealed, uncompressed_length)
        except _seal.SealError as exc:
            if "verification" in str(exc):
                raise CiphertextVerificationFailed() from None
            raise IntegrityError(str(exc)) from None


# A zstd block holds at most 128 KiB and takes at least 4 bytes (an RLE block), so no frame
# decompresses to more than 32768 times its size: a larger recorded length is damage, and
# refusing it keeps a hostile length field from allocating terabytes.
MAX_ZSTD_RATIO = 1 << 15


def check_uncompressed_length(length: int, compressed_size: int) -> None:
    if not 0 <= length <= max(compressed_size, 0) * MAX_ZSTD_RATIO:
        raise IntegrityError(f"uncompressed length {length} is impossible for {compressed_size} compressed bytes")
