"""The FUSE protocol as restique's mount speaks it: the sizes of the kernel's structures,
attributes as the kernel reads them (times before 1970 too), the INIT answer, answers to
requests nobody handles, and the kernel told to drop its listings above the snapshots when
the snapshot list changed."""
import errno
import os

import pytest

from restique.mount import kernel
from restique.mount.kernel import Attributes, FuseError


def test_structures_have_the_kernels_sizes():
    assert kernel.ENTRY_OUT.size == 128  # fuse_entry_out
    assert kernel.ATTR_OUT.size == 104  # fuse_attr_out
    assert kernel.DIRENTPLUS.size == 152  # fuse_entry_out + fuse_dirent without its name
    assert kernel.INIT_OUT.size == 64
    assert kernel.STATFS_OUT.size == 80  # fuse_kstatfs
    assert kernel.IN_HEADER_SIZE == kernel.IN_HEADER.size + 16  # uid, gid, pid, extension length
    assert kernel.OUT_HEADER.size == 16


def test_attributes_split_times_into_seconds_and_nanoseconds_before_1970_too():
    attrs = Attributes(5, 0o100644, 1, 1000, 100, 4097, 0, -1, 1_500_000_000_123_456_789, 0, 86400)
    fields = kernel.ATTR_OUT.unpack(attrs.attr_out())
    assert fields[:2] == (86400, 0)  # valid for a day
    ino, size, blocks, atime, mtime, ctime, ansec, mnsec, cnsec, mode, nlink, uid, gid = fields[2:15]
    assert (ino, size, blocks, mode, nlink, uid, gid) == (5, 4097, 9, 0o100644, 1, 1000, 100)
    assert (atime, ansec) == (-1, 999_999_999)  # one nanosecond before the epoch
    assert (mtime, mnsec) == (1_500_000_000, 123_456_789)
    assert (ctime, cnsec) == (0, 0)
    entry = kernel.ENTRY_OUT.unpack(attrs.entry_out())
    assert entry[:4] == (5, 0, 86400, 86400) and entry[6:] == fields[2:]
    record = attrs.direntplus(b"name.txt+", 12)
    assert len(record) % 8 == 0 and len(record) == kernel.DIRENTPLUS.size + 16
    assert kernel.DIRENTPLUS.unpack_from(record)[22:] == (5, 12, 9, 0o10)  # ino, next offset, name length, DT_REG


def test_init_asks_only_for_offered_flags():
    offered = kernel.DO_READDIRPLUS | kernel.ASYNC_READ | (1 << 14) | (1 << 24)  # readdirplus_auto, no_opendir
    request = kernel.IN_HEADER.pack(104, kernel.INIT, 1, 0) + bytes(16) + kernel.INIT_IN.pack(7, 44, 131072, offered)
    major, minor, readahead, flags, *_ = kernel.INIT_OUT.unpack(kernel.init_reply(request))
    assert (major, minor, readahead) == (7, kernel.MINOR, 131072)
    assert flags == kernel.DO_READDIRPLUS | kernel.ASYNC_READ  # never readdirplus_auto: always with attributes
    old = kernel.IN_HEADER.pack(104, kernel.INIT, 1, 0) + bytes(16) + kernel.INIT_IN.pack(6, 0, 0, 0)
    with pytest.raises(FuseError):
        kernel.init_reply(old)


class _FakeChannel:
    def __init__(self, requests):
        self.requests = list(requests)
        self.answers = []

    def request_waiting(self):
        return True

    def read(self):
        if not self.requests:
            raise OSError(errno.ENODEV, "unmounted")
        return self.requests.pop(0)

    def answer(self, unique, payload=b"", error=0):
        self.answers.append((unique, payload, error))


def test_requests_without_a_handler_are_not_implemented_and_forgets_get_no_answer():
    from concurrent.futures import ThreadPoolExecutor

    from restique.mount.ops import NO_REPLY, ROOT_INODE
    from restique.mount.runner import answer_requests

    class Ops:
        errors = []
        idle_work_waiting = False

        def handlers(self):
            return {kernel.FORGET: (lambda inode, request: NO_REPLY, None),
                    kernel.STATFS: (lambda inode, request: kernel.statfs_out(), None),
                    kernel.GETATTR: (None, _getattr_fails)}

    header = kernel.IN_HEADER.pack
    channel = _FakeChannel([header(48, kernel.FORGET, 1, 9) + bytes(16) + kernel.FORGET_IN.pack(1),
                            header(40, 30, 2, ROOT_INODE) + bytes(16),  # fsyncdir: nobody handles it
                            header(40, kernel.STATFS, 3, ROOT_INODE) + bytes(16),
                            header(56, kernel.GETATTR, 4, ROOT_INODE) + bytes(32)])
    with ThreadPoolExecutor(2) as workers:
        answer_requests(channel, Ops(), workers)
    assert sorted(channel.answers) == [(2, b"", errno.ENOSYS), (3, kernel.statfs_out(), 0), (4, b"", errno.ENOENT)]


def _getattr_fails(inode, request):
    raise FuseError(errno.ENOENT)


def test_a_changed_snapshot_list_drops_the_kernels_folders_above_the_snapshots():
    """The kernel keeps listings itself (folders are opened without asking): when the
    snapshot list changed, every folder above the snapshots it was told of is invalidated,
    at the first request after the change, once."""
    from restique.mount.ops import ROOT_INODE, SnapshotOperations
    from restique.operations.snapshot_fs.entries import virtual_entry

    class FakeFS:
        generation = 0

        def preload_listed(self, paths):
            pass

        def lookup(self, path):
            return virtual_entry(path, os.path.basename(path), 0, 0, 0)

    fs, notices = FakeFS(), []
    ops = SnapshotOperations(fs, notices.append)
    try:
        request = kernel.IN_HEADER.pack(44, kernel.LOOKUP, 1, ROOT_INODE) + bytes(16) + b"ids\0"
        ids = kernel.ENTRY_OUT.unpack(ops.lookup(ROOT_INODE, request))[0]
        assert notices == []
        fs.generation = 1  # a new snapshot: the next answer notices
        ops.getattr(ids, b"")
        assert sorted(notices) == sorted([kernel.inval_inode(ROOT_INODE), kernel.inval_inode(ids)])
        ops.getattr(ids, b"")
        assert len(notices) == 2
        length, code, unique = kernel.OUT_HEADER.unpack_from(notices[0])
        assert (length, code, unique) == (40, kernel.NOTIFY_INVAL_INODE, 0)
    finally:
        ops.close()


def test_a_listings_records_equal_each_entrys_own():
    for times in [(5, 5, 5), (-1, 1_500_000_000_123_456_789, 7), (3 * 10**18, 0, -(10**9))]:
        for name in (b"", b"a", b"seven.7", b"eight..8", b"\xff\xfe not utf-8"):
            for mode in (0o100644, 0o40755, 0o120777, 0o20600):
                fields = (77, mode, 3, 1000, 1001, 123456789, 0x10_0005 if mode == 0o20600 else 0)
                attrs = Attributes(*fields, *times, 86400)
                assert kernel.direntplus(name, *fields, *times, 86400, 9) == attrs.direntplus(name, 9)


def test_idle_work_runs_only_while_no_request_waits():
    from concurrent.futures import ThreadPoolExecutor

    from restique.mount.ops import ROOT_INODE
    from restique.mount.runner import answer_requests

    events = []

    class Ops:
        errors = []
        idle_work_waiting = True

        def handlers(self):
            return {kernel.STATFS: (lambda inode, request: events.append("statfs") or kernel.statfs_out(), None)}

        def idle_work(self):
            events.append("idle")
            self.idle_work_waiting = len(events) < 3
            return True

    class Channel(_FakeChannel):
        def request_waiting(self):  # the first request arrives after two idle turns
            return events.count("idle") >= 2 and "statfs" not in events

    header = kernel.IN_HEADER.pack
    channel = Channel([header(40, kernel.STATFS, 1, ROOT_INODE) + bytes(16)])
    with ThreadPoolExecutor(1) as workers:
        answer_requests(channel, Ops(), workers)
    assert events == ["idle", "idle", "statfs", "idle"]
    assert channel.answers == [(1, kernel.statfs_out(), 0)]
