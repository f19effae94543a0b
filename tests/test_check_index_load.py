"""check's index loading (operations/check/structure.py load_indexes) fills the repository's
index natively from each file's text: every blob of every file is found where a normally
opened repository finds it, index files are counted once each in file order, and a damaged
file is reported and left out. Each pack's blobs are kept compactly, read natively from a
file of restic's shape and by the Python parser from any other, with the same result."""
import json
import os

import pytest

from restique import _index
from restique.backend.base import FileType
from restique.errors import IntegrityError
from restique.operations.check.indexed_packs import IndexedPacks
from restique.repository.compact_index import packs_of_index_file
from restique.operations.check.structure import load_indexes
from restique.repository.index import parse_index
from restique.repository.repository import init_repository, open_repository

from conftest import PASSWORD, run_restique

FAST_KDF = (1 << 10, 8, 1)


def _repo(tmp_path):
    path = tmp_path / "repo"
    init_repository(str(path), PASSWORD, kdf_params=FAST_KDF).close()
    source = tmp_path / "data"
    for generation in range(3):  # one index file per backup
        (source / "sub").mkdir(parents=True, exist_ok=True)
        (source / f"f{generation}.bin").write_bytes(os.urandom(200_000))
        (source / "sub" / "same.txt").write_bytes(b"same\n" * (generation + 1))
        run_restique(path, "backup", "-q", "data", cwd=tmp_path)
    return path


def test_loaded_index_finds_every_blob_as_an_opened_repository(tmp_path):
    path = _repo(tmp_path)
    with open_repository(str(path), PASSWORD) as expected:
        expected.load_index()
        blobs = sorted(expected.index.blobs())
        locations = [expected.index.lookup(t, i) for t, i in blobs]
        index_ids = sorted(expected.list_ids(FileType.INDEX))
    with open_repository(str(path), PASSWORD) as repo:
        problems = []
        packs = load_indexes(repo, problems.append)
        assert problems == []
        assert repo.index.index_ids == index_ids and len(index_ids) == 3
        assert sorted(repo.index.blobs()) == blobs
        assert [repo.index.lookup(t, i) for t, i in blobs] == locations
        assert sum(len(packs.entries(pack_id)) for pack_id in packs) == len(blobs)
        for pack_id in packs:  # the compact form gives back what the index files say
            for e in packs.entries(pack_id):
                loc = repo.index.lookup(e.type, e.id)
                assert (loc.pack_id, loc.offset, loc.length, loc.uncompressed_length) == (
                    pack_id, e.offset, e.length, e.uncompressed_length)


def test_damaged_index_file_is_reported_and_left_out(tmp_path):
    path = _repo(tmp_path)
    damaged = sorted(os.listdir(path / "index"))[0]
    with open(path / "index" / damaged, "r+b") as f:
        f.seek(40)
        byte = f.read(1)
        f.seek(40)
        f.write(bytes([byte[0] ^ 1]))
    with open_repository(str(path), PASSWORD) as repo:
        problems = []
        load_indexes(repo, problems.append)
        assert [p.kind for p in problems] == ["index_damaged"]
        assert damaged not in repo.index.index_ids and len(repo.index.index_ids) == 2


def _expected(text: bytes):
    """What the Python parser makes of an index file, a pack listed twice merged."""
    merged = {}
    for pack_id, entries in parse_index(text)[1]:
        merged.setdefault(pack_id, []).extend(entries)
    return {pack_id: sorted(entries) for pack_id, entries in merged.items()}


def _compact_read(text: bytes):
    found = {}
    for pack_id, compact in packs_of_index_file(text):
        assert pack_id not in found
        indexed = IndexedPacks()
        indexed.put(pack_id, compact)
        found[pack_id] = sorted(indexed.entries(pack_id))
    return found


PACK_A, PACK_B = "a" * 64, "b" * 64


def _blob(kind: str, n: int, offset: int, ulen=None) -> dict:
    blob = {"id": f"{n:064x}", "type": kind, "offset": offset, "length": 100 + n}
    if ulen is not None:
        blob["uncompressed_length"] = ulen
    return blob


def test_native_reading_of_real_index_files_matches_the_python_parser(tmp_path):
    path = _repo(tmp_path)
    with open_repository(str(path), PASSWORD) as repo:
        for index_id in repo.list_ids(FileType.INDEX):
            text = repo.load_unpacked(FileType.INDEX, index_id)
            assert _index.pack_entries(text) is not None  # restic's shape: read natively
            assert _compact_read(text) == _expected(text)


@pytest.mark.parametrize("text", [
    # restic's shape: a pack listed twice, an empty pack, uncompressed_length 0 and absent
    json.dumps({"packs": [{"id": PACK_A, "blobs": [_blob("data", 1, 0, 500), _blob("tree", 2, 101)]},
                          {"id": PACK_B, "blobs": []},
                          {"id": PACK_A, "blobs": [_blob("data", 3, 204, 0)]}]}).encode(),
    # other shapes the Python parser takes: the bare array, an escaped type, an extra key
    json.dumps([{"id": PACK_A, "blobs": [_blob("data", 1, 0)]}]).encode(),
    b'{"packs": [{"id": "' + PACK_A.encode() + b'", "blobs": [{"id": "' + b"1" * 64
    + b'", "type": "\\u0064ata", "offset": 0, "length": 5}]}]}',
    json.dumps({"packs": [{"id": PACK_A, "blobs": [dict(_blob("tree", 1, 0), extra=1)]}]}).encode(),
])
def test_every_shape_the_python_parser_takes_reads_the_same(text):
    assert _compact_read(text) == _expected(text)


@pytest.mark.parametrize("text", [
    b'{"packs": [{"id": "' + PACK_A.encode() + b'", "blobs": [{"id": "' + b"1" * 64
    + b'", "type": "file", "offset": 0, "length": 5}]}]}',
    b'{"packs": [{"id": "xyz", "blobs": []}]}',
    b'{"packs": [{"id": "' + PACK_A.encode() + b'", "blobs": [{"id": "' + b"1" * 64
    + b'", "type": "data", "offset": -1, "length": 5}]}]}',
    b'{"packs": [',
])
def test_a_malformed_index_file_is_an_integrity_error(text):
    with pytest.raises(IntegrityError):
        packs_of_index_file(text)
