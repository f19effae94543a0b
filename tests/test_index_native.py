"""The master index's native tables (restique._index): exact lookups, the first location of an id
wins, both blob types apart, values of any size, later additions merged, the same content and
order as a dict model, and loading an index file natively fails exactly as the Python loop does.
"""
import json
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from restique._index import BlobTable
from restique.errors import IntegrityError
from restique.repository.index import IndexFile, MasterIndex
from restique.repository.pack import PackEntry
from restique.repository.repository import open_repository

from conftest import PASSWORD, run_restic

PACK = "ee" * 32


class OrjsonIndex(MasterIndex):
    """A master index that parses every index file with orjson (then fills the tables natively
    when the values have restic's shape)."""

    def _load_native(self, raw) -> bool:
        return False


class PythonLoopIndex(OrjsonIndex):
    """A master index that loads every index file through orjson and the Python loop: the
    reference the native paths must match."""

    def _add_canonical_packs(self, packs) -> bool:
        return False


def outcome(index: MasterIndex, raw: bytes):
    """The blobs and locations an index file loads to, or the message of the error it raises."""
    try:
        index.add_index_bytes(None, raw)
    except IntegrityError as exc:
        return str(exc)
    return [(t, i, index.lookup(t, i)) for t, i in index.blobs()]


def random_id(rnd: random.Random) -> str:
    return rnd.randbytes(32).hex()


def index_bytes(blobs, pack_id=PACK) -> bytes:
    return json.dumps({"packs": [{"id": pack_id, "blobs": blobs}]}).encode()


def blob(blob_id, blob_type="data", offset=0, length=100, ulen=None):
    obj = {"id": blob_id, "type": blob_type, "offset": offset, "length": length}
    if ulen is not None:
        obj["uncompressed_length"] = ulen
    return obj


def test_lookups_are_exact():
    rnd = random.Random(1)
    ids = [random_id(rnd) for _ in range(20000)]
    index = MasterIndex()
    index.add_index_bytes("aa" * 32, index_bytes([blob(i, offset=n, length=n + 40, ulen=n * 3)
                                                  for n, i in enumerate(ids)]))
    assert len(index) == 20000 and index.index_ids == ["aa" * 32]
    for n, blob_id in enumerate(ids[::97]):
        n = ids.index(blob_id)
        loc = index.lookup("data", blob_id)
        assert (loc.pack_id, loc.offset, loc.length, loc.uncompressed_length) == (PACK, n, n + 40, n * 3)
        assert index.stored_sizes("data", blob_id) == (n + 40, n * 3) and index.has("data", blob_id)
        # one bit off anywhere, or the id's first two bytes (which the bucket implies): absent
        for pos in (0, 3, 20, 63):
            other = blob_id[:pos] + ("0" if blob_id[pos] != "0" else "1") + blob_id[pos + 1:]
            assert not index.has("data", other) and index.lookup("data", other) is None
        assert not index.has("tree", blob_id) and index.find_any_type(blob_id)[0] == "data"
    for junk in ("", "zz" * 32, ids[0][:63], ids[0] + "0", None, 5):
        assert not index.has("data", junk) and index.lookup("data", junk) is None
    assert index.find_any_type("12" * 32) is None
    with pytest.raises(KeyError):
        index.has("snapshot", ids[0])


def test_uppercase_hex_is_the_same_blob():
    index = MasterIndex()
    index.add_index_bytes(None, index_bytes([blob("AB" * 32)]))
    assert index.has("data", "ab" * 32) and list(index.blobs()) == [("data", "ab" * 32)]


def test_first_location_wins_everywhere():
    """Duplicates within one file, across files, and between merged records and the tail."""
    rnd = random.Random(2)
    many = [random_id(rnd) for _ in range(6000)]
    dup = many[10]
    index = MasterIndex()
    index.add_index_bytes(None, index_bytes([blob(i, offset=1) for i in many] + [blob(dup, offset=2)]))
    index.add_index_bytes(None, index_bytes([blob(dup, offset=3)], pack_id="ff" * 32))
    assert index.lookup("data", dup).offset == 1 and len(index) == 6000  # merged now
    index.add_pack("ff" * 32, [PackEntry("data", dup, 4, 1), PackEntry("data", "01" * 32, 5, 1),
                               PackEntry("data", "01" * 32, 6, 1)])
    assert index.lookup("data", dup).offset == 1  # the tail entry is hashed and dead
    assert index.lookup("data", "01" * 32).offset == 5
    index.add_pack("ff" * 32, [PackEntry("data", random_id(rnd), 7, 1) for _ in range(5000)])
    assert len(index) == 11001  # merged again
    assert index.lookup("data", dup).offset == 1 and index.lookup("data", "01" * 32).offset == 5


def test_types_are_apart():
    index = MasterIndex()
    assert list(index.blobs()) == [] and len(index) == 0 and not index.has("tree", "ab" * 32)
    same = "0a" * 32
    index.add_pack(PACK, [PackEntry("data", same, 0, 10), PackEntry("tree", same, 10, 20, 30)])
    assert index.lookup("data", same).length == 10 and index.lookup("tree", same).length == 20
    assert list(index.blobs()) == [("data", same), ("tree", same)] and len(index) == 2


def test_values_of_any_size_are_stored_exactly():
    """Huge offsets, lengths and pack counts only widen the records; past 64 bits is damage."""
    table = BlobTable()
    values = [(0, 0, 32, 0), (1, 1 << 40, (1 << 63) + 5, 1 << 35), (2**32 - 1, 2**64 - 1, 7, 2**64 - 1)]
    for n, v in enumerate(values):
        table.add(bytes([n]) * 32, *v)
    assert len(table) == 3 and table.exception_count <= 3 * 4  # at most every field's number
    for n, v in enumerate(values):
        assert table.get((bytes([n]) * 32).hex()) == v
    small = BlobTable()
    small.add(b"\x01" * 32, 1, 100, 200, 0)
    # widths keep the all-ones sentinel free: 100 takes 7 bits, 200 takes 8, zeros none; the table
    # numbers its packs itself, from 0; ids: 29 bytes and 8 low bits of their 24-bit prefix
    assert len(small) == 1 and small.record_bits == 232 + 8 + 0 + 7 + 8 and small.exception_count == 0
    assert small.get(("01" * 32)) == (1, 100, 200, 0)
    for raw in (index_bytes([blob("ab" * 32, offset=2**64)]), index_bytes([blob("ab" * 32, length=2**70)])):
        with pytest.raises(IntegrityError):
            MasterIndex().add_index_bytes(None, raw)
    with pytest.raises(OverflowError):
        table.add(b"\x05" * 32, 2**32, 0, 0, 0)


def test_later_additions_are_found_before_and_after_merging():
    rnd = random.Random(3)
    index, model = MasterIndex(), {}
    for round_ in range(12):
        entries = [PackEntry(rnd.choice(("data", "tree")), random_id(rnd), n, n + 1, round_)
                   for n in range(rnd.choice((3, 300, 3000)))]
        index.add_pack(random_id(rnd), entries)
        for e in entries:
            model.setdefault((e.type, e.id), (e.offset, e.length, e.uncompressed_length))
        for (t, i), want in rnd.sample(sorted(model.items()), min(50, len(model))):
            loc = index.lookup(t, i)
            assert (loc.offset, loc.length, loc.uncompressed_length) == want
    assert sorted(index.blobs()) == sorted(model) and len(index) == len(model)


ops = st.lists(st.tuples(st.sampled_from(("data", "tree")), st.integers(0, 40), st.integers(0, 2**40),
                         st.booleans()), max_size=300)


@settings(max_examples=60, deadline=None)
@given(ops)
def test_same_as_a_dict_model(additions):
    """Content equal to a dict filled with setdefault; order: data first, each type by id."""
    index, model = MasterIndex(), {}
    for n, (blob_type, id_number, value, new_pack) in enumerate(additions):
        blob_id = (id_number * 0x9E3779B1 % 2**32).to_bytes(4, "big").hex() * 8
        pack_id = ("%064x" % (n if new_pack else 0))
        index.add_pack(pack_id, [PackEntry(blob_type, blob_id, value, n, value // 3)])
        model.setdefault((blob_type, blob_id), (pack_id, value, n, value // 3))
        if n % 7 == 0:
            assert index.has(blob_type, blob_id)
    assert list(index.blobs()) == sorted(model, key=lambda k: (k[0] != "data", k[1]))
    for (t, i), want in model.items():
        loc = index.lookup(t, i)
        assert (loc.pack_id, loc.offset, loc.length, loc.uncompressed_length) == want


MALFORMED = [
    b'{"packs":[{"id":"%s","blobs":[{"id":"%s","type":"blob","offset":0,"length":1}]}]}',
    b'{"packs":[{"id":"%s","blobs":[{"id":"%s","type":"data","length":1}]}]}',
    b'{"packs":[{"id":"%s","blobs":[{"id":"%s","type":"data","offset":"7","length":true}]}]}',
    b'{"packs":[{"id":"%s","blobs":[{"id":"%s","type":"data","offset":1,"length":1,"uncompressed_length":[]}]}]}',
    b'{"packs":[{"id":"%s","blobs":[{"id":"%s","type":"data","offset":0,"length":{}}]}]}',
    b'{"packs":[{"id":"%s","blobs":[{"id":"%s","type":["data"],"offset":0,"length":1}]}]}',
    b'{"packs":[{"id":"%s","blobs":"%s"}]}',
    b'{"packs":[{"id":"%s","blobs":{"%s":1}}]}',
    b'{"packs":[{"id":"%s","blobs":[["%s"]]}]}',
    b'{"packs":[{"id":"%s"},{"id":"%s"}]}',
    b'{"packs":[{"id":"%s","blobs":[{"id":"%s","type":"data","offset":0,"length":1}]},{"id":"x"}]}',
    b'{"packs":[{"blobs":[{"id":"%s","type":"data","offset":0,"length":1}]},{"id":"%s"}]}',
    b'[{"id":"%s","blobs":[{"id":"%s","type":"tree","offset":0,"length":1,"uncompressed_length":0}]}]',
    b'{"packs":{"id":"%s","blobs":["%s"]}}',
    b'{"packs":[1,"%s","%s"]}',
    b'{"packs":[{"id":"%s","blobs":[{"id":"%s","type":"data","offset":1e3,"length":1}]}]}',
    b'{"packs":[{"id":"%s","blobs":[{"id":"%s","type":"data","offset":0,"length":1}]}],"x":-1}',
]


@pytest.mark.parametrize("template", MALFORMED)
@pytest.mark.parametrize("blob_id", ["ab" * 32, "xy" * 32, "ab" * 31, "AB" * 32])
def test_native_loading_matches_the_python_loop(template, blob_id):
    raw = template % (PACK.encode(), blob_id.encode()) if template.count(b"%s") == 2 else template
    assert outcome(MasterIndex(), raw) == outcome(OrjsonIndex(), raw) == outcome(PythonLoopIndex(), raw)


def test_restic_written_index(tmp_path):
    """Every blob `restic list blobs` names, and nothing else, from restic's own index files."""
    src = tmp_path / "src"
    src.mkdir()
    for n in range(30):
        (src / f"f{n}").write_bytes(random.Random(n).randbytes(n * 3000))
    repo = tmp_path / "repo"
    run_restic(repo, "init")
    run_restic(repo, "backup", src)
    listed = sorted(tuple(line.split()) for line in run_restic(repo, "list", "blobs").stdout.decode().splitlines())
    with open_repository(str(repo), PASSWORD) as opened:
        index = opened.load_index()
        assert sorted(index.blobs()) == listed
        files = [opened.load_index_file(i) for i in index.index_ids]
    for index_file in files:
        for pack_id, entries in index_file.packs.items():
            for e in entries:
                loc = index.lookup(e.type, e.id)
                assert (loc.pack_id, loc.offset, loc.length, loc.uncompressed_length) == (
                    pack_id, e.offset, e.length, e.uncompressed_length)


def test_index_file_round_trip_loads_the_same():
    rnd = random.Random(4)
    index_file = IndexFile()
    index_file.add_pack(PACK, [PackEntry("tree", random_id(rnd), n * 10, 10, n % 2 * 30) for n in range(100)])
    a, b = MasterIndex(), MasterIndex()
    a.add_index_file("cc" * 32, index_file)
    b.add_index_bytes("cc" * 32, index_file.encode())
    assert [(t, i, a.lookup(t, i)) for t, i in a.blobs()] == [(t, i, b.lookup(t, i)) for t, i in b.blobs()]


ID, OTHER = "ab" * 32, "cd" * 32
NATIVE_SHAPES = [  # what restic writes, in any layout: the native parser takes these
    b'{"packs":[{"id":"%s","blobs":[{"id":"%s","type":"data","offset":0,"length":10}]}]}\n',
    b' {\n "supersedes" : [ "%s" ] ,\t"packs":[ {"blobs":[{"length":10,"offset":7,"uncompressed_length":99,'
    b'"type":"tree","id":"%s"}],"id":"%s"} ] }\r\n',
    b'{"packs":[{"id":"%s"},{"id":"%s","blobs":[]}],"supersedes":[]}',
    b'{"packs":[]}',
    b'{"packs":[{"id":"%s","blobs":[{"id":"%s","type":"data","offset":18446744073709551615,"length":0}]}]}',
]
ORJSON_SHAPES = [  # valid or not, these go to orjson and the Python loop
    b'[{"id":"%s","blobs":[{"id":"%s","type":"data","offset":0,"length":10}]}]',
    b'{"packs":[{"id":"%s","blobs":[{"id":"%s","type":"data","offset":0,"length":10,"x":1}]}]}',
    b'{"packs":[{"id":"%s","blobs":[{"id":"%s","type":"d\\u0061ta","offset":0,"length":10}]}]}',
    b'{"packs":[{"id":"%s","id":"%s"}]}',
    b'{"packs":[{"id":"%s","blobs":[{"id":"%s","type":"data","offset":01,"length":10}]}]}',
    b'{"packs":[{"id":"%s","blobs":[{"id":"%s","type":"data","offset":1e2,"length":10}]}]}',
    b'{"packs":[{"id":"%s","blobs":[{"id":"%s","type":"data","offset":18446744073709551616,"length":1}]}]}',
    b'{"packs":[{"id":"%s","blobs":[{"id":"%s","type":"data","offset":0,"length":10}]}]}x',
    b'{"packs":[{"id":"%s","blobs":[{"id":"%s","type":"data","offset":0,"length":10}]},]}',
    b'{"packs":[{"id":"%s","blobs":null}],"supersedes":["%s"]}',
    b'{"packs":[{"id":"%s","blobs":[{"id":"%s","type":"data","offset":0,"length":10}]}],"packs":[]}',
    b'{"packs":[{"id":"%s","blobs":[{"id":"%s","type":"data","offset":0,"length":10}]}]',
    b'{"packs":[{"id":"%s","blobs":[{"id":"%s","type":"data","offset":0}]}]}',
]


def fill(template: bytes, ids) -> bytes:
    return template % tuple(i.encode() for i in ids[:template.count(b"%s")])


@pytest.mark.parametrize("template", NATIVE_SHAPES)
def test_native_parser_takes_restics_shape(template):
    raw = fill(template, [PACK, ID, OTHER])
    index = MasterIndex()
    assert index._load_native(raw)
    assert outcome(MasterIndex(), raw) == outcome(PythonLoopIndex(), raw)


@pytest.mark.parametrize("template", ORJSON_SHAPES)
@pytest.mark.parametrize("pack_id", [PACK, PACK.upper()])
def test_native_parser_leaves_the_rest_to_orjson(template, pack_id):
    raw = fill(template, [pack_id, ID, OTHER])
    index = MasterIndex()
    assert not index._load_native(raw) and len(index) == 0 and not len(index._packs)
    assert outcome(MasterIndex(), raw) == outcome(OrjsonIndex(), raw) == outcome(PythonLoopIndex(), raw)


def _bulk_table(values):
    """A merged table of one record per value tuple, ids from their position."""
    table = BlobTable()
    for n, v in enumerate(values):
        table.add(n.to_bytes(4, "big") * 8, *v)
    assert len(table) == len(values)
    return table


def test_rare_large_values_go_to_the_exceptions_table():
    """Values just below, at and above each width's sentinel, among many common ones: the
    common ones set the widths, the rest are exceptions, and every value comes back exactly."""
    rnd = random.Random(5)
    common = [(rnd.randrange(4095), rnd.randrange((1 << 20) - 1), rnd.randrange((1 << 20) - 1), rnd.randrange((1 << 20) - 1))
              for _ in range(70_000)]  # below the all-ones sentinel of 12 and 20 bits
    edges = []
    for field in range(4):
        for width in (12, 20, 24, 32, 63, 64):
            for value in ((1 << width) - 2, (1 << width) - 1, 1 << width):
                if field == 0 and value > 2**32 - 1 or value > 2**64 - 1:
                    continue
                v = [1, 2, 3, 4]
                v[field] = value
                edges.append(tuple(v))
    values = common + edges
    table = _bulk_table(values)
    # 29 id bytes and 7 low bits of the id's 24-bit prefix (2^17 buckets for 70,000 records)
    assert table.record_bits == 232 + 7 + 12 + 3 * 20
    # only the field that does not fit is an exception: an offset, length or uncompressed length
    # from the sentinel of 20 bits up, a pack the common ones did not number (the table numbers
    # packs itself: the common ones take 0..4094, below the sentinel of 12 bits)
    common_packs = {v[0] for v in common}
    assert len(common_packs) == 4095
    assert table.exception_count == sum(v[field] >= (1 << 20) - 1 if field else v[0] not in common_packs
                                        for v in edges for field in range(4))
    for n, v in enumerate(values):
        assert table.get((n.to_bytes(4, "big") * 8).hex()) == v


def test_each_table_numbers_its_packs_itself():
    """A table's records number the packs it refers to (trees are in few packs: their field is
    narrow), kept across merges while new packs arrive, and lookups give the master index's."""
    rnd = random.Random(14)
    index, model = MasterIndex(), {}
    packs = [random_id(rnd) for _ in range(5000)]
    for step in range(3):  # each step merges: new packs of both types, and old ones again
        for n in range(70_000):
            tree = n % 50 == 0
            pack = packs[(n // 50 % 8) * 625 if tree else rnd.randrange(len(packs) * (step + 1) // 3)]
            e = PackEntry("tree" if tree else "data", random_id(rnd), n, n + 1, 0)
            index.add_pack(pack, [e])
            model[e.type, e.id] = (pack, n, n + 1, 0)
        assert len(index) == len(model)
    assert index._tables["tree"].record_bits == 232 + 8 + 4 + 17 + 17  # 8 packs: 0..7, below 15
    for (t, i), want in model.items():
        loc = index.lookup(t, i)
        assert (loc.pack_id, loc.offset, loc.length, loc.uncompressed_length) == want
    table = BlobTable()  # any 32-bit pack number, as the master index's numbers are
    for n, pack in enumerate((2**32 - 1, 0, 2**32 - 1, 2**31, 7)):
        table.add(n.to_bytes(32, "big"), pack, n, n, n)
    assert [table.get(n.to_bytes(32, "big").hex())[0] for n in range(5)] == [2**32 - 1, 0, 2**32 - 1, 2**31, 7]


def test_exceptions_survive_merges_and_rebuilds():
    """Exceptions carried through later merges, which rebuild positions and may change widths."""
    rnd = random.Random(6)
    table, model = BlobTable(), {}

    def add(count, big_share):
        for _ in range(count):
            blob_id = rnd.randbytes(32)
            big = rnd.random() < big_share
            v = (rnd.randrange(1 << 16), rnd.randrange(1 << (40 if big else 24)),
                 rnd.randrange(1 << (30 if big else 22)), rnd.randrange(1 << 22))
            table.add(blob_id, *v)
            model.setdefault(blob_id.hex(), v)

    add(70_000, 0.01)
    assert len(table) == len(model) and table.exception_count > 0
    for round_, share in enumerate((0.9, 0.0, 0.3)):  # mostly large, then none: widths move both ways
        add(70_000, share)
        assert len(table) == len(model)
        for blob_id, v in rnd.sample(sorted(model.items()), 3000):
            assert table.get(blob_id) == v
    assert all(table.get(blob_id) == v for blob_id, v in model.items())
    assert table.has(rnd.randbytes(32).hex()) is False


def test_many_exceptions_and_hashed_tail_together():
    """Half the records exceptions, plus a small hashed tail of large values before its merge."""
    rnd = random.Random(7)
    values = [(n % 3, (1 << 45) + n if n % 2 else n, 7, 0) for n in range(70_000)]
    table = _bulk_table(values)
    later = {rnd.randbytes(32): (5, 2**64 - 1, 2**63, 1) for _ in range(100)}
    for blob_id, v in later.items():
        table.add(blob_id, *v)
    for blob_id, v in later.items():
        assert table.get(blob_id.hex()) == v and table.sizes(blob_id.hex()) == v[2:]
    for n in rnd.sample(range(len(values)), 2000):
        assert table.get((n.to_bytes(4, "big") * 8).hex()) == values[n]
    assert len(table) == len(values) + len(later)


EDGES = (2**32 - 1, 2**32, 2**64 - 1)


def test_loading_merges_in_steps_and_the_first_addition_still_wins():
    """Additions without queries merge in steps (the tail never holds them all): later steps
    widen the fields of records merged before, copies of an id within a step and across steps
    lose to its first addition, and values at 2**32 - 1, 2**32 and 2**64 - 1 come back exactly."""
    rnd = random.Random(11)
    table, model, ids = BlobTable(), {}, []

    def add(blob_id, v):
        table.add(blob_id, *v)
        model.setdefault(blob_id.hex(), v)
        ids.append(blob_id)

    for step, bits in enumerate((12, 24, 40, 64)):  # each step wider than the ones before
        for n in range(40_000):
            v = (rnd.randrange(1 << 16), rnd.randrange(1 << bits), rnd.randrange(1 << min(bits, 32)), 0)
            add(rnd.randbytes(32), v)
            if n % 997 == 0:  # a copy of an earlier id: of this step or of a merged one
                add(rnd.choice(ids), (step, n, n, n))
        for field in range(1, 4):
            for value in EDGES:
                v = [step, 1, 2, 3]
                v[field] = value
                add(rnd.randbytes(32), tuple(v))
        add(ids[0], (9, 9, 9, 9))
    assert len(table) == len(model)
    assert all(table.get(blob_id) == v for blob_id, v in model.items())
    assert table.get(ids[0].hex()) == model[ids[0].hex()] != (9, 9, 9, 9)


def test_index_files_merged_in_steps_while_loading():
    """Loading many index files merges in steps; a blob listed again in a later file keeps its
    first location, and lookups match the Python loop's."""
    rnd = random.Random(12)
    files, seen = [], []
    for f in range(8):
        blobs = [blob(random_id(rnd), rnd.choice(("data", "tree")), rnd.randrange(1 << 24),
                      rnd.randrange(1, 1 << 20), rnd.choice((None, 0, rnd.randrange(1 << 22), 2**64 - 1)))
                 for _ in range(12_000)]
        blobs += [dict(b, offset=b["offset"] + 1) for b in rnd.sample(seen, min(len(seen), 500))]
        seen += blobs[:12_000]
        files.append(index_bytes(blobs, pack_id="%064x" % f))
    native, reference = MasterIndex(), PythonLoopIndex()
    for raw in files:
        native.add_index_bytes(None, raw)
        reference.add_index_bytes(None, raw)
    assert len(native) == len(reference) == len(seen)
    for b in seen:
        assert native.lookup(b["type"], b["id"]) == reference.lookup(b["type"], b["id"])


@pytest.mark.parametrize("count", [1, 300, 70_000, 140_000])
def test_crowded_and_empty_prefix_buckets(count):
    """Ids crowded into a few 24-bit prefixes (the first and last, around every 256th bucket
    where the directory samples, one prefix holding most) and everything between empty, over
    merges that change the prefix's low bits: lookups, absent neighbours, order and hex ids."""
    rnd = random.Random(count)
    prefixes = [0, 0xFFFFFF, 0x000100, 0x0000FF, 0x010000, 0x7FFFFF, 0x800000]
    prefixes += [b << s for b in (255, 256, 257, 511, 512) for s in range(9)]
    table, model = BlobTable(), {}
    for n in range(count):
        prefix = 0x123456 if n % 3 == 0 else rnd.choice(prefixes) if n % 3 == 1 else rnd.getrandbits(24)
        blob_id = prefix.to_bytes(3, "big") + rnd.randbytes(29)
        table.add(blob_id, n % 5, n, n + 1, 0)
        model.setdefault(blob_id.hex(), (n % 5, n, n + 1, 0))
        if n in (0, count // 2):  # queries between additions: a hashed tail, then merges
            assert table.get(blob_id.hex()) == model[blob_id.hex()]
    assert len(table) == len(model)
    ordered = sorted(model)
    assert table.hex_slice(0, len(table)) == ordered
    for start in {0, 1, len(ordered) // 3, len(ordered) - 1}:
        assert table.hex_slice(start, start + 700) == ordered[start:start + 700]
    assert all(table.get(blob_id) == v for blob_id, v in model.items())
    for prefix in prefixes + [0x123456, 0x123455, 0x123457]:
        for rest in ("00" * 29, "ff" * 29):
            absent = prefix.to_bytes(3, "big").hex() + rest
            assert table.has(absent) is (absent in model)


def test_pack_ids_are_numbered_in_order_of_first_appearance():
    from restique._index import PackIds

    rnd = random.Random(8)
    packs, ids = PackIds(), [random_id(rnd) for _ in range(5000)]  # past several growths
    assert [packs.number(i) for i in ids] == list(range(len(ids)))
    assert [packs.number(i) for i in reversed(ids)] == list(reversed(range(len(ids))))
    assert len(packs) == len(ids) and all(packs.hex(n) == i for n, i in enumerate(ids))
    for bad in ("AB" * 32, "ab" * 31, "zz" * 32, b"ab" * 32, None):
        with pytest.raises(ValueError):
            packs.number(bad)
    for n in (-1, len(ids)):
        with pytest.raises(IndexError):
            packs.hex(n)
    assert len(packs) == len(ids)
