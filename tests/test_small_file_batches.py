"""A directory's small files are read in batches: each file's node goes to its slot in the
directory's job, and the directory waits for the batch as a whole. A batch that never runs
(the backup was cancelled before a reader took it) leaves its directory open, so that a
checkpoint still sees the directory unfinished instead of a tree missing those files."""
import hashlib
import os
import threading

from restique.model.node import decode_tree
from restique.operations.archiver.file_reader import FileReader, PendingFile
from restique.operations.archiver.progress import BackupProgress
from restique.operations.archiver.small_files import SmallFileBatches
from restique.operations.archiver.tasks import Completion, Gate
from restique.operations.archiver.tree_saver import TreeSaver
from restique.operations.fs_metadata import node_from_fields


class HeldPool:
    """A reader pool whose tasks run only when the test says so."""

    def __init__(self):
        self.tasks = []

    def submit(self, fn, *args) -> Completion:
        done = Completion()
        self.tasks.append((done, fn, args))
        return done

    def run_all(self) -> None:
        for done, fn, args in self.tasks:
            done.complete(fn(*args))
        self.tasks = []


class Saver:
    def __init__(self):
        self.cancelled = threading.Event()
        self.blobs = {}

    def save_blob(self, data, blob_id: str = ""):
        self.blobs[blob_id] = bytes(data)
        return blob_id, len(data), len(data)

    def save_blobs(self, blobs):
        return [self.save_blob(data, blob_id)[1:] for blob_id, data in blobs]


class Blobs:
    def __init__(self):
        self.trees = {}

    def save(self, blob_type, raw):
        tree_id = hashlib.sha256(raw).hexdigest()
        self.trees[tree_id] = raw
        return tree_id, True, len(raw)


class Repo:
    def __init__(self):
        self.blobs = Blobs()


def batch_dir(tmp_path, files: int):
    """A directory job with `files` small files collected into batches (not run yet)."""
    repo, saver, pool, progress = Repo(), Saver(), HeldPool(), BackupProgress()
    trees = TreeSaver(repo, progress)
    batches = SmallFileBatches(FileReader(saver, progress), saver, pool, Gate(10_000, 5_000), progress, trees)
    folder = tmp_path / "d"
    folder.mkdir()
    st = os.lstat(folder)
    job = trees.open_dir(node_from_fields("d", st, None, None), "/d", None)
    outer = batches.start_dir(job)
    for i in range(files):
        path = folder / f"f{i}"
        path.write_bytes(b"content %d" % i * (i + 1))
        fst = os.lstat(path)
        batches.add(PendingFile(str(path), fst, node_from_fields(path.name, fst, None, None), f"/d/f{i}", None))
    batches.end_dir(outer)
    trees.release_dir(job)
    return repo, saver, pool, trees, job


def test_directory_waits_for_its_batches_and_gets_every_file(tmp_path):
    repo, saver, pool, trees, job = batch_dir(tmp_path, 70)  # two batches of at most 64 files
    assert len(pool.tasks) == 2
    assert job.done.value_if_done() is None and "/d" in trees.open_jobs
    pool.run_all()
    node = job.done.result()
    assert node.subtree in repo.blobs.trees and "/d" not in trees.open_jobs
    saved = decode_tree(repo.blobs.trees[node.subtree])
    assert [n.name for n in saved] == sorted(f"f{i}" for i in range(70))
    for n in saved:
        i = int(n.name[1:])
        assert n.size == len(b"content %d" % i * (i + 1))
        assert saver.blobs[n.content[0]] == b"content %d" % i * (i + 1)


def test_a_batch_that_never_runs_leaves_its_directory_open(tmp_path):
    repo, _saver, pool, trees, job = batch_dir(tmp_path, 70)
    done, fn, args = pool.tasks[0]
    done.complete(fn(*args))  # the first batch ran; the second is never taken
    assert job.done.value_if_done() is None and "/d" in trees.open_jobs
    assert not repo.blobs.trees
    finished = [c.value_if_done() for c in job.children if c.value_if_done() is not None]
    assert len(finished) == 64  # what a checkpoint records of the directory
