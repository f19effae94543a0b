"""Sealing round trips, tamper detection and key files."""
import os

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from restique import _seal
from restique.errors import IntegrityError
from restique.repository.crypto import OVERHEAD, MasterKey


@given(st.binary(max_size=4096))
@settings(max_examples=50, deadline=None)
def test_seal_open_round_trip(data):
    key = MasterKey.random()
    sealed = key.seal(data)
    assert len(sealed) == len(data) + OVERHEAD
    assert key.open(sealed) == data


@given(st.binary(min_size=1, max_size=512), st.data())
@settings(max_examples=50, deadline=None)
def test_any_flipped_bit_is_detected(data, draw):
    key = MasterKey.random()
    sealed = bytearray(key.seal(data))
    pos = draw.draw(st.integers(0, len(sealed) - 1))
    sealed[pos] ^= 1 << draw.draw(st.integers(0, 7))
    with pytest.raises(IntegrityError, match="ciphertext verification failed"):
        key.open(bytes(sealed))


def test_wrong_key_and_short_input_rejected():
    sealed = MasterKey.random().seal(b"secret")
    with pytest.raises(IntegrityError):
        MasterKey.random().open(sealed)
    with pytest.raises(IntegrityError):
        MasterKey.random().open(b"short")


def test_master_key_json_round_trip_and_clamped_r():
    key = MasterKey.random()
    again = MasterKey.from_json(key.to_json())
    assert again == key
    # restic stores r already clamped for Poly1305
    r = key.mac_r
    assert r[3] & 0xF0 == 0 and r[7] & 0xF0 == 0 and r[11] & 0xF0 == 0 and r[15] & 0xF0 == 0
    assert r[4] & 3 == 0 and r[8] & 3 == 0 and r[12] & 3 == 0


def test_key_file_opens_only_with_its_password(tmp_path):
    from restique.backend.local import LocalBackend
    from restique.errors import WrongPassword
    from restique.repository import keys

    backend = LocalBackend(str(tmp_path / "repo"))
    backend.create()
    master = MasterKey.random()
    params = (1024, 8, 1)  # cheap parameters: this test is about the format, not the cost
    key_id = keys.create_key(backend, master, "right", params)
    found_id, found = keys.find_key(backend, "right")
    assert (found_id, found) == (key_id, master)
    with pytest.raises(WrongPassword):
        keys.find_key(backend, "wrong")
    raw = keys.load_key(backend, key_id)
    assert (raw.n, raw.r, raw.p) == params and len(raw.salt) == 64


def test_new_keys_are_calibrated_as_restic_calibrates():
    """restic's rule: N=2^15, r=8, and as many p=1 derivations as fit into 0.5 s; timed on the
    derivation itself, on the portable lane, so the calibrated key takes that lane what the
    calibration promised (a lane timed over constant data once promised half the real time;
    the vector lane, where there is one, then derives it quicker), and at least as many lanes
    as OpenSSL's (hashlib's) scrypt, which is no faster, would give."""
    import hashlib
    import time

    from restique import _kdf
    from restique.repository.keys import calibrate_kdf

    n, r, p = calibrate_kdf()
    assert (n, r) == (32768, 8) and 1 <= p <= 64

    def cpu_of(lanes):
        start = time.thread_time()
        _kdf.scrypt(b"pw", b"s" * 64, n, r, lanes, 64, portable=True)
        return time.thread_time() - start

    # alternated, the best of three each: a busy machine (the suite's other worker) slows a
    # derivation's thread by half at times, and a single timing of the whole once did
    ones, wholes = [], []
    for _ in range(3):
        ones.append(cpu_of(1))
        wholes.append(cpu_of(p))
    one_lane, whole = min(ones), min(wholes)
    assert whole >= 0.25  # more than half the 0.5 s target, as restic's
    assert whole <= 1.3 * p * one_lane + 0.02  # each lane costs what the calibration timed
    start = time.perf_counter()
    hashlib.scrypt(b"pw", salt=b"s" * 64, n=n, r=r, p=1, maxmem=256 * n * r + (64 << 20), dklen=64)
    assert p >= int(0.5 / (time.perf_counter() - start)) - 1  # never weaker than timing hashlib


def _reference_seal(key: MasterKey, iv: bytes, plaintext: bytes) -> bytes:
    """restic's sealing written with the `cryptography` package, independent of restique._seal."""
    from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
    from cryptography.hazmat.primitives.poly1305 import Poly1305

    enc = Cipher(algorithms.AES(key.encrypt), modes.CTR(iv)).encryptor()
    ciphertext = enc.update(plaintext) + enc.finalize()
    ecb = Cipher(algorithms.AES(key.mac_k), modes.ECB()).encryptor()
    s = ecb.update(iv) + ecb.finalize()
    mask = bytes.fromhex("ffffff0ffcffff0ffcffff0ffcffff0f")
    r = bytes(a & b for a, b in zip(key.mac_r, mask))
    return iv + ciphertext + Poly1305.generate_tag(r + s, ciphertext)


@given(st.binary(max_size=70_000))
@settings(max_examples=40, deadline=None)
def test_native_sealing_matches_an_independent_implementation(data):
    key = MasterKey.random()
    sealed = key.seal(data)
    assert _reference_seal(key, sealed[:16], data) == sealed
    forged = _reference_seal(key, os.urandom(16), data)
    assert key.open(forged) == data


@pytest.mark.parametrize("length", [0, 1, 15, 16, 17, 63, 64, 65, 511, 512, 513, 2125, 65535, 65536,
                                    65537, 3 * 65536 + 700])
def test_sealing_into_a_place_matches_an_independent_implementation(length):
    """seal_into (a backup's data blobs) encrypts in 64 KiB steps, on 512-bit registers where
    the CPU has VAES: every step goes on from the counter the step before left, the last
    register of a step partly filled."""
    key = MasterKey.random()
    data = os.urandom(length)
    payload, _ = _seal.prepare(data, 0)
    out = bytearray(payload + OVERHEAD)
    _seal.seal_into(key.encrypt, key.mac_k, key.mac_r, data, out)
    assert _reference_seal(key, bytes(out[:16]), data) == bytes(out)


@pytest.mark.parametrize("low", [2**64 - 1, 2**64 - 5, 2**64 - 4096, 2**63])
def test_a_counter_whose_low_half_wraps_carries_into_the_high_half(low):
    """restic's counter is the whole IV, one big-endian number: past a low half of all ones the
    carry goes into the high half (the fast path leaves such blobs to the library)."""
    key = MasterKey.random()
    data = os.urandom(70_000)
    iv = bytes.fromhex("00112233445566ff") + low.to_bytes(8, "big")
    assert key.open(_reference_seal(key, iv, data)) == data


def test_compressed_blob_round_trip_and_tamper():
    import zstandard

    key = MasterKey.random()
    data = b"compressible text " * 5000
    sealed, ulen = key.seal_blob(data, 3)
    assert ulen == len(data) and len(sealed) < len(data) // 10
    assert key.open(sealed, ulen) == data
    assert zstandard.ZstdDecompressor().decompress(key.open(sealed)) == data  # a plain zstd frame
    incompressible = os.urandom(10_000)
    sealed, ulen = key.seal_blob(incompressible, 3)
    assert ulen == 0 and key.open(sealed) == incompressible
    damaged = bytearray(key.seal_blob(data, 3)[0])
    damaged[40] ^= 0x10
    with pytest.raises(IntegrityError):
        key.open(bytes(damaged), len(data))
