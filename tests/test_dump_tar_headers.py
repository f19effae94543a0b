"""The tar headers `dump` builds from shared parts (HeaderBuilder) equal the general
builder's (entry_header, checked against restic's archives in test_dump.py) for every kind
of entry: short and long names (split into prefix and name, or PAX), links, owners and
numbers that do or do not fit USTAR, times before 1970 and the zero time."""
import io
import itertools
import tarfile

from restique.model.gotime import GoTime
from restique.model.node import MODE_DIR, MODE_SETGID, MODE_STICKY, MODE_SYMLINK, Node
from restique.operations.dump_tar import HeaderBuilder, TarWriter, entry_header

NAMES = [b"a", b"dir/file.txt", b"x" * 100, b"x" * 101, b"d" * 60 + b"/" + b"f" * 60,
         b"p" * 155 + b"/" + b"n" * 100, b"p" * 154 + b"/" + b"n" * 100, b"p" * 156 + b"/n",
         b"a/" + b"b" * 99, "caf\u00e9/long".encode() * 20, b"x" * 300, b"p" * 155 + b"//n"]
TIMES = [GoTime(1_700_000_000_499_999_999, 3600), GoTime(1_700_000_000_500_000_000), GoTime(-1_000_000_000),
         GoTime(-62135596800 * 1_000_000_000), GoTime(1 << 62)]
OWNERS = [(1000, 1000, "user", "group"), (0, 0, "", ""), (1 << 22, 5, "u" * 33, "g"),
          (5, 1 << 21, "\u00fcser", "g")]


def nodes():
    for kind, mode in (("file", 0o644), ("file", 0o755 | MODE_SETGID), ("dir", MODE_DIR | 0o755 | MODE_STICKY),
                       ("symlink", MODE_SYMLINK | 0o777), ("fifo", 0o600)):
        for mtime, (uid, gid, user, group), size in itertools.product(TIMES, OWNERS, (0, 511, 1 << 33)):
            node = Node(name="n", type=kind, mode=mode, mtime=mtime, uid=uid, gid=gid, user=user, group=group,
                        size=size if kind == "file" else 0)
            if kind == "symlink":
                for target in ("t", "x" * 101, "\u00e9"):
                    node.linktarget = target
                    yield Node(**{f: getattr(node, f) for f in Node.__dataclass_fields__})
            else:
                yield node
    yield Node(name="n", type="file", mtime=TIMES[0], xattrs=[("user.a", b"1")])


def test_shared_parts_build_the_same_headers():
    build = HeaderBuilder()
    for node in nodes():
        for name in NAMES:
            if node.type == "dir":
                name += b"/"
            assert build(name, node) == entry_header(name, node), (name, node)


def test_archive_reads_back():
    out = io.BytesIO()
    writer = TarWriter(out)
    node = Node(name="f", type="file", mode=0o640, mtime=TIMES[0], uid=7, gid=8, user="u", group="g", size=3)
    writer.add(b"p" * 120 + b"/f", node, [b"abc"])
    writer.add(b"d", Node(name="d", type="dir", mode=MODE_DIR | 0o755, mtime=TIMES[1]), [])
    writer.close()
    assert writer.bytes == len(out.getvalue()) == 512 * 5
    with tarfile.open(fileobj=io.BytesIO(out.getvalue())) as tar:
        members = tar.getmembers()
        assert [m.name for m in members] == ["p" * 120 + "/f", "d"]
        assert tar.extractfile(members[0]).read() == b"abc"
        assert (members[0].mode, members[0].uid, members[0].uname, members[0].mtime) == (0o640, 7, "u", 1_700_000_000)

