"""The content-defined chunker, checked against restic itself and against a
slow pure-Python port of restic's per-byte algorithm."""
from __future__ import annotations

import hashlib
import importlib
import io
import json
import random
import sys
import threading
import time
import types
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import run_restic


def _import_chunker():
    """Import the chunker; if the rest of the package is broken, load it alone."""
    try:
        from restique.repository import chunker as mod

        return mod
    except ImportError:
        pass
    src = Path(__file__).resolve().parents[1] / "src" / "restique"
    for name in [n for n in sys.modules if n == "restique" or n.startswith("restique.")]:
        del sys.modules[name]
    for name, path in (("restique", src), ("restique.repository", src / "repository")):
        stub = types.ModuleType(name)
        stub.__path__ = [str(path)]
        sys.modules[name] = stub
    return importlib.import_module("restique.repository.chunker")


chunker = _import_chunker()
Chunker = chunker.Chunker
MIN_SIZE = chunker.MIN_SIZE
MAX_SIZE = chunker.MAX_SIZE
MIB = 1024 * 1024

# restic's test polynomial (github.com/restic/chunker, chunker_test.go)
TEST_POL = 0x3DA3358B4DC173


# --------------------------------------------------------------------------
# A deliberately literal, slow reference: restic's chunker state machine,
# byte by byte (window ring initialised to a single 1 byte, digest reset at
# every boundary, MinSize-64 bytes skipped without hashing).


class ReferenceChunker:
    WINDOW = 64

    def __init__(self, pol, min_size=MIN_SIZE, max_size=MAX_SIZE, average_bits=20):
        self.pol = pol
        self.deg = pol.bit_length() - 1
        self.shift = self.deg - 8
        self.min_size = min_size
        self.max_size = max_size
        self.mask = (1 << average_bits) - 1
        self.out = []
        for b in range(256):
            h = 0
            h = self._mod((h << 8) | b)
            for _ in range(self.WINDOW - 1):
                h = self._mod(h << 8)
            self.out.append(h)
        self.mod = [self._mod(b << self.deg) | (b << self.deg) for b in range(256)]

    def _mod(self, x):
        while x.bit_length() - 1 >= self.deg:
            x ^= self.pol << (x.bit_length() - 1 - self.deg)
        return x

    def _update(self, digest, b):
        index = digest >> self.shift
        return ((digest << 8) | b) ^ self.mod[index]

    def cut_lengths(self, data):
        lengths = []
        n = len(data)
        i = 0
        while i < n:
            # reset()
            window = [0] * self.WINDOW
            window[0] = 1
            wpos = 1
            digest = self._update(self.out[0], 1)
            count = 0
            pre = self.min_size - self.WINDOW
            # bytes before MinSize-64 are not even hashed
            skip = min(pre, n - i)
            i += skip
            count += skip
            while i < n:
                b = data[i]
                i += 1
                out = window[wpos % self.WINDOW]
                window[wpos % self.WINDOW] = b
                digest ^= self.out[out]
                wpos += 1
                digest = self._update(digest, b)
                count += 1
                if (digest & self.mask) == 0 or count >= self.max_size:
                    if count < self.min_size:
                        continue
                    break
            lengths.append(count)
        return lengths


def split(data, lengths):
    out, pos = [], 0
    for n in lengths:
        out.append(data[pos : pos + n])
        pos += n
    assert pos == len(data)
    return out


def make_data(seed, size, kind):
    rnd = random.Random(seed)
    if kind == "random":
        return rnd.randbytes(size)
    if kind == "zeros":
        return bytes(size)
    if kind == "mixed":  # random pieces and zero runs
        parts, total = [], 0
        while total < size:
            n = rnd.randrange(1, max(2, size // 4))
            parts.append(rnd.randbytes(n) if rnd.random() < 0.5 else bytes(n))
            total += n
        return b"".join(parts)[:size]
    if kind == "periodic":
        period = rnd.randrange(1, 300)
        block = rnd.randbytes(period)
        return (block * (size // period + 1))[:size]
    raise ValueError(kind)


# --------------------------------------------------------------------------
# Polynomials

# from restic's polynomials_test.go
IRREDUCIBILITY = [
    (0x38F1E565E288DF, False),
    (0x3DA3358B4DC173, True),
    (0x30A8295B9D5C91, False),
    (0x255F4350B962CB, False),
    (0x267F776110A235, False),
    (0x2F4DAE10D41227, False),
    (0x2482734CACCA49, True),
    (0x312DAF4B284899, False),
    (0x29DFB6553D01D1, False),
    (0x3548245EB26257, False),
    (0x3199E7EF4211B3, False),
    (0x362F39017DAE8B, False),
    (0x200D57AA6FDACB, False),
    (0x35E0A4EFA1D275, False),
    (0x2CED55B026577F, False),
    (0x260B012010893D, False),
    (0x2DF29CBCD59E9D, False),
    (0x3F2AC7488BD429, False),
    (0x3E5CB1711669FB, False),
    (0x226D8DE57A9959, False),
    (0x3C8DE80AAF5835, False),
    (0x2026A59EFB219B, False),
    (0x39DFA4D13FB231, False),
    (0x3143D0464B3299, False),
]


@pytest.mark.parametrize("pol,irreducible", IRREDUCIBILITY)
def test_is_irreducible_restic_vectors(pol, irreducible):
    assert chunker.is_irreducible(pol) is irreducible


def test_is_irreducible_small_polynomials():
    # brute force: a polynomial of degree d is reducible iff it has a factor of degree <= d/2
    def reducible(p):
        d = p.bit_length() - 1
        for q in range(2, 1 << (d // 2 + 1)):
            x = p
            while x.bit_length() >= q.bit_length():
                x ^= q << (x.bit_length() - q.bit_length())
            if x == 0:
                return True
        return False

    for p in range(2, 1 << 11):
        assert chunker.is_irreducible(p) is (not reducible(p)), hex(p)
    assert chunker.is_irreducible(0) is False
    assert chunker.is_irreducible(1) is False
    # a product of two irreducible polynomials of degree 53 does not fit; x^53 * something does
    assert chunker.is_irreducible(TEST_POL << 1) is False
    assert chunker.is_irreducible((1 << 63) | 1) is False  # (x+1) divides it


def test_polynomial_degree():
    assert chunker.polynomial_degree(0) == -1
    assert chunker.polynomial_degree(1) == 0
    assert chunker.polynomial_degree(2) == 1
    assert chunker.polynomial_degree(TEST_POL) == 53
    assert chunker.polynomial_degree(0x3AF4B284899) == 41  # restic's BenchmarkPolDeg
    assert chunker.polynomial_degree((1 << 64) - 1) == 63
    with pytest.raises(ValueError):
        chunker.polynomial_degree(1 << 64)
    with pytest.raises(ValueError):
        chunker.polynomial_degree(-1)


def test_random_polynomial():
    seen = set()
    for _ in range(5):
        pol = chunker.random_polynomial()
        assert chunker.polynomial_degree(pol) == 53
        assert pol & 1
        assert chunker.is_irreducible(pol)
        seen.add(pol)
        Chunker(pol)  # acceptable to the chunker
    assert len(seen) > 1


def test_polynomial_validation():
    for bad in (0, 1, 0xFF, 1 << 54, (1 << 64) - 1):
        with pytest.raises(ValueError):
            Chunker(bad)
    for bad in (-5, 1 << 64):
        with pytest.raises(ValueError):
            Chunker(bad)
    with pytest.raises(TypeError):
        Chunker("0x3DA3358B4DC173")
    # a reducible polynomial is accepted by restic's chunker (only the repository
    # config insists on irreducibility), and so by this one
    assert not chunker.is_irreducible(0x38F1E565E288DF)
    Chunker(0x38F1E565E288DF)
    Chunker(0x100)  # degree 8 is the lowest degree the table lookup allows
    with pytest.raises(ValueError):
        Chunker(TEST_POL, min_size=32)
    with pytest.raises(ValueError):
        Chunker(TEST_POL, min_size=4096, max_size=4095)


def test_tables_match_reference():
    from restique import _chunker

    for pol in (TEST_POL, 0x2482734CACCA49, 0x38F1E565E288DF, 0x11D, 0x3AF4B284899):
        tab = _chunker.Tables(pol)
        ref = ReferenceChunker(pol)
        assert tab.pol == pol
        assert list(tab.out_table) == ref.out
        assert list(tab.mod_table) == ref.mod


# --------------------------------------------------------------------------
# Cut points


def test_zero_bytes_restic_vector():
    # restic's chunks2: zero bytes, a multiple of MinSize, are cut at every MinSize
    data = bytes(4 * MIN_SIZE)
    chunks = list(Chunker(TEST_POL).chunks(io.BytesIO(data)))
    assert [len(c) for c in chunks] == [MIN_SIZE] * 4
    for c in chunks:
        assert hashlib.sha256(c).hexdigest() == "07854d2fef297a06ba81685e660c332de36d5d18d546927d30daad6d7fda1541"


@pytest.mark.parametrize(
    "pol,min_size,max_size,bits,kind,size",
    [
        (TEST_POL, 64, 4096, 6, "random", 50_000),
        (TEST_POL, 64, 64, 6, "random", 3_000),
        (TEST_POL, 100, 20_000, 12, "random", 150_000),
        (TEST_POL, 1000, 3000, 16, "random", 60_000),  # mostly forced cuts at max_size
        (TEST_POL, 200, 30_000, 0, "random", 20_000),  # every position matches: cut at min_size
        (0x2482734CACCA49, 333, 9_999, 9, "mixed", 120_000),
        (0x11D, 128, 8_000, 8, "random", 80_000),  # degree 8: the generic (not degree-53) path
        (0x38F1E565E288DF, 512, 50_000, 10, "periodic", 100_000),
        (TEST_POL, 4096, 64 * 1024, 14, "mixed", 200_000),
    ],
)
def test_matches_reference_implementation(pol, min_size, max_size, bits, kind, size):
    data = make_data(size * 7 + bits, size, kind)
    expected = ReferenceChunker(pol, min_size, max_size, bits).cut_lengths(data)
    c = Chunker(pol, min_size, max_size, average_bits=bits)
    assert c.cut_lengths(data) == expected
    assert [len(x) for x in c.chunks(io.BytesIO(data), buffer_size=777)] == expected


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    seed=st.integers(0, 2**32),
    size=st.integers(0, 40_000),
    kind=st.sampled_from(["random", "mixed", "periodic", "zeros"]),
    min_size=st.integers(64, 3000),
    extra=st.integers(0, 12_000),
    bits=st.integers(0, 13),
    pol=st.sampled_from([TEST_POL, 0x2482734CACCA49, 0x3AF4B284899, 0x11D]),
)
def test_property_matches_reference(seed, size, kind, min_size, extra, bits, pol):
    data = make_data(seed, size, kind)
    expected = ReferenceChunker(pol, min_size, min_size + extra, bits).cut_lengths(data)
    assert Chunker(pol, min_size, min_size + extra, average_bits=bits).cut_lengths(data) == expected


class ShortReads(io.RawIOBase):
    """readinto() that hands out at most a few bytes at a time."""

    def __init__(self, data, rnd):
        self._data = memoryview(data)
        self._pos = 0
        self._rnd = rnd

    def readable(self):
        return True

    def readinto(self, b):
        n = min(len(b), len(self._data) - self._pos, self._rnd.randrange(1, 5000))
        b[:n] = self._data[self._pos : self._pos + n]
        self._pos += n
        return n


class ReadOnly:
    """Only read(), returning short pieces."""

    def __init__(self, data, rnd):
        self._f = io.BytesIO(data)
        self._rnd = rnd

    def read(self, n):
        return self._f.read(min(n, self._rnd.randrange(1, 5000)))


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    seed=st.integers(0, 2**32),
    size=st.integers(0, 300_000),
    kind=st.sampled_from(["random", "mixed", "periodic", "zeros"]),
    min_size=st.integers(64, 5000),
    extra=st.integers(0, 60_000),
    bits=st.integers(0, 14),
    buffer_size=st.integers(1, 70_000),
    reader=st.sampled_from(["bytesio", "short", "read"]),
)
def test_property_stream_equals_whole_buffer(seed, size, kind, min_size, extra, bits, buffer_size, reader):
    data = make_data(seed, size, kind)
    c = Chunker(TEST_POL, min_size, min_size + extra, average_bits=bits)
    expected = split(data, c.cut_lengths(data))
    rnd = random.Random(seed)
    stream = {
        "bytesio": lambda: io.BytesIO(data),
        "short": lambda: ShortReads(data, rnd),
        "read": lambda: ReadOnly(data, rnd),
    }[reader]()
    got = list(c.chunks(stream, buffer_size=buffer_size))
    assert all(type(x) is bytes for x in got)
    assert got == expected


def test_stream_with_default_sizes():
    data = make_data(5, 40 * MIB, "mixed")
    c = Chunker(TEST_POL)
    lengths = c.cut_lengths(data)
    # (a reference run over all 40 MiB would take minutes; check a prefix)
    prefix = ReferenceChunker(TEST_POL).cut_lengths(data[: 3 * MIB])
    assert lengths[: len(prefix) - 1] == prefix[:-1]
    for bs in (MIB - 1, 3 * MIB + 5, MAX_SIZE, 16 * MIB):
        chunks = list(c.chunks(io.BytesIO(data), buffer_size=bs))
        assert [len(x) for x in chunks] == lengths
        assert b"".join(chunks) == data
    assert max(lengths) <= MAX_SIZE
    assert all(n >= MIN_SIZE for n in lengths[:-1])


def test_chunks_accepts_bytes_like_and_files(tmp_path):
    data = make_data(9, 3 * MIB, "random")
    c = Chunker(TEST_POL)
    lengths = c.cut_lengths(data)
    assert c.cut_lengths(bytearray(data)) == lengths
    assert c.cut_lengths(memoryview(data)) == lengths
    p = tmp_path / "f"
    p.write_bytes(data)
    with open(p, "rb") as f:
        assert [len(x) for x in c.chunks(f)] == lengths
    with open(p, "rb", buffering=0) as f:
        assert [len(x) for x in c.chunks(f, buffer_size=100_000)] == lengths
    assert list(c.chunks(io.BytesIO(b""))) == []
    assert c.cut_lengths(b"") == []
    with pytest.raises(ValueError):
        c.chunks(io.BytesIO(data), buffer_size=0)
    with pytest.raises(TypeError):
        c.chunks(object())


def test_read_error_propagates():
    class Failing(io.RawIOBase):
        def __init__(self):
            self.calls = 0

        def readable(self):
            return True

        def readinto(self, b):
            self.calls += 1
            if self.calls > 12:
                raise OSError(5, "Input/output error")
            rnd = random.Random(self.calls)
            n = min(len(b), MIB)
            b[:n] = rnd.randbytes(n)
            return n

    got = []
    with pytest.raises(OSError) as exc:
        for chunk in Chunker(TEST_POL).chunks(Failing(), buffer_size=MIB):
            got.append(chunk)
    assert exc.value.errno == 5
    assert len(got) >= 1  # chunks before the error were delivered


def test_chunks_stay_valid_while_buffers_are_reused():
    data = make_data(11, 30 * MIB, "random")
    c = Chunker(TEST_POL)
    it = c.chunks(io.BytesIO(data), buffer_size=2 * MIB)
    kept = list(it)  # all alive at once: none may alias a reused buffer
    assert b"".join(kept) == data
    assert [len(x) for x in kept] == c.cut_lengths(data)


def test_interleaved_and_abandoned_streams_share_one_chunker():
    c = Chunker(TEST_POL)
    a = make_data(31, 12 * MIB, "random")
    b = make_data(32, 12 * MIB, "mixed")
    small = [make_data(40 + i, 1000 * i, "random") for i in range(20)]

    ga = c.chunks(io.BytesIO(a), buffer_size=MIB)
    got_a = [next(ga)]
    abandoned = c.chunks(io.BytesIO(b), buffer_size=MIB)
    next(abandoned)
    abandoned.close()  # gives its buffers back mid-stream
    got_b = list(c.chunks(io.BytesIO(b), buffer_size=MIB))
    for s in small:
        assert list(c.chunks(io.BytesIO(s), buffer_size=MIB)) == ([s] if s else [])
    got_a += list(ga)
    assert got_a == split(a, c.cut_lengths(a))
    assert got_b == split(b, c.cut_lengths(b))


# --------------------------------------------------------------------------
# Threads


def test_two_threads_two_streams():
    a = make_data(21, 24 * MIB, "random")
    b = make_data(22, 24 * MIB, "mixed")
    c = Chunker(TEST_POL)
    expected = {"a": c.cut_lengths(a), "b": c.cut_lengths(b)}
    results = {}

    def work(name, data, bs):
        results[name] = [len(x) for x in c.chunks(io.BytesIO(data), buffer_size=bs)]

    for _ in range(3):
        results.clear()
        threads = [
            threading.Thread(target=work, args=("a", a, 4 * MIB + 1)),
            threading.Thread(target=work, args=("b", b, 3 * MIB - 7)),
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert results == expected


def test_scan_releases_the_gil():
    from restique import _chunker

    data = random.Random(3).randbytes(MIB) * 192
    scanner = _chunker.Scanner(_chunker.Tables(TEST_POL), MIN_SIZE, MAX_SIZE)
    started = threading.Event()
    finished = []

    def work():
        started.set()
        scanner.scan(data)
        finished.append(time.perf_counter())

    t = threading.Thread(target=work)
    t.start()
    started.wait()
    first_ran = time.perf_counter()  # needs the GIL
    spins = 0
    while t.is_alive():
        spins += 1
    t.join()
    # With the GIL held for the whole scan (~0.1 s or more), this thread could
    # only run again after the scan; released, it runs alongside it.
    assert finished[0] - first_ran > 0.03, (finished[0] - first_ran, spins)


def test_scanner_used_from_two_threads_is_refused_or_consistent():
    """A Scanner holds the state of one stream. A scan() called while another thread's scan()
    on the same Scanner is still running is refused with RuntimeError("Scanner is in use by
    another thread"), and leaves the stream as if it had not been called; scans that do not
    overlap continue the stream exactly as two consecutive calls from one thread do."""
    from restique import _chunker

    data = random.Random(4).randbytes(64 * MIB)
    tables = _chunker.Tables(TEST_POL)
    # the single-threaded reference: the same stream fed data twice
    reference = _chunker.Scanner(tables, MIN_SIZE, MAX_SIZE)
    first = reference.scan(data)
    first_count = reference.count
    second = reference.scan(data)
    second_count = reference.count
    assert len(first) > 10 and first_count > 0  # 64 MiB of random data: many cuts

    refused = False
    for _ in range(20):  # until the two scans overlapped once (practically always the first time)
        scanner = _chunker.Scanner(tables, MIN_SIZE, MAX_SIZE)
        start = threading.Barrier(2)
        outcomes = [None, None]

        def work(i):
            start.wait()
            try:
                outcomes[i] = ("cuts", scanner.scan(data))
            except RuntimeError as e:
                outcomes[i] = ("refused", str(e))

        threads = [threading.Thread(target=work, args=(i,)) for i in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        kinds = sorted(kind for kind, _ in outcomes)
        if kinds == ["cuts", "refused"]:
            (cuts,) = [v for kind, v in outcomes if kind == "cuts"]
            (message,) = [v for kind, v in outcomes if kind == "refused"]
            assert message == "Scanner is in use by another thread"
            assert cuts == first  # the refused call did not disturb the running one
            assert scanner.count == first_count
            assert scanner.scan(data) == second  # nor the stream afterwards
            assert scanner.count == second_count
            refused = True
            break
        # no overlap: both calls ran, one after the other, as one thread would have made them
        assert kinds == ["cuts", "cuts"], outcomes
        assert sorted([outcomes[0][1], outcomes[1][1]]) == sorted([first, second])
        assert scanner.count == second_count
    assert refused, "the two threads' scans never overlapped in 20 attempts"


# --------------------------------------------------------------------------
# The oracle: restic's own chunking of files it backed up


def _restic_json(repo, *args):
    return json.loads(run_restic(repo, *args).stdout)


def _file_nodes(repo, tree_id, found):
    tree = _restic_json(repo, "cat", "blob", tree_id)
    for node in tree["nodes"]:
        if node["type"] == "dir":
            _file_nodes(repo, node["subtree"], found)
        elif node["type"] == "file":
            found[node["name"]] = node.get("content") or []
    return found


def _periodic_without_cuts(pol, seed):
    """Repeated short pattern whose windows never match the split mask."""
    rnd = random.Random(seed)
    probe = Chunker(pol)
    while True:
        block = rnd.randbytes(rnd.randrange(50, 200))
        data = block * (MAX_SIZE // len(block) + 2)
        if probe.cut_lengths(data)[0] == MAX_SIZE:
            return block


def test_cut_points_equal_restic(restic_repo, tmp_path):
    pol = int(_restic_json(restic_repo, "cat", "config")["chunker_polynomial"], 16)
    assert chunker.is_irreducible(pol)
    assert chunker.polynomial_degree(pol) == 53

    rnd = random.Random(1234)
    flat = _periodic_without_cuts(pol, 99)

    def periodic(n):
        return (flat * (n // len(flat) + 1))[:n]

    files = {
        "random-30m": rnd.randbytes(30 * MIB + 12345),
        "zero-runs": b"".join(
            [
                rnd.randbytes(1_500_000),
                bytes(5 * MIB),
                rnd.randbytes(300_000),
                bytes(3 * MIB + 123),
                rnd.randbytes(2 * MIB),
                bytes(MIB + 77),
                rnd.randbytes(700_000),
                bytes(9 * MIB),
            ]
        ),
        "max-size-runs": rnd.randbytes(900_000) + periodic(19 * MIB) + rnd.randbytes(2 * MIB),
        "small": rnd.randbytes(300_000),
        "exactly-min": rnd.randbytes(MIN_SIZE),
        "min-plus-one": rnd.randbytes(MIN_SIZE + 1),
        "max-plus-one-random": rnd.randbytes(MAX_SIZE + 1),
        "max-plus-one-flat": periodic(MAX_SIZE + 1),
        "one-byte": b"x",
        "empty": b"",
    }
    src = tmp_path / "src"
    src.mkdir()
    for name, data in files.items():
        (src / name).write_bytes(data)

    out = run_restic(restic_repo, "backup", "--json", src).stdout.decode()
    summary = [json.loads(line) for line in out.splitlines() if '"summary"' in line]
    snapshot_id = summary[-1]["snapshot_id"]
    tree_id = _restic_json(restic_repo, "cat", "snapshot", snapshot_id)["tree"]
    nodes = _file_nodes(restic_repo, tree_id, {})
    assert set(files) <= set(nodes)

    c = Chunker(pol)
    all_lengths = {}
    for name, data in files.items():
        with open(src / name, "rb") as f:
            ids = [hashlib.sha256(x).hexdigest() for x in c.chunks(f)]
        assert ids == nodes[name], name
        all_lengths[name] = lengths = c.cut_lengths(data)
        assert [hashlib.sha256(x).hexdigest() for x in split(data, lengths)] == nodes[name], name
        with open(src / name, "rb") as f:  # carried over many buffer boundaries
            ids = [hashlib.sha256(x).hexdigest() for x in c.chunks(f, buffer_size=1_000_003)]
        assert ids == nodes[name], name

    # the cases did cover what they are meant to cover
    assert len(all_lengths["random-30m"]) > 10
    assert all_lengths["zero-runs"].count(MIN_SIZE) >= 10
    assert all_lengths["max-size-runs"].count(MAX_SIZE) >= 2
    assert all_lengths["small"] == [300_000]
    assert all_lengths["max-plus-one-flat"] == [MAX_SIZE, 1]
    assert sum(all_lengths["max-plus-one-random"]) == MAX_SIZE + 1
    assert all_lengths["one-byte"] == [1]
    assert all_lengths["empty"] == []
