"""Pack and index encoding, and blobs saved through the library checked by the real restic."""
import json
import os

import pytest

import restique
from restique.errors import IntegrityError
from restique.repository.crypto import MasterKey
from restique.repository.index import IndexFile, MasterIndex
from restique.repository.pack import PackWriter, header_length_from_tail, parse_header

from conftest import PASSWORD, run_restic


def _pack(key, blobs):
    writer = PackWriter(key)
    for kind, blob_id, sealed, ulen in blobs:
        writer.add(kind, blob_id, sealed, ulen)
    pack_id, parts, entries = writer.finish()
    return pack_id, b"".join(parts), entries


def test_pack_header_round_trip():
    key = MasterKey.random()
    blobs = [("data", "aa" * 32, key.seal(b"x" * 100), 0), ("data", "bb" * 32, key.seal(b"y" * 10), 400)]
    pack_id, data, entries = _pack(key, blobs)
    hlen = header_length_from_tail(data[-4:], len(data))
    parsed = parse_header(key, data[-4 - hlen:-4], len(data))
    assert parsed == entries
    assert parsed[1].offset == len(blobs[0][2]) and parsed[1].uncompressed_length == 400
    # plain entries are 37 bytes, compressed ones 41, plus the sealing overhead
    assert hlen == 37 + 41 + 32


def test_pack_id_hashed_while_blobs_arrive_is_the_files_hash():
    """Savers fold blobs into the pack's hash from several threads, some late (after the
    pack was finished): the id is still the SHA-256 of exactly the file's bytes."""
    import hashlib
    import threading

    key = MasterKey.random()
    writer = PackWriter(key)
    lock = threading.Lock()

    def saver(seed):
        for i in range(40):
            with lock:
                writer.add("data", f"{seed:02x}{i:02x}" * 16, key.seal(os.urandom(100 + seed * 7 + i)))
            writer.hash_added()

    threads = [threading.Thread(target=saver, args=(n,)) for n in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    pack_id, parts, entries = writer.finish()
    writer.hash_added()  # a late saver after the pack went: no effect
    data = b"".join(parts)
    assert pack_id == hashlib.sha256(data).hexdigest()
    hlen = header_length_from_tail(data[-4:], len(data))
    assert parse_header(key, data[-4 - hlen:-4], len(data)) == entries


def test_damaged_pack_header_is_an_integrity_error():
    key = MasterKey.random()
    _, data, _ = _pack(key, [("tree", "cc" * 32, key.seal(b"{}"), 0)])
    with pytest.raises(IntegrityError):
        header_length_from_tail(b"\xff\xff\xff\x7f", len(data))
    damaged = bytearray(data)
    damaged[-10] ^= 1
    hlen = header_length_from_tail(data[-4:], len(data))
    with pytest.raises(IntegrityError):
        parse_header(key, bytes(damaged[-4 - hlen:-4]), len(data))


def test_index_reads_all_layouts():
    blob = {"id": "dd" * 32, "type": "data", "offset": 0, "length": 50}
    old = json.dumps([{"id": "ee" * 32, "blobs": [blob]}]).encode()
    new = json.dumps({"supersedes": ["ff" * 32], "packs": [{"id": "ee" * 32, "blobs": [dict(blob, uncompressed_length=99)]}]}).encode()
    for raw in (old, new):
        idx = IndexFile.parse(raw)
        master = MasterIndex()
        master.add_index_file(None, idx)
        loc = master.lookup("data", "dd" * 32)
        assert loc.pack_id == "ee" * 32 and loc.length == 50
    assert IndexFile.parse(new).supersedes == ["ff" * 32]
    with pytest.raises(IntegrityError):
        IndexFile.parse(b'{"packs":[{"id":"x","blobs":[{"id":"y","type":"bogus","offset":0,"length":1}]}]}')


def test_index_json_matches_restic_field_order():
    idx = IndexFile()
    from restique.repository.pack import PackEntry

    idx.add_pack("ab" * 32, [PackEntry("tree", "cd" * 32, 0, 100, 300), PackEntry("tree", "ef" * 32, 100, 50)])
    text = json.dumps(idx.to_json(), separators=(",", ":"))
    assert text.startswith('{"packs":[{"id":"' + "ab" * 32 + '","blobs":[{"id":"' + "cd" * 32)
    assert '"offset":100,"length":50}' in text  # uncompressed_length omitted when 0


@pytest.mark.parametrize("version", [1, 2])
def test_blobs_saved_by_library_pass_restic_check_read_data(tmp_path, version):
    repo_path = tmp_path / "repo"
    repo = restique.init_repository(str(repo_path), PASSWORD, version=version, pack_size=4)
    rnd = os.urandom(9 * 1024 * 1024)
    saved = {}
    for i in range(12):
        data = rnd[i * 700_000:(i + 1) * 700_000] if i % 3 else (b"compressible %d " % i) * 40_000
        blob_id, new = repo.save_blob("data", data)
        assert new
        saved[blob_id] = data
    tree = json.dumps({"nodes": []}).encode() + b"\n"
    tree_id, _ = repo.save_blob("tree", tree)
    assert repo.save_blob("data", saved[next(iter(saved))]) == (next(iter(saved)), False)
    repo.flush()
    repo.close()

    out = run_restic(repo_path, "check", "--read-data")
    assert b"no errors were found" in out.stdout
    listed = run_restic(repo_path, "list", "blobs").stdout.decode().split("\n")
    assert sorted(l for l in listed if l) == sorted([f"data {i}" for i in saved] + [f"tree {tree_id}"])
    for blob_id in list(saved)[:3]:
        assert run_restic(repo_path, "cat", "blob", blob_id).stdout == saved[blob_id]
    # more than one data pack: 4 MiB target, ~5.6 MiB stored; trees in their own pack
    assert len(run_restic(repo_path, "list", "packs").stdout.split()) >= 3

    again = restique.open_repository(str(repo_path), PASSWORD)
    for blob_id, data in saved.items():
        assert again.load_blob("data", blob_id) == data
    again.close()


@pytest.mark.parametrize("mode", ["off", "auto"])
def test_format2_trees_are_always_compressed_as_restic_stores_them(tmp_path, mode):
    """restic compresses every tree of format 2, even a tiny one and with --compression off;
    its prune repacks any pack holding an uncompressed tree."""
    repo = restique.init_repository(str(tmp_path / "repo"), PASSWORD, version=2, compression_mode=mode,
                                    kdf_params=(1024, 8, 1))
    tree_id, _ = repo.save_blob("tree", b'{"nodes":[]}\n')
    data_id, _ = repo.save_blob("data", os.urandom(1000))
    repo.flush()
    assert repo.index.lookup("tree", tree_id).uncompressed_length == len(b'{"nodes":[]}\n')
    assert repo.index.lookup("data", data_id).uncompressed_length == 0  # incompressible: stored as is
    assert repo.load_blob("tree", tree_id) == b'{"nodes":[]}\n'
    repo.close()
