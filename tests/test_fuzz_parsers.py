"""Fuzzed parsers: every parser of repository data, fed random and mutated bytes, either
returns well-formed data or raises restique's own error (a RestiqueError), never anything
else and never a hang.

Seeds are real objects: a repository restic 0.14 wrote (`init` + `backup`) and objects made
by restique's own writers, all under one master key. Mutations flip, cut, extend and splice
bytes, and rewrite JSON: values replaced by other JSON types, huge numbers, wrong-length or
non-hex ids, deep nesting, duplicate keys. Sealed layers are fuzzed twice: random or mutated
ciphertext must fail verification, and hostile plaintext sealed with the real key (a valid
MAC) goes through the parser behind it.

CI runs a few hundred derandomized examples per parser; scripts/fuzz_parsers.py runs the same
parsers with 100,000 examples or more and counts the failures.
"""
import json
import signal
import socket
import struct
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Callable, Dict, List, Optional

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from restique.backend.base import FileType
from restique.backend.memory import MemoryBackend
from restique.errors import IntegrityError, RestiqueError
from restique.model import gojson
from restique.model.gotime import GoTime
from restique.model.ids import hash_id
from restique.model.node import MODE_DIR, MODE_SYMLINK, Node, decode_tree, decode_tree_lazy, encode_node, encode_tree
from restique.model.snapshot import Snapshot, new_summary
from restique.operations.check.indexed_packs import IndexedPacks
from restique.operations.snapshot_lookup import load_snapshot
from restique.repository import compression, unpacked
from restique.repository.compact_index import packs_of_index_file
from restique.repository.config import Config
from restique.repository.crypto import CiphertextVerificationFailed
from restique.repository.index import IndexFile, MasterIndex, parse_index
from restique.repository.keys import KeyFile, create_key, decode_master_key, derive_user_key
from restique.repository.locks import LockInfo
from restique.repository.pack import PackWriter, header_length_from_tail, parse_header
from restique.repository.pack_files import read_pack_header
from restique.repository.repository import Repository, open_repository

from conftest import PASSWORD, run_restic
from test_index_native import OrjsonIndex, PythonLoopIndex, outcome

CI_EXAMPLES = 150
HANG_SECONDS = 5
SOME_ID = "ab" * 32
POLYNOMIAL = 0x3DA3358B4DC173


class Hang(Exception):
    """An example ran longer than HANG_SECONDS."""


# --- seeds: valid objects from restic and from restique's writers ---------------------------

def build_seeds(workdir) -> SimpleNamespace:
    """Every kind of repository object as restic 0.14 wrote it and as restique's writers make
    it, stored and decrypted, all sealed with one master key (seeds.key)."""
    src = workdir / "src"
    (src / "sub").mkdir(parents=True)
    (src / "a.txt").write_text("hello <fuzz> & more\n" * 50)
    (src / "sub" / "b.bin").write_bytes(bytes(range(256)) * 40)
    (src / "link").symlink_to("a.txt")
    repo_path = workdir / "restic-repo"
    run_restic(repo_path, "init")
    run_restic(repo_path, "backup", src)
    run_restic(repo_path, "backup", "--tag", "x,y", "--host", "h<&>", src)
    seeds = SimpleNamespace(key_files=[], master_keys=[], configs=[], stored=[], unpacked_plain=[],
                            indexes=[], snapshots=[], trees=[], packs=[], pack_headers=[], zstd=[], locks=[])
    with open_repository(str(repo_path), PASSWORD) as repo:
        seeds.key = repo.key
        _restic_objects(repo, repo_path, seeds)
    _restique_objects(seeds)
    seeds.memory_repo = Repository(MemoryBackend(), "", seeds.key, Config.new(2, POLYNOMIAL))
    return seeds


def _restic_objects(repo, repo_path, seeds) -> None:
    key = repo.key
    for path in sorted((repo_path / "keys").iterdir()):
        seeds.key_files.append(path.read_bytes())
        kf = KeyFile.parse(path.read_bytes(), path.name)
        seeds.master_keys.append(derive_user_key(PASSWORD, kf.salt, kf.n, kf.r, kf.p).open(kf.data))
    config = (repo_path / "config").read_bytes()
    seeds.stored.append(config)
    seeds.configs.append(key.open(config))
    for kind, plains in ((FileType.INDEX, seeds.indexes), (FileType.SNAPSHOT, seeds.snapshots)):
        for file_id in repo.list_ids(kind):
            stored = repo.backend.load(kind, file_id)
            seeds.stored.append(stored)
            seeds.unpacked_plain.append(key.open(stored))
            seeds.zstd.append(key.open(stored)[1:])
            plains.append(repo.load_unpacked(kind, file_id))
    index = repo.load_index()
    for blob_id in sorted(blob_id for kind, blob_id in index.blobs() if kind == "tree"):
        seeds.trees.append(repo.load_blob("tree", blob_id))
    for pack_id, size in repo.backend.list(FileType.PACK):
        data = repo.load_pack(pack_id)
        seeds.packs.append(data)
        length = header_length_from_tail(data[-4:], size)
        seeds.pack_headers.append(key.open(data[size - 4 - length:size - 4]))
        for entry in parse_header(key, data[size - 4 - length:size - 4], size):
            if entry.compressed:
                seeds.zstd.append(key.open(data[entry.offset:entry.offset + entry.length]))


def _restique_objects(seeds) -> None:
    """The same kinds of objects from restique's own writers."""
    key = seeds.key
    backend = MemoryBackend()
    create_key(backend, key, PASSWORD, (1 << 10, 8, 1))
    key_id = next(iter(dict(backend.list(FileType.KEY))))
    seeds.key_files.append(backend.load(FileType.KEY, key_id))
    seeds.master_keys.append(gojson.encode(key.to_json()))
    seeds.configs.append(gojson.encode(Config.new(2, POLYNOMIAL).to_json()))
    nodes = [
        Node("f\u00e9 <x>", "file", mode=0o644, mtime=GoTime.parse("2022-03-04T05:06:07.123456789+02:00"),
             uid=1000, gid=100, user="u", size=5, links=1, content=[SOME_ID, "cd" * 32],
             xattrs=[("user.k", b"\xff\x00")]),
        Node("l", "symlink", mode=MODE_SYMLINK | 0o777, linktarget="t\udcff"),
        Node("d", "dir", mode=MODE_DIR | 0o755, subtree=SOME_ID, generic_attributes={"x": 1}),
    ]
    tree = encode_tree(nodes)
    seeds.trees.append(tree)
    snapshot = Snapshot(time=GoTime.parse("2023-01-02T03:04:05.5Z"), tree=SOME_ID, paths=["/x"], tags=["t"],
                        hostname="h", uid=7, parent=SOME_ID,
                        summary=new_summary(GoTime(0), GoTime(1), files_new=3))
    seeds.snapshots.append(gojson.encode(snapshot.to_json(with_id=False)))
    writer = PackWriter(key)
    for blob_type, data in (("tree", tree), ("data", b"x" * 3000), ("data", b"plain")):
        sealed, ulen = key.seal_blob(data, 3 if len(data) > 100 else None)
        writer.add(blob_type, hash_id(data), sealed, ulen)
    pack_id, parts, entries = writer.finish()
    pack = b"".join(parts)
    seeds.packs.append(pack)
    seeds.pack_headers.append(key.open(parts[-2]))
    index = IndexFile(supersedes=[SOME_ID])
    index.add_pack(pack_id, entries)
    seeds.indexes.append(index.encode())
    seeds.zstd.append(compression.compress(index.encode(), 3))
    for plain in (seeds.indexes[-1], seeds.snapshots[-1]):
        seeds.stored.append(unpacked.encode(key, plain, 3))
        seeds.unpacked_plain.append(key.open(seeds.stored[-1]))
    seeds.locks.append(gojson.encode(LockInfo.mine(True).to_json()))
    seeds.locks.append(('{"time":"2022-05-06T07:08:09.1+02:00","exclusive":false,"hostname":"%s",'
                        '"username":"u","pid":1,"uid":1000,"gid":1000}' % socket.gethostname()).encode())


# --- mutations ------------------------------------------------------------------------------
# Mutators draw their choices from a pick: hypothesis's draw in the tests (examples shrink and
# are reproducible), a plain random generator in the script (a hundred times faster per example).

ID_LIKE = ["a" * 64, "A" * 64, "g" * 64, "ab" * 31, "0" * 66, "", "0" * 63, "-1", "\ud800" * 64]
TIME_LIKE = ["2022-01-01T00:00:00Z", "9999-99-99T99:99:99Z", "-0001-01-01T00:00:00Z", "2022-02-30T24:60:60z",
             "2022-01-01T00:00:00.1234567890123+25:99", "0000-00-00T00:00:00Z", "2022-01-01T00:00:00+0100"]
NUMBER_LIKE = [0, -1, 2 ** 31, 2 ** 32, 2 ** 63, -2 ** 63, 2 ** 64, 10 ** 40, 1.5, -0.0, 1e308,
               float("inf"), float("nan")]
SIZE_LIKE = [-2 ** 40, -1, 0, 1, 3, 32, 2 ** 31, 2 ** 32, 2 ** 40, 2 ** 62]
DEEP = "\x00deep\x00"  # placeholder for deeply nested brackets, substituted in the text
DEPTHS = [2, 50, 5000, 200000]
TEXT_CHARS = "ab\\\"/<&\x00\n\u00e9\u2028\udcff\U0001f600"


class HypothesisPick:
    def __init__(self, draw):
        self.draw = draw

    def integer(self, low: int, high: int) -> int:
        return self.draw(st.integers(low, high))

    def choice(self, values):
        return self.draw(st.sampled_from(values))

    def binary(self, max_size: int) -> bytes:
        return self.draw(st.binary(max_size=max_size))

    def text(self) -> str:
        return self.draw(st.text(max_size=12))


class RandomPick:
    def __init__(self, rng):
        self.rng = rng

    def integer(self, low: int, high: int) -> int:
        return self.rng.randint(low, high)

    def choice(self, values):
        return values[self.rng.randrange(len(values))]

    def binary(self, max_size: int) -> bytes:
        return self.rng.randbytes(self.rng.randint(0, max_size))

    def text(self) -> str:
        return "".join(self.rng.choice(TEXT_CHARS) for _ in range(self.rng.randint(0, 12)))


def hostile_value(pick, depth: int = 0):
    kind = pick.integer(0, 8 if depth < 2 else 6)
    if kind == 0:
        return pick.choice([None, True, False])
    if kind == 1:
        return pick.integer(-2 ** 70, 2 ** 70)
    if kind == 2:
        return pick.choice(NUMBER_LIKE)
    if kind == 3:
        return pick.text()
    if kind in (4, 5):
        return pick.choice(ID_LIKE + TIME_LIKE + [DEEP])
    if kind == 6:
        return [hostile_value(pick, depth + 1) for _ in range(pick.integer(0, 3))]
    return {pick.text(): hostile_value(pick, depth + 1) for _ in range(pick.integer(0, 3))}


def _paths(obj, limit=300):
    """Paths (tuples of keys and indices) to the values in obj, the root first."""
    out = [()]
    stack = [((), obj)]
    while stack and len(out) < limit:
        path, value = stack.pop()
        items = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else ()
        for key, child in items:
            out.append(path + (key,))
            stack.append((path + (key,), child))
    return out


def _edit(obj, path, op, value):
    if not path:
        return [obj] if op == "wrap" else value
    parent = obj
    for key in path[:-1]:
        parent = parent[key]
    key = path[-1]
    if op == "delete":
        del parent[key]
    elif op == "wrap":
        parent[key] = [parent[key]]
    else:
        parent[key] = value
    return obj


def mutated_json(pick, seeds: List[bytes]) -> bytes:
    """A seed with values replaced by other types, deleted or wrapped, nested deeply, with a
    duplicate key in front."""
    obj = json.loads(pick.choice(seeds))
    for _ in range(pick.integer(1, 3)):
        path = pick.choice(_paths(obj))
        obj = _edit(obj, path, pick.choice(["replace", "replace", "delete", "wrap"]), hostile_value(pick))
    text = json.dumps(obj)
    depth = pick.choice(DEPTHS)
    text = text.replace(json.dumps(DEEP), "[" * depth + "]" * depth)
    if pick.integer(0, 1) and text.startswith("{") and len(text) > 2:
        key = pick.choice(list(obj)) if isinstance(obj, dict) and obj else "x"
        text = "{" + json.dumps(key) + ":" + json.dumps(hostile_value(pick)) + "," + text[1:]
    return text.encode("utf-8", "surrogatepass")


def mutated_bytes(pick, seeds: List[bytes]) -> bytes:
    """A seed with bytes flipped, cut, added, removed or spliced from another seed."""
    data = bytearray(pick.choice(seeds))
    for _ in range(pick.integer(1, 4)):
        op = pick.choice(["flip", "truncate", "extend", "insert", "delete", "splice"])
        at = pick.integer(0, len(data))
        if op == "flip" and data:
            data[min(at, len(data) - 1)] ^= pick.integer(1, 255)
        elif op == "truncate":
            del data[at:]
        elif op == "extend":
            data += pick.binary(64)
        elif op == "insert":
            data[at:at] = pick.binary(16) or b"\0"
        elif op == "delete":
            del data[at:at + pick.integer(1, 64)]
        elif op == "splice":
            other = pick.choice(seeds)
            data[at:] = other[pick.integer(0, len(other)):]
    return bytes(data)


def fuzzed(pick, seeds: List[bytes], is_json: bool = True, max_random: int = 256) -> bytes:
    """Random bytes, byte-level mutations of seeds, or (for JSON) structural mutations."""
    kind = pick.integer(0, 3 if is_json else 1)
    if kind == 0:
        return pick.binary(max_random)
    if kind == 1:
        return mutated_bytes(pick, seeds)
    return mutated_json(pick, seeds)


def size(pick) -> int:
    return pick.integer(-8, 8) if pick.integer(0, 1) else pick.choice(SIZE_LIKE)


# --- well-formedness of what a parser returns ----------------------------------------------

def _is_id(value) -> bool:
    return isinstance(value, str) and len(value) == 64 and all(c in "0123456789abcdef" for c in value)


def check_key_file(key: KeyFile) -> None:
    assert all(isinstance(v, str) for v in (key.created, key.username, key.hostname)), key
    assert all(type(v) is int for v in (key.n, key.r, key.p)), key
    assert isinstance(key.salt, bytes) and isinstance(key.data, bytes)
    key.created_time


def check_snapshot(sn: Snapshot) -> None:
    gojson.encode(sn.to_json())
    str(sn)
    assert sn.tree is None or _is_id(sn.tree)


def check_nodes(nodes) -> None:
    assert isinstance(nodes, list)
    for node in nodes:
        assert isinstance(node.name, str) and isinstance(node.type, str), node.name
        assert node.subtree is None or _is_id(node.subtree), node.subtree
        assert node.content is None or isinstance(node.content, list) and all(map(_is_id, node.content))
        for name in ("mode", "uid", "gid", "inode", "device_id", "size", "links", "device"):
            assert type(getattr(node, name)) is int, name
        assert isinstance(node.linktarget, str) and isinstance(node.user, str) and isinstance(node.group, str)
        assert all(isinstance(n, str) and isinstance(v, bytes) for n, v in node.xattrs)
        for text in (node.name, node.linktarget):  # a file name this machine can make
            text.encode("utf-8", "surrogateescape")
        encode_node(node)  # every field formats, times included


def check_index(parsed) -> None:
    supersedes, packs = parsed
    assert all(map(_is_id, supersedes))
    for pack_id, entries in packs:
        assert _is_id(pack_id), pack_id
        for e in entries:
            assert e.type in ("data", "tree") and isinstance(e.id, str), e
            assert all(type(v) is int and v >= 0 for v in (e.offset, e.length, e.uncompressed_length)), e


def _both_index_paths(raw: bytes):
    """Loading an index file natively (when it has restic's shape), through orjson and the native
    table fill, and through orjson and the Python loop alone: compared by check_same_outcome."""
    return outcome(MasterIndex(), raw), outcome(OrjsonIndex(), raw), outcome(PythonLoopIndex(), raw)


def check_same_outcome(outcomes) -> None:
    native, orjson_native, python = outcomes
    assert native == orjson_native == python, (
        f"native: {native!r:.300}, orjson: {orjson_native!r:.300}, Python loop: {python!r:.300}")


def _index_packs_both_ways(raw: bytes):
    """check's compact reading of an index file (natively when it has restic's shape) and
    the Python parser's, each as pack id -> sorted entries (a pack listed twice merged), or
    that it raised an IntegrityError: compared by check_same_pair."""
    def python():  # what check took before: the parser's entries, of a file the master index takes
        merged = {}
        for pack_id, entries in parse_index(raw)[1]:
            merged.setdefault(pack_id, []).extend(entries)
        MasterIndex().add_index_bytes(None, raw)
        # ids as the master index and restic hold them: hex digits' case is not kept
        return {pack_id: sorted(e._replace(id=e.id.lower()) for e in entries) for pack_id, entries in merged.items()}

    def compact():
        found = {}
        for pack_id, packed in packs_of_index_file(raw):
            indexed = IndexedPacks()
            indexed.put(pack_id, packed)
            found[pack_id] = sorted(indexed.entries(pack_id))
        return found

    return _outcome_of(python), _outcome_of(compact)


def _outcome_of(fn):
    try:
        return fn()
    except IntegrityError as exc:
        return f"IntegrityError: {exc}"


def check_same_pair(pair) -> None:
    compact, python = pair
    assert compact == python or (str(compact).startswith("IntegrityError") and str(python).startswith("IntegrityError")), (
        f"compact: {compact!r:.300}, Python: {python!r:.300}")


def check_lock(info: LockInfo) -> None:
    info.describe(SOME_ID)
    info.is_stale()


# --- the parsers ------------------------------------------------------------------------------

@dataclass
class Parser:
    example: Callable  # (pick, seeds) -> one input
    parse: Callable  # (seeds, example) -> result, or raises
    check: Optional[Callable] = None  # asserts the result is well formed


def _sealed_must_fail(seeds, data):
    """Random or altered ciphertext never passes: CiphertextVerificationFailed, unless the
    bytes are a genuine sealed object."""
    try:
        seeds.key.open(data)
    except CiphertextVerificationFailed:
        return
    assert data in seeds.stored, "altered ciphertext was accepted"


def _unpacked(seeds, example):
    plain, version = example
    return unpacked.decode(seeds.key, seeds.key.seal(plain), version)


def _blob(seeds, example):
    payload, ulen = example
    return seeds.key.open(seeds.key.seal(payload), ulen)


def _pack_file(seeds, example):
    data, size_change = example
    repo = SimpleNamespace(key=seeds.key, load_pack=lambda _id, offset, length: backend.load(
        FileType.PACK, SOME_ID, offset, length))
    backend = MemoryBackend()
    backend.save(FileType.PACK, SOME_ID, data)
    return read_pack_header(repo, SOME_ID, max(0, len(data) + size_change))


def _snapshot(seeds, plain):
    """Through the repository, as every command loads a snapshot."""
    repo = seeds.memory_repo
    file_id = repo.save_unpacked(FileType.SNAPSHOT, plain)
    try:
        return load_snapshot(repo, file_id)
    finally:
        repo.backend.remove(FileType.SNAPSHOT, file_id)


def _lazy_tree(seeds, raw):
    nodes = decode_tree_lazy(raw)
    for node in nodes:
        node.mode, node.mtime.unix_ns, node.content  # first use decodes the rest
    return nodes


PARSERS: Dict[str, Parser] = {
    "key_file": Parser(lambda p, s: fuzzed(p, s.key_files), lambda s, x: KeyFile.parse(x, SOME_ID), check_key_file),
    "master_key": Parser(lambda p, s: fuzzed(p, s.master_keys), lambda s, x: decode_master_key(x)),
    "config": Parser(lambda p, s: fuzzed(p, s.configs), lambda s, x: Config.from_json(x)),
    "sealed": Parser(lambda p, s: fuzzed(p, s.stored, is_json=False), _sealed_must_fail),
    "unpacked": Parser(lambda p, s: (fuzzed(p, p.choice([s.zstd, s.unpacked_plain]), is_json=False),
                                     p.choice([1, 2])), _unpacked),
    "compression": Parser(lambda p, s: (fuzzed(p, s.zstd, is_json=False), size(p)),
                          lambda s, x: compression.decompress(*x)),
    "blob": Parser(lambda p, s: (fuzzed(p, s.zstd, is_json=False), size(p)), _blob),
    "pack_tail": Parser(lambda p, s: (p.binary(8), size(p)), lambda s, x: header_length_from_tail(*x)),
    "pack_header": Parser(lambda p, s: (fuzzed(p, s.pack_headers, is_json=False), size(p)),
                          lambda s, x: parse_header(s.key, s.key.seal(x[0]), x[1])),
    "pack_file": Parser(lambda p, s: (fuzzed(p, s.packs, is_json=False, max_random=64), p.integer(-64, 64)),
                        _pack_file),
    "index": Parser(lambda p, s: fuzzed(p, s.indexes), lambda s, x: parse_index(x), check_index),
    "master_index": Parser(lambda p, s: fuzzed(p, s.indexes), lambda s, x: MasterIndex().add_index_bytes(None, x)),
    "master_index_paths": Parser(lambda p, s: fuzzed(p, s.indexes), lambda s, x: _both_index_paths(x),
                                 check_same_outcome),
    "index_packs": Parser(lambda p, s: fuzzed(p, s.indexes), lambda s, x: _index_packs_both_ways(x), check_same_pair),
    "snapshot": Parser(lambda p, s: fuzzed(p, s.snapshots), _snapshot, check_snapshot),
    "tree": Parser(lambda p, s: fuzzed(p, s.trees), lambda s, x: decode_tree(x), check_nodes),
    "tree_lazy": Parser(lambda p, s: fuzzed(p, s.trees), _lazy_tree, check_nodes),
    "lock": Parser(lambda p, s: fuzzed(p, s.locks), lambda s, x: LockInfo.from_json(x), check_lock),
}


def _on_alarm(signum, frame):
    raise Hang(f"no answer within {HANG_SECONDS} s")


def attempt(parser: Parser, seeds, example) -> Optional[BaseException]:
    """None when the parser returned well-formed data or raised restique's own error; the
    offending exception otherwise."""
    previous = signal.signal(signal.SIGALRM, _on_alarm)
    signal.setitimer(signal.ITIMER_REAL, HANG_SECONDS)
    try:
        result = parser.parse(seeds, example)
        if parser.check is not None:
            parser.check(result)
    except RestiqueError:
        return None
    except (Exception, RecursionError, MemoryError) as exc:
        return exc
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
    return None


def run_parser(name: str, seeds, examples: int, on_failure: Callable) -> int:
    """Hypothesis, derandomized: `examples` inputs to one parser; on_failure(example,
    exception) for a bad one (raise from it: hypothesis then shrinks the example). Returns
    the number of examples run."""
    parser = PARSERS[name]
    count = 0

    @settings(max_examples=examples, deadline=None, derandomize=True, database=None,
              suppress_health_check=list(HealthCheck))
    @given(st.data())
    def body(data):
        nonlocal count
        count += 1
        example = parser.example(HypothesisPick(data.draw), seeds)
        failure = attempt(parser, seeds, example)
        if failure is not None:
            on_failure(example, failure)

    body()
    return count


def run_parser_randomly(name: str, seeds, examples: int, rng, on_failure: Callable) -> None:
    """The same inputs drawn from rng, without hypothesis's bookkeeping: for long runs."""
    parser = PARSERS[name]
    pick = RandomPick(rng)
    for _ in range(examples):
        example = parser.example(pick, seeds)
        failure = attempt(parser, seeds, example)
        if failure is not None:
            on_failure(example, failure)


# --- CI ---------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def seeds(tmp_path_factory):
    return build_seeds(tmp_path_factory.mktemp("fuzz"))


def test_seeds_parse(seeds):
    """The unmutated seeds parse: the fuzzing starts from valid objects of every kind."""
    for raw in seeds.key_files:
        check_key_file(KeyFile.parse(raw, SOME_ID))
    for raw in seeds.configs:
        assert Config.from_json(raw).version == 2
    for raw in seeds.snapshots:
        check_snapshot(_snapshot(seeds, raw))
    for raw in seeds.trees:
        check_nodes(decode_tree(raw))
    for raw in seeds.packs:
        assert read_pack_header(SimpleNamespace(key=seeds.key, load_pack=lambda _i, o, n: raw[o:o + n]),
                                SOME_ID, len(raw))
    for raw in seeds.locks:
        check_lock(LockInfo.from_json(raw))
    assert len(seeds.snapshots) >= 2 and len(seeds.trees) >= 3 and len(seeds.indexes) >= 2


@pytest.mark.parametrize("name", sorted(PARSERS))
def test_parser_raises_only_restique_errors(seeds, name):
    def fail(example, exc):
        raise AssertionError(f"{name}: {type(exc).__name__}: {exc} for {example!r:.300}") from exc

    assert run_parser(name, seeds, CI_EXAMPLES, on_failure=fail) > CI_EXAMPLES // 2


# --- what the fuzzing found, pinned -------------------------------------------------------------

def test_length_fields_cannot_allocate_terabytes(seeds):
    """A zstd frame header or a recorded uncompressed length claiming 1 TiB: IntegrityError
    before anything is allocated (zstd cannot expand a byte more than 32768 times)."""
    huge_frame = b"\x28\xb5\x2f\xfd\xe0" + struct.pack("<Q", 1 << 40) + b"\x01\x00\x00"
    with pytest.raises(IntegrityError, match="impossible"):
        compression.decompress(huge_frame)
    sealed = seeds.key.seal(compression.compress(b"x" * 100, 3))
    for length in (-1, 1 << 40):
        with pytest.raises(IntegrityError):
            seeds.key.open(sealed, length)
    assert seeds.key.open(sealed, 100) == b"x" * 100


def test_deep_nesting_is_damage_not_a_crash():
    deep = b'{"nodes":' + b"[" * 100000 + b"]" * 100000 + b"}"
    for parse in (decode_tree, decode_tree_lazy, lambda raw: Config.from_json(raw),
                  lambda raw: LockInfo.from_json(raw), lambda raw: KeyFile.parse(raw, SOME_ID)):
        with pytest.raises(IntegrityError):
            parse(deep)


def test_times_that_do_not_exist_are_refused():
    for text in ("2022-13-01T00:00:00Z", "2022-02-30T00:00:00Z", "2022-01-01T24:00:00Z",
                 "12022-01-01T00:00:00Z", "2022-01-01T00:00:00+24:00", "2022-01-01T00:00:00.\u0663Z"):
        with pytest.raises(ValueError):
            GoTime.parse(text)
    assert GoTime.parse("2024-02-29T23:59:59.5-23:59").rfc3339() == "2024-02-29T23:59:59.5-23:59"


def test_unpaired_surrogates_read_as_replacement_characters():
    """Go decodes "\\ud800" as U+FFFD; kept as is it could not become a file name."""
    raw = b'{"nodes":[{"name":"a\\ud800b","type":"file","content":[]}]}'
    assert decode_tree(raw)[0].name == "a\ufffdb"
    assert decode_tree(b'{"nodes":[{"name":"\\ud83d\\ude00","type":"file","content":[]}]}')[0].name == "\U0001f600"


def test_wrong_types_in_a_tree_entry_are_damage():
    for entry in ('{"name":1,"type":"file"}', '{"name":"a","type":"file","content":"ab"}',
                  '{"name":"a","type":"file","content":[{"x":1}]}', '{"name":"a","type":"dir","subtree":"zz"}',
                  '{"name":"a","type":"file","user":["root"]}', '{"name":"a","type":"file","mode":1e999}'):
        with pytest.raises(IntegrityError):
            decode_tree(b'{"nodes":[' + entry.encode() + b"]}")


@pytest.mark.parametrize("raw", [
    b'{"packs":[{"id":"%s","blobs":[{"id":"%s","type":"data","offset":Infinity,"length":1}]}]}' % (
        SOME_ID.encode(), SOME_ID.encode()),
    b'{"packs":[{"id":"%s","blobs":[]}]}' % (b"x" * 64),
    b'{"packs":[{"id":"%s","blobs":[{"id":12,"type":"data","offset":0,"length":1}]}]}' % SOME_ID.encode(),
])
def test_index_parser_known_damage(raw):
    with pytest.raises(IntegrityError):
        check_index(parse_index(raw))
