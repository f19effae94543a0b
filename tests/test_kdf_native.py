"""restique._kdf.scrypt, the native scrypt every key derivation uses.

It must compute exactly RFC 7914's function, on both its lanes (the portable scalar one and,
where the CPU has AVX-512VL, the vector one): the RFC's own vectors, hashlib's scrypt (OpenSSL)
on many random parameter sets and on the lengths where its own PBKDF2-HMAC-SHA256 changes
course, and the real restic opening a repository whose key restique derived, and the other way
round, with the full-strength parameters both programs use.
"""
import hashlib
import json
import os
import subprocess
import sys
import threading

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from conftest import PASSWORD, clean_env, run_restic, run_restique
from restique import _kdf
from restique.repository.keys import INSECURE_TEST_KEYS_VARIABLE, SCRYPT_N, SCRYPT_R


def reference_scrypt(password, salt, n, r, p, dklen):
    return hashlib.scrypt(password, salt=salt, n=n, r=r, p=p, dklen=dklen,
                          maxmem=128 * r * (n + p + 2) + (1 << 20))


# RFC 7914 section 12 (its fourth vector, N=2^20, needs 1 GiB and is left out)
RFC_7914_VECTORS = [
    (b"", b"", 16, 1, 1,
     "77d6576238657b203b19ca42c18a0497f16b4844e3074ae8dfdffa3fede21442"
     "fcd0069ded0948f8326a753a0fc81f17e8d3e0fb2e0d3628cf35e20c38d18906"),
    (b"password", b"NaCl", 1024, 8, 16,
     "fdbabe1c9d3472007856e7190d01e9fe7c6ad7cbc8237830e77376634b373162"
     "2eaf30d92e22a3886ff109279d9830dac727afb94a83ee6d8360cbdfa2cc0640"),
    (b"pleaseletmein", b"SodiumChloride", 16384, 8, 1,
     "7023bdcb3afd7348461c06cd81fd38ebfda8fbba904f8e3ea9b543f6545da1f2"
     "d5432955613f0fcf62d49705242a9af9e61e85dc0d651e40dfcf017b45575887"),
]


# both lanes, whichever the default is here
LANES = pytest.mark.parametrize("portable", [False, True], ids=["default-lane", "portable-lane"])


def test_the_vector_lane_is_used_where_the_cpu_has_avx512vl():
    """The vector lane must not silently go unused on a CPU that has it (the test machines do),
    nor be chosen on one that lacks it."""
    flags = set()
    with open("/proc/cpuinfo") as cpuinfo:
        for line in cpuinfo:
            if line.startswith("flags"):
                flags.update(line.split(":", 1)[1].split())
    assert _kdf.vector_lane() == ({"avx512f", "avx512vl"} <= flags and os.uname().machine == "x86_64")


@LANES
@pytest.mark.parametrize("password, salt, n, r, p, expected", RFC_7914_VECTORS)
def test_rfc_7914_vectors(password, salt, n, r, p, expected, portable):
    assert _kdf.scrypt(password, salt, n, r, p, 64, portable=portable).hex() == expected


# passwords as restique makes them (UTF-8 of any text), salts as arbitrary bytes
passwords = st.one_of(st.binary(max_size=200), st.text(max_size=80).map(lambda t: t.encode()))


@given(
    password=passwords,
    salt=st.binary(max_size=200),
    log_n=st.integers(1, 12),
    r=st.integers(1, 16),
    p=st.integers(1, 9),  # the vector lane derives three or four lanes at once, the rest one by one
    dklen=st.integers(1, 128),
    portable=st.booleans(),
)
@settings(max_examples=400, deadline=None)
def test_same_as_hashlib_scrypt(password, salt, log_n, r, p, dklen, portable):
    n = 1 << log_n
    assert _kdf.scrypt(password, salt, n, r, p, dklen, portable=portable) == reference_scrypt(
        password, salt, n, r, p, dklen)


@LANES
@pytest.mark.parametrize("p", [2, 7])
def test_same_as_hashlib_scrypt_with_real_key_parameters(portable, p):
    """N and r of every real key (a 32 MiB V array), lanes sharing it one after another, and
    (p=7, vector lane) four at once in it, then three."""
    salt = os.urandom(64)
    assert _kdf.scrypt(b"p\xc3\xa4ssword", salt, SCRYPT_N, SCRYPT_R, p, 64, portable=portable) == reference_scrypt(
        b"p\xc3\xa4ssword", salt, SCRYPT_N, SCRYPT_R, p, 64)


# a helper lane's memory: a sparse V of every 2^k-th block (k = 0..3), too little for any, or more
HELPER_SHARES = st.sampled_from([0, 1, 2, 3, 4, 7, 8, 9, 16, 1000])


@given(
    password=passwords,
    salt=st.binary(max_size=64),
    log_n=st.integers(1, 10),
    r=st.integers(1, 4),
    p=st.integers(1, 9),
    share=HELPER_SHARES,
    portable=st.booleans(),
)
@settings(max_examples=200, deadline=None)
def test_same_as_hashlib_scrypt_with_a_helper_lane(password, salt, log_n, r, p, share, portable):
    """The helper's sparse lanes recompute V's missing blocks: the output must not change,
    whichever lanes it takes and however much memory it is given."""
    n = 1 << log_n
    memory = 128 * r * n // share if share else 0
    assert _kdf.scrypt(password, salt, n, r, p, 64, portable=portable, helper_memory=memory) == reference_scrypt(
        password, salt, n, r, p, 64)


@pytest.mark.parametrize("p, share, helped", [(8, 4, True), (8, 2, True), (8, 1, True), (8, 8, True),
                                              (8, 16, False), (8, 0, False), (1, 4, False)])
def test_the_helper_takes_lanes_when_given_memory_for_a_sparse_v(p, share, helped):
    """The helper runs when a sparse V of every 2nd to 8th block fits its memory and p leaves it
    a lane (it takes one only while two are left), and never when it does not."""
    v = 128 * SCRYPT_R * SCRYPT_N
    memory = v // share if share else 0
    salt = os.urandom(32)
    assert _kdf.scrypt(b"pw", salt, SCRYPT_N, SCRYPT_R, p, 64, helper_memory=memory) == reference_scrypt(
        b"pw", salt, SCRYPT_N, SCRYPT_R, p, 64)
    taken = _kdf.helper_lanes()
    assert (1 <= taken <= p - 1) if helped else taken == 0


def test_a_waiting_helper_takes_no_lane_until_the_core_is_lent():
    v = 128 * SCRYPT_R * SCRYPT_N
    salt = os.urandom(32)
    expected = reference_scrypt(b"pw", salt, SCRYPT_N, SCRYPT_R, 8, 64)
    try:
        _kdf.lend_core(False)
        assert _kdf.scrypt(b"pw", salt, SCRYPT_N, SCRYPT_R, 8, 64, helper_memory=v // 4, helper_waits=True) == expected
        assert _kdf.helper_lanes() == 0
        _kdf.lend_core()  # lent before: the helper goes on at once
        assert _kdf.scrypt(b"pw", salt, SCRYPT_N, SCRYPT_R, 8, 64, helper_memory=v // 4, helper_waits=True) == expected
        assert _kdf.helper_lanes() >= 1
    finally:
        _kdf.lend_core()


def test_a_waiting_helper_joins_when_the_core_is_lent_during_the_derivation():
    v = 128 * SCRYPT_R * SCRYPT_N
    salt = os.urandom(32)
    _kdf.lend_core(False)
    # 16 lanes take ~0.4 s, four at a time: a dozen are left when the core is lent, even late
    lender = threading.Timer(0.02, _kdf.lend_core)
    lender.start()
    try:
        assert _kdf.scrypt(b"pw", salt, SCRYPT_N, SCRYPT_R, 16, 64, helper_memory=v // 4,
                           helper_waits=True) == reference_scrypt(b"pw", salt, SCRYPT_N, SCRYPT_R, 16, 64)
        assert _kdf.helper_lanes() >= 1
    finally:
        lender.join()
        _kdf.lend_core()


# the peak as /proc has it: getrusage's carries the parent's over the fork
HELPER_MEMORY_PROBE = """
import sys
from restique import _kdf
_kdf.scrypt(b"pw", b"s" * 32, 1 << 15, 8, 8, 64, helper_memory=int(sys.argv[1]))
print(next(int(line.split()[1]) * 1024 for line in open("/proc/self/status") if line.startswith("VmHWM:")))
"""


WAITING_HELPER_MEMORY_PROBE = """
import sys
from restique import _kdf
_kdf.lend_core(False)
_kdf.scrypt(b"pw", b"s" * 32, 1 << 15, 8, 8, 64, helper_memory=int(sys.argv[1]), helper_waits=True)
print(next(int(line.split()[1]) * 1024 for line in open("/proc/self/status") if line.startswith("VmHWM:")))
"""


def test_the_helper_lane_stays_within_its_memory():
    v = 128 * SCRYPT_R * SCRYPT_N

    def peak(memory):
        return int(subprocess.run([sys.executable, "-c", HELPER_MEMORY_PROBE, str(memory)], capture_output=True,
                                  check=True).stdout)

    without = peak(0)
    assert 0 < peak(v // 4) - without <= v // 4 + (2 << 20)
    assert peak(v // 2) - without <= v // 2 + (2 << 20)
    # a helper that is never let in takes no memory either
    waiting = int(subprocess.run([sys.executable, "-c", WAITING_HELPER_MEMORY_PROBE, str(v // 4)],
                                 capture_output=True, check=True).stdout)
    assert waiting - without < (2 << 20)


# SHA-256 pads a message that leaves 55 or fewer bytes in its last block into that block, else
# into one more; HMAC hashes a key longer than the 64-byte block first; PBKDF2 cuts its output
# into 32-byte blocks
EDGE_LENGTHS = [0, 1, 55, 56, 63, 64, 65, 119, 120, 128, 1000]


@pytest.mark.parametrize("length", EDGE_LENGTHS)
def test_same_as_hashlib_scrypt_at_pbkdf2_edges(length):
    text = bytes(range(256)) * 4
    for password, salt in ((text[:length], b"salt"), (b"pw", text[:length])):
        for dklen in (1, 31, 32, 33, 64, 65):
            assert _kdf.scrypt(password, salt, 2, 1, 1, dklen) == reference_scrypt(password, salt, 2, 1, 1, dklen)


def test_loading_the_module_loads_no_openssl():
    """Its PBKDF2 is its own: loading and setting up libcrypto cost about 5 ms before a
    command's key derivation could start (the command line's key prefetch)."""
    code = "import restique._kdf; print('libcrypto' in open('/proc/self/maps').read())"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, check=True).stdout == b"False\n"


def test_keyword_arguments():
    assert _kdf.scrypt(password=b"pw", salt=b"salt", n=16, r=1, p=1, dklen=32) == reference_scrypt(
        b"pw", b"salt", 16, 1, 1, 32)
    assert _kdf.scrypt(b"pw", b"salt", 16, 1, 1, 32, portable=True) == reference_scrypt(
        b"pw", b"salt", 16, 1, 1, 32)
    with pytest.raises(TypeError):  # keyword only
        _kdf.scrypt(b"pw", b"salt", 16, 1, 1, 32, True)


def test_calibration_times_the_portable_lane(monkeypatch):
    """p is what a lane of restic's speed fits into half a second, whichever lane then derives
    keys: timing the vector lane would choose a yet stronger key for the same CPU time."""
    from restique.repository import keys

    calls = []

    class Recording:
        @staticmethod
        def scrypt(*args, **kwargs):
            calls.append(kwargs)
            return b"\0" * 64

    monkeypatch.setattr(keys, "_kdf", Recording)
    n, r, p = keys.calibrate_kdf()
    assert (n, r) == (SCRYPT_N, SCRYPT_R) and 1 <= p <= 64
    assert calls and all(call == {"portable": True} for call in calls)


@pytest.mark.parametrize("n, r, p, dklen", [
    (0, 8, 1, 64), (1, 8, 1, 64), (3, 8, 1, 64), (1000, 8, 1, 64), (-16, 8, 1, 64),
    (1 << 64, 8, 1, 64),  # does not fit 64 bits
    (16, 0, 1, 64), (16, 8, 0, 64), (16, -1, 1, 64), (16, 8, -1, 64),
    (16, 1 << 15, 1 << 15, 64),  # r * p = 2^30
    (16, 1 << 30, 1, 64), (16, 1, 1 << 40, 64),
    (16, 1 << 20, 1 << 9, 64),  # B = 128 * r * p would be 64 GiB
    (1 << 62, 8, 1, 64),  # V = 128 * r * N does not fit a size_t
    (16, 1, 1, 0), (16, 1, 1, -1), (16, 1, 1, 1 << 31),
])
def test_bad_parameters_raise_value_error(n, r, p, dklen):
    with pytest.raises(ValueError):
        _kdf.scrypt(b"pw", b"salt", n, r, p, dklen)


def test_unallocatable_memory_raises_memory_error():
    with pytest.raises(MemoryError):
        _kdf.scrypt(b"pw", b"salt", 1 << 52, 8, 1, 64)  # 2^62 bytes: more than any address space


@pytest.mark.parametrize("args", [
    ("pw", b"salt", 16, 1, 1, 64),  # str, not bytes
    (b"pw", None, 16, 1, 1, 64),
    (b"pw", b"salt", 16.0, 1, 1, 64),
    (b"pw", b"salt", 16, "1", 1, 64),
    (b"pw", b"salt", 16, 1, 1),  # dklen missing
])
def test_wrong_argument_types_raise_type_error(args):
    with pytest.raises(TypeError):
        _kdf.scrypt(*args)


# --------------------------------------------------------------------------------------------
# full-strength keys with the real restic


def real_key_env():
    """The suite's environment, but with keys calibrated as in real use (no insecure test keys:
    neither restique's init nor the suite's replacement of restic's new key)."""
    env = clean_env()
    del env[INSECURE_TEST_KEYS_VARIABLE]
    return env


def only_key_params(repo):
    (key_file,) = os.listdir(repo / "keys")
    key = json.loads((repo / "keys" / key_file).read_bytes())
    return key["N"], key["r"], key["p"]


def source_dir(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    (src / "file").write_bytes(os.urandom(5000))
    return src


def snapshot_ids(runner, repo, env):
    return sorted(s["id"] for s in json.loads(runner(repo, "snapshots", "--json", env=env).stdout))


@pytest.mark.parametrize("maker, reader", [
    (run_restic, run_restique),
    (run_restique, run_restic),
], ids=["restic-made-read-by-restique", "restique-made-read-by-restic"])
def test_full_strength_key_opens_with_the_other_program(tmp_path, maker, reader):
    env = real_key_env()
    repo = tmp_path / "repo"
    maker(repo, "init", env=env)
    n, r, p = only_key_params(repo)
    # restic calibrates N too (it lowers it on a busy machine); restique always uses 2^15
    assert n >= 1 << 13 and r == SCRYPT_R and p >= 1, "the key should have real parameters"
    if maker is run_restique:
        assert n == SCRYPT_N
    maker(repo, "backup", source_dir(tmp_path), env=env)

    # both derive the same user key from the key file, hence unseal the same master key
    assert reader(repo, "cat", "masterkey", env=env).stdout == maker(
        repo, "cat", "masterkey", env=env).stdout
    assert snapshot_ids(reader, repo, env) == snapshot_ids(maker, repo, env) != []
    wrong = reader(repo, "cat", "config", env=clean_env(RESTIC_PASSWORD=PASSWORD + "x"), check=False)
    assert wrong.returncode != 0


def test_a_password_that_is_not_utf8_opens_restics_repository(tmp_path):
    """restic derives the key from the password's bytes as read; restique keeps bytes that are
    not UTF-8 as surrogates and must derive from the same bytes (it raised an internal error)."""
    secret = tmp_path / "password"
    secret.write_bytes(b"pw\xff\xfe-latin1-\xe9\n")
    env = {k: v for k, v in clean_env().items() if k != "RESTIC_PASSWORD"}
    repo = tmp_path / "repo"
    run_restic(repo, "init", "--password-file", secret, env=env)
    ours = run_restique(repo, "snapshots", "--json", "--password-file", secret, env=env)
    assert json.loads(ours.stdout) == []
    run_restique(repo, "key", "add", "--password-file", secret, "--new-password-file", secret, env=env)
    listed = run_restic(repo, "key", "list", "--json", "--password-file", secret, env=env)
    assert len(json.loads(listed.stdout)) == 2
