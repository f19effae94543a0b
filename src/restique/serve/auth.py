"""HTTP basic authentication against an htpasswd file, as rest-server accepts it.

Entries are `user:hash`, one a line; `#` starts a comment. Hashes: `{SHA}` (base64 of the
password's SHA-1, Apache's `htpasswd -s`) and bcrypt (`$2y$`, `$2b$`, `$2a$`, Apache's
`htpasswd -B`). bcrypt is checked with the `bcrypt` package when it is installed, else with
the C library's crypt(3), which implements bcrypt on current Linux distributions (libxcrypt).
The file is read again when it changes, so users can be added without a restart.
"""
import base64
import binascii
import hashlib
import hmac
import os
import threading
import time
import warnings
from typing import Callable, Dict, Optional, Tuple

from ..errors import UsageError

# A bcrypt check costs tens of milliseconds by design; a WebDAV client sends many requests,
# so a good password is remembered (as a salted digest, never in clear) for a while.
_VERIFIED_SECONDS = 300.0
_BCRYPT_PREFIXES = ("$2y$", "$2b$", "$2a$")


def _bcrypt_checker() -> Optional[Callable[[bytes, bytes], bool]]:
    try:
        import bcrypt
    except ImportError:
        pass
    else:
        # the bcrypt package knows $2b$ and $2a$; $2y$ is the same algorithm under PHP's name
        return lambda password, hashed: bcrypt.checkpw(password, b"$2b$" + hashed[4:])
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            import crypt
    except ImportError:
        return None
    if not crypt.crypt("x", "$2b$04$" + "a" * 22):
        return None  # this C library has no bcrypt

    def check(password: bytes, hashed: bytes) -> bool:
        result = crypt.crypt(password.decode("utf-8", "surrogateescape"), hashed.decode("ascii"))
        return result is not None and hmac.compare_digest(result.encode("ascii"), hashed)

    return check


def _check_sha(password: bytes, hashed: bytes) -> bool:
    try:
        expected = base64.b64decode(hashed[5:], validate=True)
    except (binascii.Error, ValueError):
        return False
    return hmac.compare_digest(hashlib.sha1(password).digest(), expected)


class Htpasswd:
    """The users of one htpasswd file; check(user, password) is thread-safe."""

    def __init__(self, path: str):
        self.path = path
        self._entries: Dict[str, bytes] = {}
        self._stamp: Tuple[float, int] = (0.0, -1)
        self._verified: Dict[Tuple[str, bytes], float] = {}
        self._salt = os.urandom(16)
        self._lock = threading.Lock()
        self._bcrypt = _bcrypt_checker()
        self._load()

    def _load(self) -> None:
        try:
            st = os.stat(self.path)
            with open(self.path, "rb") as f:
                raw = f.read()
        except OSError as exc:
            raise UsageError(f"cannot read htpasswd file {self.path}: {exc.strerror}") from None
        entries = {}
        for line in raw.splitlines():
            line = line.strip()
            if not line or line.startswith(b"#") or b":" not in line:
                continue
            user, _, hashed = line.partition(b":")
            entries[user.decode("utf-8", "surrogateescape")] = hashed
        if self._bcrypt is None and any(h.startswith(p.encode()) for h in entries.values()
                                        for p in _BCRYPT_PREFIXES):
            raise UsageError(f"{self.path} has bcrypt entries, which need the bcrypt package "
                             "(pip install bcrypt) or a C library with bcrypt in crypt(3)")
        self._entries = entries
        self._stamp = (st.st_mtime, st.st_size)
        self._verified.clear()

    def _reload_if_changed(self) -> None:
        try:
            st = os.stat(self.path)
        except OSError:
            return  # keep the users we know while the file is being replaced
        if (st.st_mtime, st.st_size) != self._stamp:
            try:
                self._load()
            except UsageError:
                pass

    def check(self, user: str, password: bytes) -> bool:
        with self._lock:
            self._reload_if_changed()
            hashed = self._entries.get(user)
            key = (user, hashlib.sha256(self._salt + password).digest())
            if hashed is None:
                return False
            if self._verified.get(key, 0.0) > time.monotonic():
                return True
        ok = self._verify(password, hashed)
        if ok:
            with self._lock:
                self._verified[key] = time.monotonic() + _VERIFIED_SECONDS
        return ok

    def _verify(self, password: bytes, hashed: bytes) -> bool:
        if hashed.startswith(b"{SHA}"):
            return _check_sha(password, hashed)
        if hashed[:4].decode("ascii", "replace") in _BCRYPT_PREFIXES and self._bcrypt is not None:
            try:
                return self._bcrypt(password, hashed)
            except ValueError:
                return False
        return False  # other schemes (plain text, crypt, MD5) are not accepted, as rest-server


class BasicAuth:
    """WSGI middleware: every request needs a user and password from the htpasswd file."""

    def __init__(self, app, users: Htpasswd, realm: str = "restique"):
        self.app = app
        self.users = users
        self.challenge = f'Basic realm="{realm}", charset="UTF-8"'

    def __call__(self, environ, start_response):
        credentials = _basic_credentials(environ.get("HTTP_AUTHORIZATION", ""))
        if credentials is not None and self.users.check(*credentials):
            environ["REMOTE_USER"] = credentials[0]
            return self.app(environ, start_response)
        body = b"401 Unauthorized: a user name and password are needed\n"
        start_response("401 Unauthorized", [("WWW-Authenticate", self.challenge),
                                            ("Content-Type", "text/plain; charset=utf-8"),
                                            ("Content-Length", str(len(body)))])
        return [body]


def _basic_credentials(header: str) -> Optional[Tuple[str, bytes]]:
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        decoded = base64.b64decode(value.strip(), validate=True)
    except (binascii.Error, ValueError):
        return None
    user, sep, password = decoded.partition(b":")
    if not sep:
        return None
    return user.decode("utf-8", "surrogateescape"), password
