"""A directory's small files are stored as one batch: one native call compresses every new
blob (the same level choice and decode check as prepare), one lock per pack places them, one
native call seals them. Each blob still comes out as store would make it: repeats and known
blobs are stored once, a batch that fills a pack closes it and goes on in the next one, a
blob that could not be sealed fails only its own file and keeps its pack from being stored,
a dry run writes nothing, and restic reads what is written this way."""
import json
import os
import random
import threading

import pytest

import restique
from conftest import PASSWORD, run_restic, run_restique
from restique import _seal
from restique.backend import FileType
from restique.backend.memory import MemoryBackend
from restique.errors import IntegrityError
from restique.model.ids import hash_id
from restique.repository import blob_store
from restique.repository.blob_store import BlobStore
from restique.repository.crypto import MasterKey
from restique.repository.index import MasterIndex
from restique.repository.pack import PackWriter
from restique.repository.pack_buffers import PackBuffers

KEY = MasterKey.random()
KEYS = (KEY.encrypt, KEY.mac_k, KEY.mac_r)
MiB = 1 << 20


def mixed_blobs(count: int, seed: int):
    """Small-file contents: half random, half text that compresses."""
    rng = random.Random(seed)
    return [rng.randbytes(rng.randrange(1, 90_000)) if i % 2 else b"small file %d " % rng.randrange(10**6)
            * rng.randrange(1, 6000) for i in range(count)]


def store_of(backend, pack_size=256 * 1024, level=3):
    def save_file(ftype, data):
        name = hash_id(data)
        backend.save(ftype, name, data)
        return name

    return BlobStore(backend, KEY, MasterIndex(), level, save_file, pack_size=pack_size)


def batch(datas):
    return [(hash_id(data), data) for data in datas]


def test_a_prepared_batch_is_what_prepare_gives_each_blob_and_seals_to_its_input():
    datas = mixed_blobs(40, 1) + [b"", b"x", bytes(300_000), random.Random(2).randbytes(400_000)]
    levels = [0 if i % 7 == 3 else 2 for i in range(len(datas))]
    prepared, failures = _seal.prepare_batch(datas, levels)
    assert failures == []
    for data, level, (payload, ulen, packed) in zip(datas, levels, prepared):
        assert (payload, ulen) == _seal.prepare(data, level)
        assert (packed is not None) == (ulen != 0) and (packed is None or len(packed) == payload)
    outs = [bytearray(payload + 32) for payload, _, _ in prepared]
    sources = [data if packed is None else packed for data, (_, _, packed) in zip(datas, prepared)]
    assert _seal.seal_batch(*KEYS, list(zip(sources, outs))) == []
    for data, out, (_, ulen, _) in zip(datas, outs, prepared):
        assert KEY.open(bytes(out), ulen) == data
    assert len({bytes(out[:16]) for out in outs}) == len(outs)  # every blob has its own IV


def test_small_files_are_read_by_str_paths_as_by_their_bytes(tmp_path):
    path = os.fsencode(tmp_path) + b"/caf\xe9"  # not UTF-8: a surrogate escape in the str
    with open(path, "wb") as f:
        f.write(b"content")
    st = os.stat(path)
    by_str, by_bytes = _seal.read_small_files([(os.fsdecode(path), st.st_ino, 7), (path, st.st_ino, 7)])
    assert by_str == by_bytes and by_str[:3] == (0, "", b"content")


def test_seal_batch_needs_each_place_to_be_the_payloads_length_plus_32():
    with pytest.raises(ValueError):
        _seal.seal_batch(*KEYS, [(b"abc", bytearray(35)), (b"abcd", bytearray(35))])
    with pytest.raises(ValueError):
        _seal.prepare_batch([b"abc"], [])


def test_places_reserved_together_stop_at_the_limit_and_hash_to_the_files_id():
    buffers = PackBuffers(1, MiB)
    writer = PackWriter(KEY, buffers.take())
    datas = mixed_blobs(30, 8) + [random.Random(9).randbytes(2 * MiB)] + mixed_blobs(30, 10)
    prepared, _ = _seal.prepare_batch(datas, [0] * len(datas))
    blobs = [(hash_id(data), payload + 32, 0, data) for data, (payload, _, _) in zip(datas, prepared)]
    first = writer.reserve_many("data", blobs[:10], 300_000)
    assert 1 <= len(first) < 10 and writer.size >= 300_000
    assert writer.size - blobs[len(first) - 1][1] < 300_000  # the blob that reached the limit is the last
    rest = writer.reserve_many("data", blobs[len(first):], 1 << 40)
    assert len(first) + len(rest) == len(blobs)  # the 2 MiB blob got a place of its own, the next ones the buffer
    places = first + rest
    halves = [list(range(len(places)))[n::2] for n in (1, 0)]  # filled out of order
    for half in halves:
        assert _seal.seal_batch(*KEYS, [(blobs[i][3], places[i][1]) for i in half]) == []
        writer.filled_all([places[i][0] for i in half])
        writer.hash_added()
    pack_id, parts, entries = writer.finish()
    content = b"".join(parts)
    assert pack_id == hash_id(content)
    for data, e in zip(datas, entries):
        assert KEY.open(content[e.offset:e.offset + e.length]) == data
    buffers.give_back(writer.take_buffer())


def test_repeats_and_known_blobs_are_stored_once():
    store = store_of(MemoryBackend())
    known = b"stored before " * 100
    store.store("data", hash_id(known), known)
    datas = mixed_blobs(10, 3)
    results = store.store_batch(batch(datas + [known, datas[0], datas[4]]))
    assert [r[0] for r in results] == [True] * 10 + [False] * 3
    assert all(stored > 0 for _, stored in results[:10]) and results[10:] == [(False, 0)] * 3
    assert results[1][1] == len(datas[1]) + 32  # random: stored as is
    assert results[0][1] < len(datas[0])  # text: compressed
    assert store.store_batch(batch(datas[:3])) == [(False, 0)] * 3
    store.flush()
    store.close()
    for data in datas + [known]:
        assert store.load("data", hash_id(data)) == data


def test_batches_that_fill_packs_from_two_threads_store_every_blob_in_whole_packs():
    backend = MemoryBackend()
    store = store_of(backend)
    parts = [mixed_blobs(64, seed) for seed in range(10, 18)]  # ~1.5 MiB a batch: several packs each

    def saver(batches):
        for datas in batches:
            assert all(new for new, _ in store.store_batch(batch(datas)))

    threads = [threading.Thread(target=saver, args=(parts[n::2],)) for n in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    store.flush()
    store.close()
    assert store._pack_buffers.in_use() == 0
    packs = dict(backend.list(FileType.PACK))
    assert len(packs) >= 20
    for name in packs:
        assert hash_id(backend.load(FileType.PACK, name)) == name
    for datas in parts:
        for data in datas:
            assert store.load("data", hash_id(data)) == data


def test_a_dry_run_counts_a_batch_and_writes_nothing():
    backend = MemoryBackend()
    store = store_of(backend)
    store.dry_run = True
    datas = mixed_blobs(20, 4)
    results = store.store_batch(batch(datas + datas[:2]))
    assert [new for new, _ in results] == [True] * 20 + [False] * 2
    assert store.store_batch(batch(datas[5:7])) == [(False, 0)] * 2
    store.flush()
    store.close()
    assert list(backend.list(FileType.PACK)) == []


def test_a_blob_that_cannot_be_sealed_fails_alone_and_its_pack_is_not_stored(monkeypatch):
    backend = MemoryBackend()
    store = store_of(backend, pack_size=4 * MiB)
    real = _seal.seal_batch

    def failing_second(*args):
        failed = real(*args)
        return failed + [1]

    monkeypatch.setattr(blob_store._seal, "seal_batch", failing_second)
    datas = mixed_blobs(5, 5)
    results = store.store_batch(batch(datas))
    assert isinstance(results[1], IntegrityError) and "sealing failed" in str(results[1])
    assert all(r[0] for i, r in enumerate(results) if i != 1)
    with pytest.raises(IntegrityError, match="could not be sealed"):
        store.flush()
    store.close()
    assert list(backend.list(FileType.PACK)) == []
    assert store._pack_buffers.in_use() == 0


def test_a_blob_whose_compression_fails_fails_with_its_repeats_only(monkeypatch):
    store = store_of(MemoryBackend())
    real = _seal.prepare_batch

    def failing_first(datas, levels):
        prepared, _ = real(datas, levels)
        return [None] + prepared[1:], [(0, "sealed blob did not decode to its content")]

    monkeypatch.setattr(blob_store._seal, "prepare_batch", failing_first)
    datas = mixed_blobs(4, 6)
    results = store.store_batch(batch(datas + [datas[0]]))
    assert isinstance(results[0], IntegrityError) and results[4] is results[0]
    assert all(r[0] for r in results[1:4])
    store.flush()
    store.close()
    assert not store.known("data", hash_id(datas[0]))
    for data in datas[1:]:
        assert store.load("data", hash_id(data)) == data


def test_restic_reads_blobs_stored_in_batches(tmp_path):
    repo_path = tmp_path / "repo"
    repo = restique.init_repository(str(repo_path), PASSWORD, version=2, pack_size=4)
    batches = [mixed_blobs(64, seed) for seed in range(20, 26)]
    for datas in batches:
        assert all(new for new, _ in repo.blobs.store_batch(batch(datas)))
    repo.flush()
    repo.close()
    assert b"no errors were found" in run_restic(repo_path, "check", "--read-data").stdout
    assert len(run_restic(repo_path, "list", "packs").stdout.split()) >= 2
    for data in batches[0][:3] + batches[-1][-3:]:
        assert run_restic(repo_path, "cat", "blob", hash_id(data)).stdout == data


def test_a_backup_counts_a_repeated_small_file_once(tmp_path):
    tree = tmp_path / "tree"
    tree.mkdir()
    datas = mixed_blobs(30, 7)
    for i, data in enumerate(datas * 2):  # each content twice in one directory: one batch
        (tree / f"f{i:02}").write_bytes(data)
    (tree / "empty").write_bytes(b"")
    repo = tmp_path / "repo"
    run_restique(repo, "init")
    out = run_restique(repo, "backup", "--json", str(tree)).stdout
    summary = next(m for m in map(json.loads, out.splitlines()) if m["message_type"] == "summary")
    assert summary["files_new"] == 61 and summary["data_blobs"] == 30
    assert summary["total_bytes_processed"] == 2 * sum(map(len, datas))
    assert b"no errors were found" in run_restic(repo, "check", "--read-data").stdout
    restored = tmp_path / "restored"
    run_restic(repo, "restore", "latest", "--target", str(restored))
    for i, data in enumerate(datas * 2):
        assert (restored / str(tree).lstrip("/") / f"f{i:02}").read_bytes() == data
