"""restique._seal.read_small_files: the batch reader behind backups of small files."""
import errno
import hashlib
import os

from restique import _seal


def test_reads_hashes_and_reports_each_file_on_its_own(tmp_path):
    files = {"a": b"hello", "empty": b"", "bigger": os.urandom(300_000)}
    for name, data in files.items():
        (tmp_path / name).write_bytes(data)
    items = [(os.fsencode(tmp_path / n), os.lstat(tmp_path / n).st_ino, len(d)) for n, d in files.items()]
    grown = tmp_path / "grown"
    grown.write_bytes(b"1234")
    items.append((os.fsencode(grown), os.lstat(grown).st_ino, 2))  # it was 2 bytes at lstat time
    replaced = tmp_path / "replaced"
    replaced.write_bytes(b"x")
    items.append((os.fsencode(replaced), os.lstat(replaced).st_ino + 1, 1))
    items.append((os.fsencode(tmp_path / "missing"), 1, 0))
    os.symlink("a", tmp_path / "link")
    items.append((os.fsencode(tmp_path / "link"), os.lstat(tmp_path / "link").st_ino, 1))

    results = _seal.read_small_files(items)
    for (status, op, data, digest), (name, content) in zip(results, files.items()):
        assert (status, data, digest) == (0, content, hashlib.sha256(content).digest()), name
    assert results[3][0] == -2  # grew past the size seen: the caller reads it the general way
    assert results[4][0] == -1  # not the file lstat saw
    assert results[5][:2] == (errno.ENOENT, "open")
    assert results[6][:2] == (errno.ELOOP, "open")  # never follows a symlink


def test_a_file_swapped_for_a_fifo_is_refused_without_blocking(tmp_path):
    """Nobody writes to the FIFO: a blocking open would wait for ever (the test's timeout)."""
    regular = tmp_path / "was-a-file"
    regular.write_bytes(b"x")
    ino = os.lstat(regular).st_ino
    regular.unlink()
    os.mkfifo(regular)
    [(status, _, data, _)] = _seal.read_small_files([(os.fsencode(regular), ino, 1)])
    assert status == -1 and not data


def test_a_batch_is_hashed_two_files_at_a_time_with_failures_between(tmp_path):
    """The files read whole are hashed together after the batch is read: lengths around
    SHA-256's block and padding sizes, with files that failed in between, keep their own ids."""
    lengths = [0, 1, 55, 56, 57, 63, 64, 65, 119, 120, 128, 129, 5000, 70_000, 3]
    items, want = [], []
    for i, n in enumerate(lengths):
        path = tmp_path / f"f{i}"
        data = os.urandom(n)
        path.write_bytes(data)
        items.append((os.fsencode(path), os.lstat(path).st_ino, n))
        want.append((0, data, hashlib.sha256(data).digest()))
        if i % 4 == 1:
            items.append((os.fsencode(tmp_path / f"missing{i}"), 1, 0))
            want.append(None)
    results = _seal.read_small_files(items)
    for got, expected in zip(results, want):
        if expected is None:
            assert got[:2] == (errno.ENOENT, "open")
        else:
            assert (got[0], got[2], got[3]) == expected
