"""restic's authenticated encryption: AES-256-CTR, then Poly1305-AES over the ciphertext.

A sealed message is ``IV(16) || ciphertext || MAC(16)``. The Poly1305 one-time key is
``r || AES_k(IV)``: ``k`` and ``r`` are the master key's MAC halves.
"""
import base64
import hmac
import os
import threading
from dataclasses import dataclass

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.poly1305 import Poly1305

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


@dataclass(frozen=True)
class MasterKey:
    encrypt: bytes  # 32 bytes, AES-256
    mac_k: bytes  # 16 bytes, AES-128 key that encrypts the nonce
    mac_r: bytes  # 16 bytes, Poly1305 r

    def __post_init__(self):
        if len(self.encrypt) != 32 or len(self.mac_k) != 16 or len(self.mac_r) != 16:
            raise IntegrityError("invalid key length")
        # Per-blob costs matter (a backup seals one blob per small file): build the
        # cipher objects and the clamped r once; ECB contexts are reused per thread.
        object.__setattr__(self, "_aes", algorithms.AES(self.encrypt))
        object.__setattr__(self, "_nonce_cipher", Cipher(algorithms.AES(self.mac_k), modes.ECB()))
        object.__setattr__(self, "_r", _clamp(self.mac_r))
        object.__setattr__(self, "_local", threading.local())

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
            return cls(dec(obj["encrypt"]), dec(obj["mac"]["k"]), dec(obj["mac"]["r"]))
        except (KeyError, TypeError, ValueError) as exc:
            raise IntegrityError(f"invalid master key: {exc}") from None

    # --- sealing ---
    def _mac(self, iv: bytes, ciphertext) -> bytes:
        ecb = getattr(self._local, "ecb", None)
        if ecb is None:
            ecb = self._local.ecb = self._nonce_cipher.encryptor()
        return Poly1305.generate_tag(self._r + ecb.update(iv), ciphertext)

    def _ctr(self, iv: bytes, data) -> bytes:
        ctx = Cipher(self._aes, modes.CTR(iv)).encryptor()  # CTR decrypts by encrypting
        return ctx.update(data) + ctx.finalize()

    def seal(self, plaintext) -> bytes:
        iv = os.urandom(IV_SIZE)
        ciphertext = self._ctr(iv, plaintext)
        return b"".join((iv, ciphertext, self._mac(iv, ciphertext)))

    def decrypt_unverified(self, sealed) -> bytes:
        """Decrypt without checking the MAC: only for re-reading what was just sealed here."""
        sealed = memoryview(sealed)
        return self._ctr(bytes(sealed[:IV_SIZE]), sealed[IV_SIZE:-MAC_SIZE])

    def open(self, sealed) -> bytes:
        """Verify the MAC in constant time, then decrypt."""
        sealed = memoryview(sealed)
        if len(sealed) < OVERHEAD:
            raise CiphertextVerificationFailed()
        iv = bytes(sealed[:IV_SIZE])
        ciphertext = sealed[IV_SIZE:-MAC_SIZE]
        if not hmac.compare_digest(self._mac(iv, ciphertext), sealed[-MAC_SIZE:]):
            raise CiphertextVerificationFailed()
        return self._ctr(iv, ciphertext)
