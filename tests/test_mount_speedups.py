"""The shortcuts that make mount and serve fast keep their answers exact: reads served from
blobs already in the cache (without a thread), tree times read from a cached second, and the
garbage collector settings used while a mount is served."""
import dataclasses
import gc
import os
import random

import pytest

from conftest import PASSWORD, run_restic, run_restique

from restique.model.gotime import GoTime
from restique.operations.snapshot_fs import SnapshotFS, SnapshotFSOptions, entries
from restique.repository.repository import open_repository

FILE_SIZE = 16 * 1024 * 1024 + 12345  # several blobs with restic's chunker (512 KiB to 8 MiB, 1 MiB on average; 5 MiB was cut in 2 now and then)


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    base = tmp_path_factory.mktemp("speedups")
    source = base / "src"
    source.mkdir()
    data = random.Random(3).randbytes(FILE_SIZE)
    (source / "big.bin").write_bytes(data)
    repo = base / "repo"
    run_restique(repo, "init")
    run_restic(repo, "backup", str(source))
    fs = SnapshotFS(open_repository(str(repo), PASSWORD), SnapshotFSOptions())
    top = "/ids/" + fs.list_dir("/ids")[0].name
    yield fs, top + str(source / "big.bin"), data
    fs.close()


def test_cached_reads_wait_for_nothing_and_match_the_file(world):
    fs, path, data = world
    reader = fs.open_reader(path)
    assert len(reader.blob_ids) > 2
    assert reader.read_cached(0, 4096) is None  # the first blob was never loaded
    assert fs.blobs.cached(reader.blob_ids[0]) is None  # and asking did not load it
    assert reader.read(0, len(data)) == data
    rnd = random.Random(5)
    spans = [(0, 131072), (len(data) - 100, 4096), (len(data), 10), (len(data) + 5, 10)]
    spans += [(start, 131072) for start in reader.starts[1:]]  # reads that begin on a blob boundary
    spans += [(start - 17, 40) for start in reader.starts[1:]]  # and reads across one
    spans += [(rnd.randrange(len(data)), rnd.randrange(1, 300_000)) for _ in range(50)]
    for offset, size in spans:
        assert reader.read_cached(offset, size) == data[offset:offset + size], (offset, size)
        assert reader.read(offset, size) == data[offset:offset + size], (offset, size)


def test_cached_read_misses_a_blob_not_kept(world):
    fs, path, data = world
    small = SnapshotFS(fs.repo, SnapshotFSOptions(cache_bytes=1024))  # keeps no blob
    try:
        reader = small.open_reader(path)
        assert reader.read(0, len(data)) == data
        assert reader.read_cached(0, 10) is None
        assert reader.read_cached(len(data) - 10, 10) is None
        assert reader.read(len(data) - 10, 10) == data[-10:]
    finally:
        small.close()


def _random_time_text(rnd: random.Random) -> str:
    zone = rnd.choice(["Z", "+02:00", "-05:30", "+00:00", "+14:00"])
    fraction = str(rnd.randrange(10 ** 9)).rjust(9, "0")[:rnd.randint(1, 9)]
    return "%04d-%02d-%02dT%02d:%02d:%02d.%s%s" % (
        rnd.randint(1970, 2100), rnd.randint(1, 12), rnd.randint(1, 28), rnd.randint(0, 23),
        rnd.randint(0, 59), rnd.choice([0, 1, 59]), fraction, zone)


def test_entry_times_equal_the_full_parser():
    rnd = random.Random(11)
    texts = [_random_time_text(rnd) for _ in range(3000)]
    texts += [t[:-1] + "0Z" if t.endswith("Z") else t for t in texts[:200]]  # same second, other fraction
    texts += ["2020-01-01T00:00:00Z", "2020-01-01T10:00:00+01:00", "2020-01-01T1x:00:00.5Z",
              "2020-02-30T00:00:00.5Z", "", "not a time"]
    for text in texts:
        try:
            want = GoTime.parse(text).unix_ns
        except ValueError:
            want = 0
        assert entries.node_time_ns(text) == want, text


def test_serving_collects_less_and_restores_the_collector():
    from restique.mount import runner

    before = gc.get_threshold()
    with runner._collections_for_serving():
        assert gc.get_threshold()[0] == runner.YOUNG_COLLECTION_THRESHOLD
        assert gc.get_freeze_count() > 0
    assert gc.get_threshold() == before
    assert gc.get_freeze_count() == 0


def _plain(entry):
    """The entry with its snapshot named by id (each SnapshotFS loads its own Snapshot objects)."""
    return dataclasses.replace(entry, snapshot=entry.snapshot.id)


def test_listed_subfolders_resolve_as_from_the_root(world):
    fs, path, _ = world
    fresh = SnapshotFS(fs.repo, SnapshotFSOptions())
    try:
        parts = path.split("/")
        folders, parent = [], "/".join(parts[:3])
        for name in parts[3:-1]:  # every folder from the snapshot's down to the file's
            fs.list_dir(parent)
            parent += "/" + name
            folders.append(parent)
        parent = path.rsplit("/", 1)[0]
        assert parent in fs._listed_dirs  # served from what its parent's listing found
        for folder in folders[1:]:
            assert _plain(fs.lookup(folder)) == _plain(fresh.lookup(folder))
            assert list(map(_plain, fs.list_dir(folder))) == list(map(_plain, fresh.list_dir(folder)))
        fs.refresh(force=True)  # a new layout forgets them
        assert not fs._listed_dirs
        assert list(map(_plain, fs.list_dir(parent))) == list(map(_plain, fresh.list_dir(parent)))
    finally:
        fresh.close()


def test_trees_of_listed_subfolders_are_read_together(tmp_path, monkeypatch):
    source = tmp_path / "src"
    for i in range(12):
        (source / f"d{i:02d}").mkdir(parents=True)
        (source / f"d{i:02d}" / "f").write_bytes(bytes([i]) * i)
    repo = tmp_path / "repo"
    run_restique(repo, "init")
    run_restic(repo, "backup", str(source))
    fresh = SnapshotFS(open_repository(str(repo), PASSWORD), SnapshotFSOptions())
    fs = SnapshotFS(open_repository(str(repo), PASSWORD), SnapshotFSOptions())
    try:
        parent = "/ids/" + fs.list_dir("/ids")[0].name + str(source)
        subfolders = [e.path for e in fs.list_dir(parent) if e.kind == "dir"]
        assert len(subfolders) == 12
        want = {path: list(map(_plain, fresh.list_dir(path))) for path in subfolders}
        backend = fs.repo.blobs.backend
        reads, load = [], backend.load
        monkeypatch.setattr(backend, "load", lambda *args, **kw: reads.append(args) or load(*args, **kw))
        assert not any(map(fs.listing_ready, subfolders))  # their trees are not read yet
        assert not fs.listing_ready(parent + "/not-listed")
        fs.preload_listed(subfolders)
        assert all(map(fs.listing_ready, subfolders))  # listed now without reading
        assert not fs.listing_ready(subfolders[0], max_entries=0)  # more entries than that
        # twelve trees side by side in one pack: one window (asked again up to the pack's
        # end when the pack is shorter than the window)
        window_reads = len(reads)
        assert 1 <= window_reads <= 2
        for path in subfolders:
            assert list(map(_plain, fs.list_dir(path))) == want[path]
        assert len(reads) == window_reads  # each listing found its tree read
        fs.preload_listed(subfolders)  # already decoded: nothing read again
        assert len(reads) == window_reads
    finally:
        fresh.close()
        fs.close()


def _request(opcode, inode, body=b""):
    """A kernel request as read from the FUSE device (uid, gid and pid zero)."""
    from restique.mount import kernel

    return kernel.IN_HEADER.pack(kernel.IN_HEADER_SIZE + len(body), opcode, 7, inode) + bytes(16) + body


def _direntplus_records(payload):
    """[(name, nodeid, ino, mode, size, mtime_ns, next offset)] of a readdirplus answer."""
    from restique.mount import kernel

    rows, at = [], 0
    while at < len(payload):
        f = kernel.DIRENTPLUS.unpack_from(payload, at)
        namelen = f[24]
        name = payload[at + kernel.DIRENTPLUS.size:at + kernel.DIRENTPLUS.size + namelen]
        assert f[22] == f[6] and f[25] == f[15] >> 12  # the dirent's inode and type agree
        rows.append((name, f[0], f[6], f[15], f[7], f[10] * 10**9 + f[13], f[23]))
        at += kernel.DIRENTPLUS.size + namelen + (-namelen % 8)
    assert at == len(payload)
    return rows


def test_readdir_sends_every_entry_once_and_counts_its_lookups(tmp_path):
    """readdirplus answers from the folder's prepared listing, as many entries per kernel
    request as its buffer takes: `.` and `..` first, then each entry once with its own
    attributes, each one sent counted as one lookup of its inode (hard links: one inode
    twice), all forgotten when the kernel says so. Folders are never opened: the kernel
    asks by the folder's inode."""
    import errno

    from restique.mount import kernel
    from restique.mount.kernel import FuseError
    from restique.mount.ops import NO_REPLY, ROOT_INODE, SnapshotOperations

    source = tmp_path / "src"
    (source / "sub").mkdir(parents=True)
    for i in range(7):
        (source / f"f{i}").write_bytes(bytes([i]) * i)
    os.link(source / "f3", source / "f3-link")
    repo = tmp_path / "repo"
    run_restique(repo, "init")
    run_restic(repo, "backup", str(source))
    fs = SnapshotFS(open_repository(str(repo), PASSWORD), SnapshotFSOptions())
    folder = "/ids/" + fs.list_dir("/ids")[0].name + str(source)
    want = fs.list_dir(folder)
    by_name = {e.name: e for e in want}
    linked = by_name["f3"].inode
    assert len(want) == 9 and by_name["f3-link"].inode == linked
    rows = [(e.name_bytes, e.inode, e.inode, e.mode, e.size, e.mtime_ns) for e in want]
    record = kernel.DIRENTPLUS.size + 8  # these names fit in 8 bytes
    try:
        for per_request in (1, 2, 3, 100):
            ops = SnapshotOperations(fs)
            handlers = ops.handlers()
            try:
                with pytest.raises(FuseError) as raised:
                    handlers[kernel.OPENDIR][0](ROOT_INODE, _request(kernel.OPENDIR, ROOT_INODE, bytes(8)))
                assert raised.value.errno == errno.ENOSYS
                inode = ROOT_INODE
                for name in folder.strip("/").split("/"):
                    answer = ops.lookup(inode, _request(kernel.LOOKUP, inode, name.encode() + b"\0"))
                    inode = kernel.ENTRY_OUT.unpack(answer)[0]
                sent = []
                for _ in range(2):  # listed again: counted again
                    start = 0
                    while True:
                        asked = _request(kernel.READDIRPLUS, inode, kernel.READ_IN.pack(0, start, per_request * record)
                                         + bytes(16))
                        quick, full = handlers[kernel.READDIRPLUS]
                        answer = quick(inode, asked)
                        if answer is None:
                            answer = full(inode, asked)
                        got = _direntplus_records(answer)
                        if not got:
                            break
                        assert len(got) == min(per_request, 11 - start)
                        sent += got
                        start = got[-1][-1]
                names = [b".", b".."] + [row[0] for row in rows]
                assert [s[0] for s in sent] == names * 2
                assert [s[-1] for s in sent] == list(range(1, len(names) + 1)) * 2
                assert sent[0][2] == inode
                assert [s[:6] for s in sent[2:len(names)]] == rows
                for e in want:  # the kernel asks for a hard-linked file by either path
                    assert ops._paths[e.inode] in {e.path, by_name["f3"].path, by_name["f3-link"].path}
                    assert ops._counts[e.inode] == (4 if e.inode == linked else 2)
                forgets = [(i, ops._counts[i]) for i in {e.inode for e in want}]
                body = kernel.BATCH_FORGET_IN.pack(len(forgets)) + b"".join(kernel.FORGET_ONE.pack(*f) for f in forgets)
                assert ops.batch_forget(0, _request(kernel.BATCH_FORGET, 0, body)) is NO_REPLY
                assert not {e.inode for e in want} & (set(ops._paths) | set(ops._counts))
            finally:
                ops.close()
    finally:
        fs.close()


def test_listings_read_subfolders_trees_ahead_first_first_and_stop_on_close():
    """A listing made or handed out starts reading its subfolders' trees ahead (through a
    queue, in batches, the first subfolder first) in the background; listings themselves are
    made only when asked for, once each, and a caller that must not wait is told when another
    thread is making one; after close nothing more is read."""
    import threading
    import time

    from restique.mount.listings import Listing, Listings

    made, preloaded, lock = [], [], threading.Lock()
    making, release = threading.Event(), threading.Event()

    def make_rows(path):
        with lock:
            made.append(path)
        if path == "/slow":
            making.set()
            release.wait(10)
        depth = path.count("/")
        subfolders = [f"{path}/s{i}" for i in range(3)] if depth < 3 else []
        return Listing([b".", b".."], [], {}, subfolders[::-1]), True

    def preload(paths):
        with lock:
            preloaded.append(paths)

    def wait_for(condition):
        deadline = time.monotonic() + 10
        while not condition() and time.monotonic() < deadline:
            time.sleep(0.01)
        assert condition()

    listings = Listings(make_rows, preload=preload)
    try:
        assert listings.cached("/r") is None
        top = listings.get("/r")
        assert top.subfolders == ["/r/s2", "/r/s1", "/r/s0"]
        wait_for(lambda: len(preloaded) == 3)
        assert preloaded == [["/r/s0", "/r/s2", "/r/s1"], ["/r/s1", "/r/s2"], ["/r/s2"]]
        assert made == ["/r"] and listings.cached("/r/s0") is None  # trees read, listings not made
        assert listings.get("/r/s0") is listings.cached("/r/s0")
        wait_for(lambda: len(preloaded) == 6)
        assert preloaded[3][0] == "/r/s0/s0"
        worker = threading.Thread(target=listings.get, args=("/slow",))
        worker.start()
        making.wait(10)
        assert listings.get("/slow", wait=False) is None  # being made by the worker
        release.set()
        worker.join(10)
        assert listings.get("/slow", wait=False) is listings.cached("/slow")
        assert made == ["/r", "/r/s0", "/slow"]  # each made once
        # made ahead while the request reader is idle: the next subfolder first, skipped when
        # its tree stays away; made so, a listing reads ahead only once it is asked for
        from restique.mount.listings import UNREADY_TRIES

        assert listings.ahead_waiting
        wait_for(lambda: len(preloaded) == 9)  # /r, /r/s0 and /slow's subfolders
        before = len(preloaded)
        assert listings.make_ahead(lambda path: True)
        assert made[-1] == "/slow/s0" and listings._kept["/slow/s0"].ahead_started is False
        for _ in range(UNREADY_TRIES - 1):
            assert not listings.make_ahead(lambda path: path != "/slow/s1")
        assert listings.make_ahead(lambda path: path != "/slow/s1")
        assert made[-1] == "/slow/s2"  # /slow/s1 skipped
        time.sleep(0.1)
        assert len(preloaded) == before
        listings.cached("/slow/s0")
        wait_for(lambda: len(preloaded) > before)
    finally:
        listings.close()
    listings._thread.join(10)
    assert not listings._thread.is_alive()
    before = len(preloaded)
    listings.get("/other")  # made on demand still, but read ahead no more
    time.sleep(0.1)
    assert len(preloaded) == before


def test_files_are_read_by_inode_without_being_opened(world):
    """Opening a file is answered "not implemented" (the kernel then opens files without
    asking): reads come by inode, the first through a worker (it finds the file's blobs),
    later ones from the cache in the request reader; a forgotten inode's reader goes."""
    import errno

    from restique.mount import kernel
    from restique.mount.kernel import FuseError
    from restique.mount.ops import ROOT_INODE, SnapshotOperations

    fs, path, data = world
    ops = SnapshotOperations(fs)
    try:
        handlers = ops.handlers()
        with pytest.raises(FuseError) as raised:
            handlers[kernel.OPEN][0](ROOT_INODE, _request(kernel.OPEN, ROOT_INODE, bytes(8)))
        assert raised.value.errno == errno.ENOSYS
        inode = ROOT_INODE
        for name in path.strip("/").split("/"):
            inode = kernel.ENTRY_OUT.unpack(ops.lookup(inode, _request(kernel.LOOKUP, inode, name.encode() + b"\0")))[0]
        quick, full = handlers[kernel.READ]

        def read(offset, size):
            return _request(kernel.READ, inode, kernel.READ_IN.pack(0, offset, size) + bytes(24))

        assert quick(inode, read(0, 4096)) is None  # not read before: a worker finds its blobs
        assert full(inode, read(0, 131072)) == data[:131072]
        assert quick(inode, read(131072, 131072)) == data[131072:262144]  # its blob is cached now
        assert full(inode, read(len(data) - 100, 131072)) == data[-100:]
        assert full(inode, read(len(data), 4096)) == b""
        ops.forget(inode, _request(kernel.FORGET, inode, kernel.FORGET_IN.pack(1)))
        assert inode not in ops._readers
    finally:
        ops.close()
