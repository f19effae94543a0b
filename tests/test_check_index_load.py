"""check's index loading (operations/check/structure.py load_indexes) fills the repository's
index natively from each file's text: every blob of every file is found where a normally
opened repository finds it, index files are counted once each in file order, and a damaged
file is reported and left out."""
import os

from restique.backend.base import FileType
from restique.operations.check.structure import load_indexes
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
        assert sum(len(entries) for entries in packs.values()) == len(blobs)


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
