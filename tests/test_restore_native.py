"""restique._seal.restore_range: the restorer's native write path (check, decrypt, decompress,
hash and write every blob of a pack range). Each blob must be verified before any byte of it
reaches a file, and every failure must come back to the caller."""
import errno
import hashlib
import os
import threading

import pytest

from restique import _seal
from restique.repository.crypto import MasterKey

KEY = MasterKey.random()


def _range(*plains, level=0, key=KEY):
    """A pack range holding plains sealed one after the other: (range, [(start, length, ulen, id)])."""
    data, blobs = bytearray(), []
    for plain in plains:
        sealed, ulen = key.seal_blob(plain, level)
        blobs.append((len(data), len(sealed), ulen, hashlib.sha256(plain).digest()))
        data += sealed
    return bytes(data), blobs


def _restore(data, blobs, dests, key=KEY):
    calls = [(*blob, d) for blob, d in zip(blobs, dests)]
    return _seal.restore_range(key.encrypt, key.mac_k, key.mac_r, data, calls)


@pytest.fixture
def files(tmp_path):
    opened = []

    def open_file(name, size=0):
        fd = os.open(tmp_path / name, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o600)
        if size:
            os.ftruncate(fd, size)
        opened.append(fd)
        return fd

    yield open_file
    for fd in opened:
        os.close(fd)


def _read(fd):
    return os.pread(fd, 1 << 24, 0)


@pytest.mark.parametrize("level", [0, 3], ids=["uncompressed", "compressed"])
def test_blobs_written_to_every_destination(files, level):
    a, b = b"alpha " * 5000, os.urandom(70000)
    data, blobs = _range(a, b, level=level)
    assert (blobs[0][2] != 0) == bool(level)  # text compresses, so level 3 stores it compressed
    one, two = files("one"), files("two")
    # a in one at 0 and again after b; b in one between them and at the start of two
    failures = _restore(data, blobs, [[(one, 0), (one, len(a) + len(b))], [(one, len(a)), (two, 0)]])
    assert failures == []
    assert _read(one) == a + b + a
    assert _read(two) == b


def test_damaged_blob_is_reported_and_never_written(files):
    good, bad = b"good" * 1000, b"bad!" * 1000
    data, blobs = _range(good, bad, good + b"x")
    damaged = bytearray(data)
    damaged[blobs[1][0] + 20] ^= 1  # one bit of the second blob's ciphertext
    fds = [files(n) for n in "abc"]
    failures = _restore(bytes(damaged), blobs, [[(fd, 0)] for fd in fds])
    assert failures == [(1, -1, 0, "ciphertext verification failed")]
    assert [_read(fd) for fd in fds] == [good, b"", good + b"x"]


def test_wrong_key_fails_every_blob(files):
    data, blobs = _range(b"one", b"two")
    fd = files("f")
    failures = _restore(data, blobs, [[(fd, 0)], [(fd, 3)]], key=MasterKey.random())
    assert [f[:3] for f in failures] == [(0, -1, 0), (1, -1, 0)]
    assert _read(fd) == b""


def test_content_checked_against_its_id(files):
    """A blob that decrypts (the key is right) but is not the one the index names."""
    data, blobs = _range(b"what the pack holds")
    wrong = [(blobs[0][0], blobs[0][1], blobs[0][2], hashlib.sha256(b"what the index says").digest())]
    fd = files("f")
    assert _restore(data, wrong, [[(fd, 0)]]) == [(0, -1, 0, "content does not match its id")]
    assert _read(fd) == b""


def test_damaged_compressed_length(files):
    plain = b"compress me " * 1000
    data, blobs = _range(plain, level=3)
    start, length, ulen, blob_id = blobs[0]
    fd = files("f")
    assert _restore(data, [(start, length, ulen + 1, blob_id)], [[(fd, 0)]]) == [
        (0, -1, 0, "decompression failed or gave a different length than recorded")]
    assert _restore(data, [(start, length, length << 16, blob_id)], [[(fd, 0)]]) == [
        (0, -1, 0, "uncompressed length is impossible")]
    assert _read(fd) == b""


def test_blob_shorter_than_its_overhead(files):
    data, blobs = _range(b"x")
    fd = files("f")
    short = [(0, 31, 0, blobs[0][3])]
    assert _restore(data, short, [[(fd, 0)]]) == [(0, -1, 0, "ciphertext verification failed")]


def test_blob_outside_the_range_is_refused():
    data, blobs = _range(b"abc")
    start, length, ulen, blob_id = blobs[0]
    with pytest.raises(ValueError):
        _restore(data, [(start + 1, length, ulen, blob_id)], [[]])
    with pytest.raises(ValueError):
        _restore(data, [(start, length, ulen, blob_id[:31])], [[]])


def test_write_failure_names_the_destination(files, tmp_path):
    data, blobs = _range(b"payload")
    good = files("good")
    (tmp_path / "ro").write_bytes(b"")
    read_only = os.open(tmp_path / "ro", os.O_RDONLY)
    try:
        failures = _restore(data, blobs, [[(good, 0), (read_only, 0)]])
    finally:
        os.close(read_only)
    assert failures == [(0, 1, errno.EBADF, "write")]
    assert _read(good) == b"payload"


def test_skipped_destination(files):
    """fd -1: a file that already failed gets nothing, the others still do."""
    data, blobs = _range(b"payload")
    fd = files("f")
    assert _restore(data, blobs, [[(-1, 0), (fd, 2)]]) == []
    assert _read(fd) == b"\0\0payload"


def test_sparse_zero_blob_left_as_hole(files):
    zeros, text = bytes(1 << 20), b"data" * 1024
    data, blobs = _range(zeros, text)
    sparse, dense = files("sparse", 2 * len(zeros) + len(text)), files("dense", len(zeros) + len(text))
    failures = _restore(data, blobs, [
        [(sparse, 0, True), (sparse, len(zeros), True), (dense, 0, False)],
        [(sparse, 2 * len(zeros), True), (dense, len(zeros))]])
    assert failures == []
    assert _read(sparse) == zeros + zeros + text
    assert _read(dense) == zeros + text
    assert os.fstat(sparse).st_blocks * 512 < len(zeros)  # the zeros are holes
    assert os.fstat(dense).st_blocks * 512 >= len(zeros)  # hole_ok False: written


def test_empty_blob(files):
    data, blobs = _range(b"")
    fd = files("f")
    assert _restore(data, blobs, [[(fd, 0, True), (fd, 0)]]) == []
    assert _read(fd) == b""


def test_threads_restore_in_parallel(files):
    """The call gives up the GIL: two threads writing disjoint files both finish correctly."""
    plains = [os.urandom(50000) for _ in range(40)]
    data, blobs = _range(*plains)
    fds = [files(f"t{i}") for i in range(2)]
    results = [None, None]

    def work(n):
        results[n] = _restore(data, blobs, [[(fds[n], 50000 * i)] for i in range(40)])

    threads = [threading.Thread(target=work, args=(n,)) for n in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == [[], []]
    assert _read(fds[0]) == _read(fds[1]) == b"".join(plains)


def test_restore_loads_each_tree_once(restic_repo, tmp_path, monkeypatch):
    """The finish step replays the plan walk: no tree is loaded (and decoded) twice, and the
    metadata it sets is still every entry's (directories after their content)."""
    from conftest import PASSWORD, run_restic
    from restique.operations.restorer import RestoreOptions, restore
    from restique.operations.restorer.traverse import TreeTraversal
    from restique.operations.snapshot_lookup import find_snapshot
    from restique.repository.repository import open_repository

    src = tmp_path / "src"
    for d in ("a", "a/b", "c"):
        (src / d).mkdir(parents=True)
        for i in range(3):
            (src / d / f"f{i}").write_bytes(d.encode() * (i + 1))
    os.symlink("f0", src / "c" / "link")
    os.chmod(src / "a" / "f1", 0o640)
    os.utime(src / "a" / "b", ns=(1_600_000_000_123_456_789, 1_500_000_000_987_654_321))
    os.utime(src / "c" / "link", ns=(1_400_000_000_000_000_001, 1_400_000_000_000_000_002),
             follow_symlinks=False)
    run_restic(restic_repo, "backup", str(src), cwd=str(tmp_path))
    repo = open_repository(str(restic_repo), PASSWORD)
    snapshot, _ = find_snapshot(repo, "latest")
    loads = []
    load_blob = repo.load_blob

    def counting(kind, blob_id, *args, **kwargs):
        if kind == "tree":
            loads.append(blob_id)
        return load_blob(kind, blob_id, *args, **kwargs)

    repo.load_blob = counting
    walks = []
    walk = TreeTraversal.walk
    monkeypatch.setattr(TreeTraversal, "walk", lambda self, *a: walks.append(1) or walk(self, *a))
    target = tmp_path / "out"
    stats = restore(repo, snapshot.tree, RestoreOptions(str(target)))
    assert not stats.errors
    assert len(loads) == len(set(loads)) and len(walks) == 1
    out = target / str(src).lstrip("/")
    for rel in ("a", "a/b", "c", "a/f1", "c/f2", "c/link"):
        want, got = os.lstat(src / rel), os.lstat(out / rel)
        assert (got.st_mode, got.st_mtime_ns, got.st_uid, got.st_gid) == \
            (want.st_mode, want.st_mtime_ns, want.st_uid, want.st_gid), rel
    assert os.readlink(out / "c" / "link") == "f0"


def test_ids_checked_two_at_a_time_across_windows(files):
    """Blob ids are hashed two at a time, in windows of about a MiB of plaintext: lengths
    around SHA-256's block and padding sizes, windows of one large blob and of many small
    ones, and damage anywhere in a window leave every other blob written right."""
    rng = __import__("random").Random(7)
    lengths = [0, 1, 55, 56, 57, 63, 64, 65, 119, 120, 128, 129, 3 << 20, 700_000, 400_000, 64 << 10]
    lengths += [rng.randrange(0, 5000) for _ in range(60)]
    plains = [os.urandom(n) for n in lengths]
    data, blobs = _range(*plains)
    bad = {5, 13, 40}  # a short one, the one right after the largest, one among many small ones
    blobs = [b[:3] + (hashlib.sha256(b"other").digest(),) if i in bad else b for i, b in enumerate(blobs)]
    fds = [files(f"f{i}") for i in range(len(plains))]
    failures = _restore(data, blobs, [[(fd, 0)] for fd in fds])
    assert failures == [(i, -1, 0, "content does not match its id") for i in sorted(bad)]
    for i, (fd, plain) in enumerate(zip(fds, plains)):
        assert _read(fd) == (b"" if i in bad else plain)
