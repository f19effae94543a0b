"""Key files: the master key, encrypted with a key derived from a password by scrypt.

A repository has one master key and any number of key files (one per password).
"""
from __future__ import annotations

import base64
import os
import time
from typing import Iterable, List, NamedTuple, Optional, Tuple

from .. import _kdf
from ..backend.base import BackendNotFound, FileType
from ..errors import IntegrityError, WrongPassword
from ..model import gojson
from ..model.gotime import GoTime
from ..model.ids import hash_id
from . import derivations
from .crypto import CiphertextVerificationFailed, MasterKey

SCRYPT_N = 32768  # restic's calibration settles on this (its memory bound is 60 MiB)
SCRYPT_R = 8
KDF_TARGET_SECONDS = 0.5  # restic calibrates p so that deriving takes at most this long
SALT_SIZE = 64
# The test suite sets this so that the thousands of commands it runs do not each spend half a
# second deriving a key; nothing else should (keys made with it are trivial to brute-force).
INSECURE_TEST_KEYS_VARIABLE = "RESTIQUE_TEST_INSECURE_KEYS"
INSECURE_TEST_KDF = (1 << 10, 8, 1)


class KeyFile(NamedTuple):
    """A key file's fields, in the order restic writes them (a NamedTuple: cheaper to define
    than a dataclass, and every command that opens a repository loads this module)."""

    created: str
    username: str
    hostname: str
    n: int
    r: int
    p: int
    salt: bytes
    data: bytes  # the sealed master key JSON

    def to_json(self) -> dict:
        return {
            "created": self.created,
            "username": self.username,
            "hostname": self.hostname,
            "kdf": "scrypt",
            "N": self.n,
            "r": self.r,
            "p": self.p,
            "salt": base64.b64encode(self.salt).decode(),
            "data": base64.b64encode(self.data).decode(),
        }

    @classmethod
    def parse(cls, raw: bytes, key_id: str) -> "KeyFile":
        try:
            obj = gojson.loads(raw)
        except ValueError:
            raise IntegrityError(f"key {key_id[:8]} is damaged: not valid JSON") from None
        if not isinstance(obj, dict):
            raise IntegrityError(f"key {key_id[:8]} is damaged: not a key object")
        if obj.get("kdf") != "scrypt":
            raise IntegrityError(f"key {key_id[:8]}: only supported KDF is scrypt()")
        try:
            texts = [obj.get(name) or "" for name in ("created", "username", "hostname")]
            if not all(isinstance(text, str) for text in texts):
                raise TypeError("created, username and hostname must be strings")
            return cls(
                *texts,
                n=int(obj["N"]),
                r=int(obj["r"]),
                p=int(obj["p"]),
                salt=base64.b64decode(obj["salt"], validate=True),
                data=base64.b64decode(obj["data"], validate=True),
            )
        except gojson.DECODING_ERRORS:
            raise IntegrityError(f"key {key_id[:8]} is damaged: missing or invalid fields") from None

    @property
    def created_time(self) -> Optional[GoTime]:
        try:
            return GoTime.parse(self.created)
        except ValueError:
            return None


def derive_user_key(password: str, salt: bytes, n: int, r: int, p: int) -> MasterKey:
    """The key a password opens; parameters a key file could abuse (a short salt, or an N
    that asks for gigabytes) are refused as damage, not tried and reported as a wrong password."""
    problem = derivations.parameter_problem(n, r, p, salt)
    if problem:
        raise IntegrityError(problem)
    # restique._kdf: the same function as hashlib.scrypt (OpenSSL's), in a third to half its time;
    # derivations hands over the result when the command line's key prefetch started it
    derived = derivations.scrypt(derivations.password_bytes(password), salt, n, r, p, 64)
    return MasterKey.from_kdf_output(derived)


# p=1 derivations timed by calibrate_kdf (about 65 ms each here): on a busy host even the best
# of three was once a third slower than usual, and chose a weaker key than restic's just after
CALIBRATION_RUNS = 5


def calibrate_kdf() -> Tuple[int, int, int]:
    """Calibrated as restic calibrates: N=2^15, r=8 (its 60 MiB memory bound), and p as the
    number of p=1 derivations that fit into 0.5 s, so one derivation takes at most 0.5 s and
    more than 0.25 s. What is timed is the derivation itself, as restic times its own (V's
    memory set up, and its blocks read in the order the data decides: timing a lane over
    constant data, whose every read hits the same cached block, once gave p=10 for a
    derivation of 0.85 s). The p=1 time is the best of five runs, in CPU time of the deriving
    thread, so a busy machine does not choose a weaker key than restic would choose on the same
    machine when idle (restic times the wall clock, and chooses weaker keys when busy). The
    timed lane is the portable one, as quick as restic's Go lane or a little quicker (54-65 ms
    against about 66 ms here), so p comes out at least as high as restic's and the key at least
    as strong (an attacker's cost is N * r * p). Where the CPU has it, the vector lane then
    derives that key in about 0.4 of the time (_kdf.c): the key costs less to use than
    restic's, instead of the faster lane buying a yet stronger key for the same half second."""
    best = min(_time_derivation(SCRYPT_N, SCRYPT_R) for _ in range(CALIBRATION_RUNS))
    p = int(KDF_TARGET_SECONDS / max(best, 1e-3))
    return SCRYPT_N, SCRYPT_R, max(1, min(p, 64))


def _new_key_params() -> Tuple[int, int, int]:
    if os.environ.get(INSECURE_TEST_KEYS_VARIABLE) == "1":
        return INSECURE_TEST_KDF
    return calibrate_kdf()


def _time_derivation(n, r) -> float:
    salt = os.urandom(SALT_SIZE)
    start = time.thread_time()  # the derivation runs on this thread, without the GIL
    _kdf.scrypt(b"calibration", salt, n, r, 1, 64, portable=True)
    return time.thread_time() - start


def default_username() -> str:
    """getpass.getuser()'s answer (LOGNAME, USER, LNAME or USERNAME, else the password
    database), without loading getpass and the terminal module it brings: every lock asks."""
    for name in ("LOGNAME", "USER", "LNAME", "USERNAME"):
        user = os.environ.get(name)
        if user:
            return user
    try:
        import pwd

        return pwd.getpwuid(os.getuid()).pw_name
    except Exception:
        return ""


def create_key(
    backend,
    master: MasterKey,
    password: str,
    params: Optional[Tuple[int, int, int]] = None,
    username: Optional[str] = None,
    hostname: Optional[str] = None,
) -> str:
    """Write a new key file that unlocks master with password; returns its id."""
    n, r, p = params or _new_key_params()
    salt = os.urandom(SALT_SIZE)
    user_key = derive_user_key(password, salt, n, r, p)
    sealed = user_key.seal(gojson.encode(master.to_json()))
    key = KeyFile(
        created=GoTime.now().rfc3339(),
        username=default_username() if username is None else username,
        hostname=os.uname().nodename if hostname is None else hostname,  # socket.gethostname()
        n=n,
        r=r,
        p=p,
        salt=salt,
        data=sealed,
    )
    raw = gojson.encode(key.to_json())
    key_id = hash_id(raw)
    backend.save(FileType.KEY, key_id, raw)
    return key_id


def load_key(backend, key_id: str) -> KeyFile:
    try:
        raw = backend.load(FileType.KEY, key_id)
    except BackendNotFound:
        raise IntegrityError(f"key {key_id[:8]} vanished while reading it") from None
    return KeyFile.parse(raw, key_id)


def open_key(key: KeyFile, password: str) -> MasterKey:
    """The master key in key, or CiphertextVerificationFailed for a wrong password."""
    user_key = derive_user_key(password, key.salt, key.n, key.r, key.p)
    return decode_master_key(user_key.open(key.data))


def decode_master_key(plain: bytes) -> MasterKey:
    """The master key from a key file's decrypted data; IntegrityError when it is damaged."""
    try:
        obj = gojson.loads(plain)
    except ValueError:
        raise IntegrityError("master key is damaged: not valid JSON") from None
    return MasterKey.from_json(obj)


def list_key_ids(backend) -> List[str]:
    return [name for name, _ in backend.list(FileType.KEY)]


def _hinted_first(ids: Iterable[str], hint: Optional[str]) -> List[str]:
    ids = list(ids)
    if hint:
        ids.sort(key=lambda i: not i.startswith(hint))
    return ids


def find_key(backend, password: str, key_hint: Optional[str] = None) -> Tuple[str, MasterKey]:
    """Try every key file (the hinted one first); (key id, master key) of the one that opens."""
    damaged = None
    for key_id in _hinted_first(list_key_ids(backend), key_hint):
        try:
            key = load_key(backend, key_id)
            return key_id, open_key(key, password)
        except CiphertextVerificationFailed:
            continue
        except IntegrityError as exc:
            damaged = damaged or exc  # a broken key file must not hide a good one
    if damaged:
        raise damaged
    raise WrongPassword()
