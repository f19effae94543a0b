"""scrypt key derivations: one at a time, and startable ahead of need.

A derivation takes most of a short command's time, on one core. A caller that knows early which
derivation the opening of a repository will ask for (the command line's key prefetch) starts
it here in a background thread; the opening asks for the same inputs later and waits for that
result instead of deriving again, and the time in between (loading modules, parsing options)
was spent on the other core. A result is only ever handed to a request with exactly the inputs
it was made from, so a wrong guess costs CPU time, never a wrong key.

Only one derivation runs at a time: each needs a work area of 128 * r * N bytes (32 MiB for
restic's parameters), and two at once would double a command's peak memory. A command that
goes on to hold more than that anyway lets a derivation spend a quarter more on a helper lane
(allow_helper_lane): a second thread that takes some of the p lanes with a sparse work area,
0.18 -> 0.13 s for restic's N=2^15, r=8, p=7 on two cores. A command that has work of its own
for the other core meanwhile (backup's prescan) lets the helper wait until it lends the core
(lend_core), so that the two do not take turns on it.
"""
import signal
import threading

from .. import _kdf

# no typing here: this loads before the derivation starts, typing and what it imports after

MAX_MEMORY = (1 << 31) - 1  # the most a key file may ask for (what hashlib's scrypt could be given)
MIN_SALT_SIZE = 8  # as restic's scrypt parameter check

HELPER_SHARE = 4  # the helper lane's work area: a quarter of the derivation's own

_one_at_a_time = threading.Lock()
_helper_allowed = False
_helper_waits = False
_started = {}  # (password, salt, N, r, p, dklen) -> _Derivation
_started_guard = threading.Lock()


def allow_helper_lane(allowed: bool = True, until_lent: bool = False) -> None:
    """Whether the derivations of this process may use a helper lane (128 * r * N / 4 bytes
    more, on another core): for commands whose own work holds more memory than that, so that
    their peak does not grow, and not for the light ones (snapshots, key, ...) whose peak is
    the derivation's work area itself. until_lent: the helper waits for lend_core() (and takes
    its memory only then, if two lanes are still left)."""
    global _helper_allowed, _helper_waits
    _helper_allowed, _helper_waits = allowed, until_lent
    _kdf.lend_core(not until_lent)


def lend_core() -> None:
    """The other core is free from now on: a helper lane waiting for it may go on."""
    _kdf.lend_core(True)


def password_bytes(password: str) -> bytes:
    """The bytes a password is derived from: a password read from a file or stdin keeps bytes
    that are not UTF-8 as surrogates, and restic derives from the bytes as read, so they go
    back to exactly those bytes."""
    return password.encode("utf-8", "surrogateescape")


def parameter_problem(n: int, r: int, p: int, salt: bytes) -> "str | None":
    """Why a key file's parameters are refused (a short salt, an N that asks for gigabytes),
    or None when they may be derived."""
    if n < 2 or n & (n - 1) or r < 1 or p < 1 or r * p >= 1 << 30 or len(salt) < MIN_SALT_SIZE:
        return f"invalid scrypt parameters N={n} r={r} p={p} salt={len(salt)} bytes"
    if 128 * r * (n + p + 2) > MAX_MEMORY:
        return f"scrypt parameters N={n} r={r} p={p} need more than 2 GiB of memory"
    return None


class _Derivation:
    def __init__(self, inputs: tuple):
        self.inputs = inputs
        self.done = threading.Event()
        self.key = None
        self.error = None

    def run(self) -> None:
        try:
            self.key = _derive_now(self.inputs)
        except BaseException as exc:  # raised again to whoever asks for the result
            self.error = exc
        finally:
            self.done.set()

    def result(self) -> bytes:
        self.done.wait()
        if self.error is not None:
            raise self.error
        return self.key


def start(password: bytes, salt: bytes, n: int, r: int, p: int, dklen: int = 64) -> None:
    """Begin deriving in a background thread (nothing when these inputs are already started
    or refused by parameter_problem)."""
    if parameter_problem(n, r, p, salt):
        return
    inputs = (bytes(password), bytes(salt), n, r, p, dklen)
    with _started_guard:
        if inputs in _started:
            return
        derivation = _started[inputs] = _Derivation(inputs)
    thread = threading.Thread(target=derivation.run, name="key-derivation", daemon=True)
    # signals are the main thread's business: the helper starts with all of them blocked
    blocked = signal.pthread_sigmask(signal.SIG_BLOCK, signal.valid_signals())
    try:
        thread.start()
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, blocked)


def wait_for_started(interrupted, poll: float = 0.05) -> None:
    """Wait until the derivations started so far are done, or interrupted() is true (asked
    every poll seconds)."""
    with _started_guard:
        waiting = list(_started.values())
    for derivation in waiting:
        while not derivation.done.wait(poll):
            if interrupted():
                return


def scrypt(password: bytes, salt: bytes, n: int, r: int, p: int, dklen: int = 64) -> bytes:
    """scrypt(password, salt, N, r, p): a started derivation of these inputs (waiting for it),
    else derived now (after any other running derivation)."""
    inputs = (bytes(password), bytes(salt), n, r, p, dklen)
    with _started_guard:
        derivation = _started.pop(inputs, None)
    if derivation is None:
        return _derive_now(inputs)
    return derivation.result()


def _derive_now(inputs: tuple) -> bytes:
    _, _, n, r, _, _ = inputs
    helper_memory = 128 * r * n // HELPER_SHARE if _helper_allowed else 0
    with _one_at_a_time:
        return _kdf.scrypt(*inputs, helper_memory=helper_memory, helper_waits=_helper_waits)
