"""The snapshot filesystem as a library (no FUSE): restic's virtual tree above the snapshots,
every entry's attributes equal to the backed-up source, reads at any offset, new snapshots
seen after the refresh interval."""
import os
import stat
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest

from conftest import PASSWORD, clean_env, run_restique
from test_backup import MiB, build_full_tree, saved_id, walk

from restique.errors import NotFound
from restique.model.snapshot_filter import SnapshotFilter
from restique.operations.snapshot_fs import (FsEntry, NotADirectory, SnapshotFS, SnapshotFSOptions,
                                             format_go_time)
from restique.repository.repository import open_repository

UTC = clean_env(TZ="UTC")


def backup(repo, source, *flags):
    proc = run_restique(repo, "backup", "--json", *flags, source, env=UTC)
    return saved_id(proc)


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    base = tmp_path_factory.mktemp("snapfs")
    source = base / "src"
    build_full_tree(source)
    repo = base / "repo"
    run_restique(repo, "init")
    ids = {
        "old": backup(repo, source / "links", "--host", "vm", "--tag", "a,b", "--time", "2026-12-01 10:00:00"),
        "same": backup(repo, source / "links", "--host", "vm", "--time", "2026-12-01 10:00:00"),
        "full": backup(repo, source, "--host", "box", "--tag", "full", "--time", "2026-12-02 08:30:00"),
    }
    return base, source, repo, ids


def open_fs(repo, **options):
    return SnapshotFS(open_repository(str(repo), PASSWORD), SnapshotFSOptions(**options))


@pytest.fixture(scope="module")
def fs(world):
    fs = open_fs(world[2])
    yield fs
    fs.close()


def names(entries):
    return [e.name for e in entries]


def test_top_level_and_virtual_dirs(fs, world):
    ids = world[3]
    root = fs.lookup("/")
    assert root.kind == "dir" and root.inode == 1 and root.mode == stat.S_IFDIR | 0o555
    assert names(fs.list_dir("/")) == ["hosts", "ids", "snapshots", "tags"]
    assert names(fs.list_dir("/ids")) == sorted(sid[:8] for sid in ids.values())
    assert names(fs.list_dir("/snapshots")) == [
        "2026-12-01T10:00:00Z", "2026-12-01T10:00:00Z-1", "2026-12-02T08:30:00Z", "latest"]
    latest = fs.lookup("/snapshots/latest")
    assert latest.kind == "symlink" and latest.target == "2026-12-02T08:30:00Z"
    assert latest.size == len(latest.target)
    assert names(fs.list_dir("/hosts")) == ["box", "vm"]
    assert names(fs.list_dir("/hosts/vm")) == ["2026-12-01T10:00:00Z", "2026-12-01T10:00:00Z-1", "latest"]
    assert names(fs.list_dir("/tags")) == ["a", "b", "full"]
    assert fs.lookup("/tags/a/latest").target == "2026-12-01T10:00:00Z"
    snap_dir = fs.lookup("/snapshots/2026-12-02T08:30:00Z")
    assert snap_dir.snapshot.id == ids["full"] and snap_dir.node is None and snap_dir.links == 2
    assert snap_dir.mtime_ns == snap_dir.snapshot.time.unix_ns
    # the long id is found too, and `latest` is followed inside a path
    assert fs.lookup("/ids/" + ids["full"]).snapshot.id == ids["full"]
    inner = str(world[1]) + "/small.txt"
    assert fs.read("/snapshots/latest" + inner, 0, 100) == b"hello restique\n"
    same_second = sorted([ids["old"], ids["same"]])  # one second: in id order, as restic numbers them
    assert [sn.id for sn in fs.snapshots()] == same_second + [ids["full"]]
    assert fs.lookup("/snapshots/2026-12-01T10:00:00Z-1").snapshot.id == same_second[1]


def test_tree_matches_source(fs, world):
    source, sid = world[1], world[3]["full"]
    top = f"/ids/{sid[:8]}" + os.fsdecode(os.fsencode(source))
    rootb = os.fsencode(source)
    hardlinks = {}
    for rel in walk(rootb):
        st = os.lstat(os.path.join(rootb, rel))
        entry = fs.lookup(top + "/" + os.fsdecode(rel))
        assert isinstance(entry, FsEntry)
        assert entry.name_bytes == os.path.basename(rel)
        assert stat.S_IFMT(entry.mode) == stat.S_IFMT(st.st_mode), rel
        assert stat.S_IMODE(entry.mode) == (0o777 if stat.S_ISLNK(st.st_mode) else stat.S_IMODE(st.st_mode)), rel
        assert (entry.uid, entry.gid) == (st.st_uid, st.st_gid), rel
        assert entry.mtime_ns == st.st_mtime_ns, rel
        if stat.S_ISREG(st.st_mode):
            assert entry.size == st.st_size and entry.links == st.st_nlink
            with open(os.path.join(rootb, rel), "rb") as f:
                assert fs.read(entry.path, 0, st.st_size + 10) == f.read(), rel
            if st.st_nlink > 1:
                hardlinks.setdefault(st.st_ino, set()).add(entry.inode)
        elif stat.S_ISLNK(st.st_mode):
            assert os.fsencode(entry.target) == os.readlink(os.path.join(rootb, rel))
        elif stat.S_ISCHR(st.st_mode):
            assert entry.kind == "chardev" and entry.rdev == st.st_rdev
    assert hardlinks and all(len(inodes) == 1 for inodes in hardlinks.values())
    listed = fs.list_dir(top)
    assert [e.name_bytes for e in listed] == sorted(os.listdir(rootb))
    assert len({e.inode for e in listed}) == len(listed) - 1  # two hard links share one
    assert dict(fs.lookup(top + "/xattr.txt").xattrs)["user.test"] == b"v"


def test_reads_at_any_offset(fs, world):
    source, sid = world[1], world[3]["full"]
    path = f"/ids/{sid[:8]}{source}/random20m.bin"
    data = (source / "random20m.bin").read_bytes()
    reader = fs.open_reader(path)
    for offset, size in [(0, 1), (123, 4096), (MiB - 7, 3 * MiB), (len(data) - 5, 100), (len(data), 10)]:
        assert reader.read(offset, size) == data[offset:offset + size]

    def chunk(i):
        offset = (i * 777_777) % len(data)
        return fs.read(path, offset, 131072) == data[offset:offset + 131072]

    with ThreadPoolExecutor(8) as pool:
        assert all(pool.map(chunk, range(64)))
    assert fs.blobs.held_bytes <= fs.options.cache_bytes


def test_errors(fs, world):
    sid = world[3]["full"][:8]
    with pytest.raises(NotFound):
        fs.lookup("/ids/00000000")
    with pytest.raises(NotFound):
        fs.lookup(f"/ids/{sid}/no/such/file")
    with pytest.raises(NotADirectory):
        fs.list_dir("/snapshots/latest")
    assert fs.read(f"/ids/{sid}{world[1]}/empty.txt", 0, 10) == b""


def test_new_snapshot_and_templates(world):
    base, source, repo, ids = world
    fs = open_fs(repo, refresh_seconds=0.0, owner_root=True, filter=SnapshotFilter(hosts=["vm"]),
                 path_template=["by-host/%h/%i", "all/%T"], time_template="2006-01-02_15.04.05")
    try:
        assert names(fs.list_dir("/")) == ["all", "by-host"]
        assert names(fs.list_dir("/all")) == ["2026-12-01_10.00.00", "2026-12-01_10.00.00-1", "latest"]
        assert names(fs.list_dir("/by-host/vm")) == sorted([ids["old"][:8], ids["same"][:8]])
        newer = backup(repo, source / "links", "--host", "vm", "--time", "2026-12-03 00:00:00")
        assert fs.lookup("/all/latest").target == "2026-12-03_00.00.00"
        entry = fs.lookup(f"/by-host/vm/{newer[:8]}" + str(source) + "/links/relative")
        assert entry.kind == "symlink" and (entry.uid, entry.gid) == (0, 0)
    finally:
        fs.close()
        run_restique(repo, "forget", newer)


def test_go_time_layouts():
    ns = 1_767_225_600_123_456_789  # 2026-01-01T00:00:00.123456789Z
    assert format_go_time(ns, 0, "2006-01-02T15:04:05Z07:00") == "2026-01-01T00:00:00Z"
    assert format_go_time(ns, 3600, "2006-01-02T15:04:05Z07:00") == "2026-01-01T01:00:00+01:00"
    assert format_go_time(ns, -5400, "Mon Jan _2 3:04PM -0700 .000") == "Wed Dec 31 10:30PM -0130 .123"
    assert format_go_time(ns, 0, "06.1.2 15h.999999999") == "26.1.1 00h.123456789"


def test_unsafe_names_are_skipped_and_reported(tmp_path):
    """A hostile tree's entries named "", ".", ".." or with a slash are never served as
    paths; each is reported once, the good entries beside them are served."""
    from test_hostile_repository import FAST_KDF, _Trees

    from restique.repository.repository import init_repository

    t = _Trees(init_repository(str(tmp_path / "repo"), PASSWORD, kdf_params=FAST_KDF))
    sub = t.dir("sub", [t.file("..", b"up"), t.file("ok.txt", b"fine")])
    t.snapshot([t.file("", b"empty"), t.file(".", b"dot"), t.dir("..", [t.file("escape.txt", b"x")]),
                t.file("a/b", b"slash"), t.file("good.txt", b"good"), sub], "2026-01-01T00:00:00Z", "h")
    seen = []
    fs = open_fs(tmp_path / "repo", on_warning=seen.append)
    try:
        top = f"/ids/{fs.snapshots()[0].id[:8]}"
        assert names(fs.list_dir(top)) == ["good.txt", "sub"]
        assert names(fs.list_dir(top + "/sub")) == ["ok.txt"]
        assert fs.read(top + "/sub/ok.txt", 0, 10) == b"fine"
        assert fs.lookup(top + "/sub/..").path == top  # the path's own "..", not the entry
        for missing in ("/a/b", "/a", "/sub/../escape.txt"):
            with pytest.raises(NotFound):
                fs.lookup(top + missing)
        fs.list_dir(top)
        assert fs.unsafe_names == 5 and len(seen) == 5 and fs.warnings == seen
        assert all("not a valid file name" in w for w in seen)
    finally:
        fs.close()


def test_listing_entries_equal_entries_of_decoded_nodes(world):
    """A folder's listing builds its entries from the tree's JSON in one loop: each equals
    the entry of the fully decoded node (every kind: hard links, set-uid, xattrs, devices,
    symlinks, names that are not UTF-8)."""
    from restique.model.node import decode_tree
    from restique.operations.snapshot_fs.entries import listing_entries, node_entry

    fs = open_fs(world[2])
    try:
        sid = world[3]["full"][:8]
        folders, seen = [f"/ids/{sid}"], 0
        while folders:
            path = folders.pop()
            found = fs._resolve(path)
            lazy = fs._children(found.tree)[0]
            decoded = decode_tree(fs.repo.load_blob("tree", found.tree))
            snapshot = found.entry.snapshot
            for owner_root in (False, True):
                want = [node_entry(f"{path}/{n.name}", n, snapshot, owner_root) for n in decoded]
                assert listing_entries(path, lazy, snapshot, owner_root) == want
            entries = fs.list_dir(path)
            folders += [e.path for e in entries if e.kind == "dir"]
            seen += len(entries)
        assert seen > 20
    finally:
        fs.close()
