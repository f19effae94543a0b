"""`restique restore` against the real restic.

One source tree with every kind of entry is backed up once by restic (module fixture) and
restored by both programs; the restored trees are compared with the source and with each
other field by field. Further tests cover include/exclude, `ID:subfolder`, --verify, --sparse,
--dry-run, --overwrite, --delete, --json, a damaged pack, and the walker's order against
`restic ls`.

Every restic/restique run pays ~0.5 s of scrypt, so the repository and restic's own restore
are shared by the module and each test restores into its own directory.
"""
import hashlib
import json
import os
import shutil
import socket
import stat

import pytest

from conftest import PASSWORD, run_restic, run_restique

MIB = 1024 * 1024
OLD_NS = 1_234_567_890_123_456_789  # 2009-02-13 23:31:30.123456789
ATIME_NS = 1_300_000_000_987_654_321


# --------------------------------------------------------------------------------------------
# fixtures



def _write(path, data: bytes, mtime_ns=OLD_NS):
    with open(path, "wb") as f:
        f.write(data)
    os.utime(path, ns=(ATIME_NS, mtime_ns))


def make_source(root: str) -> None:
    """A tree with every kind of entry restic stores."""
    rnd = __import__("random").Random(7)
    os.makedirs(root)
    j = lambda *p: os.path.join(root, *p)
    _write(j("hello.txt"), b"hello restic\n", OLD_NS + 1)
    _write(j("empty.txt"), b"")
    _write(j("big.bin"), rnd.randbytes(21 * MIB))  # several chunks
    # 1 MiB data, 17 MiB zeros, 1 MiB data: all-zero chunks in the middle (for --sparse)
    _write(j("holes.bin"), rnd.randbytes(MIB) + bytes(17 * MIB) + rnd.randbytes(MIB))
    os.makedirs(j("a", "b", "c"))
    _write(j("a", "b", "c", "deep.txt"), b"deep\n", OLD_NS + 3)
    _write(j("a", "one.TXT"), b"upper case extension\n")
    _write(j("a", "b", "two.md"), b"# two\n")
    os.makedirs(j("sub"))
    _write(j("sub", "inner.txt"), b"inner\n")
    _write(j("sub", "data.bin"), rnd.randbytes(3000))
    # non-UTF-8 names (a file and a directory)
    os.makedirs(os.path.join(root.encode(), b"dir-\xff"))
    _write(os.path.join(root.encode(), b"caf\xe9.txt"), b"latin-1 name\n")
    _write(os.path.join(root.encode(), b"dir-\xff", b"x\xfe.txt"), b"x\n")
    # symlinks: relative, dangling absolute, to a directory
    os.symlink("hello.txt", j("link-to-hello"))
    os.symlink("/nonexistent/target", j("dangling"))
    os.symlink("a/b", j("link-to-dir"))
    # hard links: three names, two directories
    _write(j("hl-1.txt"), b"linked content\n")
    os.link(j("hl-1.txt"), j("hl-2.txt"))
    os.link(j("hl-1.txt"), j("sub", "hl-3.txt"))
    # special files
    os.mkfifo(j("fifo"), 0o640)
    os.mknod(j("null-dev"), stat.S_IFCHR | 0o644, os.makedev(1, 3))
    os.mknod(j("loop-dev"), stat.S_IFBLK | 0o600, os.makedev(7, 200))
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(j("sock"))
    sock.close()
    # modes, owners, xattrs
    _write(j("setuid.sh"), b"#!/bin/sh\n")
    os.chmod(j("setuid.sh"), 0o4755)
    os.makedirs(j("sticky"))
    os.chmod(j("sticky"), 0o1777)
    os.makedirs(j("setgid"))
    os.chmod(j("setgid"), 0o2750)
    _write(j("setgid", "f"), b"f")
    _write(j("owned.txt"), b"owned by 4242\n")
    os.chown(j("owned.txt"), 4242, 4243)
    os.chmod(j("owned.txt"), 0o640)
    os.chown(j("link-to-hello"), 4244, 4245, follow_symlinks=False)
    os.setxattr(j("hello.txt"), "user.test", b"xattr value")
    os.setxattr(j("sub"), "user.dir", b"on a directory")
    os.utime(j("fifo"), ns=(ATIME_NS, OLD_NS + 5))
    os.utime(j("link-to-hello"), ns=(ATIME_NS, OLD_NS + 6), follow_symlinks=False)
    # directory times last (creating entries changes them)
    for dirpath, dirnames, _ in os.walk(root.encode(), topdown=False):
        os.utime(dirpath, ns=(ATIME_NS, OLD_NS + 7))


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """Source tree, a restic repository with one snapshot of it, and restic's restore."""
    base = tmp_path_factory.mktemp("restore")
    src = str(base / "src")
    make_source(src)
    repo = base / "repo"
    run_restic(repo, "init")
    run_restic(repo, "backup", src)
    restic_out = base / "restic-out"
    run_restic(repo, "restore", "latest", "--target", restic_out)
    return {"base": base, "src": src, "repo": repo, "restic_out": str(restic_out) + src}


def restored(target, world) -> str:
    """Where the source tree lands below target (restic recreates the full path)."""
    return str(target) + world["src"]


# --------------------------------------------------------------------------------------------
# comparing trees


def lstat_walk(root) -> dict:
    """relative path (bytes) -> (path, lstat) of everything below root. Unlike os.walk this
    never follows a symlink (following one updates the link's atime)."""
    root_b = os.fsencode(str(root))
    entries = {}
    stack = [root_b]
    while stack:
        with os.scandir(stack.pop()) as it:
            for entry in it:
                entries[os.path.relpath(entry.path, root_b)] = (entry.path, os.lstat(entry.path))
                if entry.is_dir(follow_symlinks=False):
                    stack.append(entry.path)
    return entries


def tree_state(root: str, atime=False) -> dict:
    """relative path (bytes) -> what restic restores about it. All lstat calls happen before
    any file is read, so atimes are the restored ones."""
    entries = lstat_walk(root)
    inodes = {}
    for rel, (path, st) in sorted(entries.items()):
        if stat.S_ISREG(st.st_mode) and st.st_nlink > 1:
            inodes.setdefault(st.st_ino, []).append(rel)
    state = {}
    for rel, (path, st) in entries.items():
        info = {"mode": st.st_mode, "uid": st.st_uid, "gid": st.st_gid, "mtime": st.st_mtime_ns}
        if atime:
            info["atime"] = st.st_atime_ns
        if stat.S_ISREG(st.st_mode):
            with open(path, "rb") as f:
                info["sha256"] = hashlib.sha256(f.read()).hexdigest()
            info["size"] = st.st_size
            if st.st_nlink > 1:
                info["hardlinks"] = tuple(inodes[st.st_ino])
        elif stat.S_ISLNK(st.st_mode):
            info["target"] = os.readlink(path)
        elif stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode):
            info["rdev"] = st.st_rdev
        if not stat.S_ISSOCK(st.st_mode):
            info["xattrs"] = {n: os.getxattr(path, n, follow_symlinks=False)
                              for n in os.listxattr(path, follow_symlinks=False) if n.startswith("user.")}
        state[rel] = info
    return state


def diff_states(a: dict, b: dict) -> list:
    out = []
    for rel in sorted(set(a) | set(b)):
        if rel not in a or rel not in b:
            out.append((rel, "only in " + ("second" if rel not in a else "first")))
            continue
        for key in sorted(set(a[rel]) | set(b[rel])):
            if a[rel].get(key) != b[rel].get(key):
                out.append((rel, key, a[rel].get(key), b[rel].get(key)))
    return out


def paths_below(root) -> set:
    return set(lstat_walk(root))


def assert_clean_failure(proc):
    assert proc.returncode == 1, proc.stderr
    assert b"Traceback" not in proc.stderr


# --------------------------------------------------------------------------------------------
# (1) + (5): every kind of entry; identical to restic's restore


def test_restore_every_kind_matches_source_and_restic(world, tmp_path):
    target = tmp_path / "out"
    proc = run_restique(world["repo"], "restore", "latest", "--target", target)
    out = proc.stdout.decode()
    assert out.startswith("restoring snapshot "), out
    assert f" to {target}\n" in out
    assert "Summary: Restored " in out
    assert proc.stderr == b""

    mine = tree_state(restored(target, world), atime=True)
    theirs = tree_state(world["restic_out"], atime=True)
    source = tree_state(world["src"])

    # the socket is skipped, like restic does
    assert b"sock" in source and b"sock" not in mine
    del source[b"sock"]
    # everything the source has, restored exactly (atime: see below)
    assert diff_states(source, {k: {f: v for f, v in i.items() if f != "atime"} for k, i in mine.items()}) == []
    # byte for byte what restic itself restores, atimes included
    assert diff_states(theirs, mine) == []

    # spot checks of the hard parts
    assert stat.S_IMODE(mine[b"setuid.sh"]["mode"]) == 0o4755
    assert stat.S_IMODE(mine[b"sticky"]["mode"]) == 0o1777
    assert stat.S_IMODE(mine[b"setgid"]["mode"]) == 0o2750
    assert (mine[b"owned.txt"]["uid"], mine[b"owned.txt"]["gid"]) == (4242, 4243)
    assert (mine[b"link-to-hello"]["uid"], mine[b"link-to-hello"]["gid"]) == (4244, 4245)
    assert mine[b"link-to-hello"]["mtime"] == OLD_NS + 6
    assert mine[b"dangling"]["target"] == b"/nonexistent/target"
    assert mine[b"hl-1.txt"]["hardlinks"] == (b"hl-1.txt", b"hl-2.txt", b"sub/hl-3.txt")
    assert stat.S_ISFIFO(mine[b"fifo"]["mode"])
    assert mine[b"null-dev"]["rdev"] == os.makedev(1, 3) and stat.S_ISCHR(mine[b"null-dev"]["mode"])
    assert mine[b"loop-dev"]["rdev"] == os.makedev(7, 200) and stat.S_ISBLK(mine[b"loop-dev"]["mode"])
    assert mine[b"hello.txt"]["xattrs"] == {"user.test": b"xattr value"}
    assert mine[b"sub"]["xattrs"] == {"user.dir": b"on a directory"}
    assert mine[b"hello.txt"]["mtime"] == OLD_NS + 1
    assert mine[b"a/b/c"]["mtime"] == OLD_NS + 7  # directory times survive their content
    nodes = _snapshot_nodes(world["repo"])
    for rel in (b"hello.txt", b"fifo", b"link-to-hello", b"a/b/c"):
        assert mine[rel]["atime"] == nodes[world["src"] + "/" + rel.decode()].atime.unix_ns
    assert b"caf\xe9.txt" in mine and b"dir-\xff/x\xfe.txt" in mine
    # the directories above the backed-up folder come from the snapshot too
    assert os.stat(os.path.dirname(restored(target, world))).st_mtime_ns == \
        os.stat(os.path.dirname(world["restic_out"])).st_mtime_ns


def test_restore_again_over_existing_tree(world, tmp_path):
    """Restoring over a complete earlier restore changes nothing and reports no errors
    (restic 0.14 failed on existing symlinks and fifos; current restic replaces them)."""
    target = tmp_path / "out"
    run_restique(world["repo"], "restore", "latest", "--target", target)
    before = tree_state(restored(target, world))
    with open(restored(target, world) + "/hello.txt", "wb") as f:
        f.write(b"changed locally\n")
    proc = run_restique(world["repo"], "restore", "latest", "--target", target)
    assert proc.stderr == b""
    assert "skipped" in proc.stdout.decode()  # unchanged files are only checked
    assert diff_states(before, tree_state(restored(target, world))) == []


# --------------------------------------------------------------------------------------------
# (2) include / exclude / ID:subfolder


@pytest.mark.parametrize("flags", [
    ["--include", "*.txt"],
    ["--exclude", "sub", "--exclude", "*.bin"],
    ["--iinclude", "*.TXT"],
    ["--include", "{src}/a/b"],
    ["--iexclude", "A", "--iexclude", "HL-*"],
])
def test_include_exclude_select_what_restic_selects(world, tmp_path, flags):
    flags = [f.replace("{src}", world["src"]) for f in flags]
    mine, theirs = tmp_path / "mine", tmp_path / "theirs"
    run_restique(world["repo"], "restore", "latest", "--target", mine, *flags)
    run_restic(world["repo"], "restore", "latest", "--target", theirs, *flags)
    assert paths_below(mine) == paths_below(theirs)
    assert paths_below(mine)  # the patterns selected something
    assert diff_states(tree_state(theirs), tree_state(mine)) == []


def test_include_and_exclude_are_exclusive(world, tmp_path):
    proc = run_restique(world["repo"], "restore", "latest", "-t", tmp_path / "x", "-i", "a", "-e", "b", check=False)
    assert_clean_failure(proc)
    assert proc.stderr == b"Fatal: exclude and include patterns are mutually exclusive\n"


def test_snapshot_subfolder(world, tmp_path):
    target = tmp_path / "sub"
    run_restique(world["repo"], "restore", f"latest:{world['src']}/a", "--target", target,
                 "--include", "/b")
    assert sorted(paths_below(target)) == [b"b", b"b/c", b"b/c/deep.txt", b"b/two.md"]
    full = tree_state(world["restic_out"] + "/a")
    assert diff_states({k: v for k, v in full.items() if k.startswith(b"b")}, tree_state(target)) == []

    proc = run_restique(world["repo"], "restore", "latest:/nonexistent", "-t", tmp_path / "x", check=False)
    assert_clean_failure(proc)
    assert proc.stderr == b"Fatal: path nonexistent: not found\n"


def test_bad_arguments(world, tmp_path):
    proc = run_restique(world["repo"], "restore", "latest", check=False)
    assert_clean_failure(proc)
    assert proc.stderr == b"Fatal: please specify a directory to restore to (--target)\n"
    proc = run_restique(world["repo"], "restore", "ffffffff", "-t", tmp_path / "x", check=False)
    assert_clean_failure(proc)
    assert proc.stderr == b'invalid id "ffffffff": no matching ID found for prefix "ffffffff"\n'
    proc = run_restique(world["repo"], "restore", "-t", tmp_path / "x", check=False)
    assert proc.stderr == b"Fatal: no snapshot ID specified\n"
    assert not (tmp_path / "x").exists()


# --------------------------------------------------------------------------------------------
# (3) --verify, --sparse, --dry-run, --overwrite, --delete, --json


def test_verify(world, tmp_path):
    target = tmp_path / "out"
    proc = run_restique(world["repo"], "restore", "latest", "--target", target, "--verify",
                        "--exclude", "holes.bin")
    lines = proc.stdout.decode().splitlines()
    n_files = sum(1 for p, i in tree_state(world["src"]).items()
                  if "sha256" in i and p != b"holes.bin" and not p.startswith((b"hl-2", b"sub/hl-3")))
    assert lines[-2] == f"verifying files in {target}"
    assert lines[-1].startswith(f"finished verifying {n_files} files in {target} (took ")


def test_sparse(world, tmp_path):
    dense, sparse = tmp_path / "dense", tmp_path / "sparse"
    run_restique(world["repo"], "restore", "latest", "-t", dense, "--include", "holes.bin")
    run_restique(world["repo"], "restore", "latest", "-t", sparse, "--include", "holes.bin", "--sparse")
    d = os.stat(restored(dense, world) + "/holes.bin")
    s = os.stat(restored(sparse, world) + "/holes.bin")
    assert d.st_size == s.st_size == 19 * MIB
    assert d.st_blocks * 512 >= 19 * MIB
    assert s.st_blocks * 512 <= 4 * MIB  # the zero chunks became holes
    with open(restored(sparse, world) + "/holes.bin", "rb") as f:
        sparse_sha = hashlib.sha256(f.read()).hexdigest()
    assert sparse_sha == tree_state(world["src"])[b"holes.bin"]["sha256"]


def test_dry_run_writes_nothing(world, tmp_path):
    target = tmp_path / "out"
    proc = run_restique(world["repo"], "-vv", "restore", "latest", "--target", target, "--dry-run")
    assert not target.exists()
    out = proc.stdout.decode("utf-8", "surrogateescape")
    assert f"restored  {world['src']}/big.bin with size 21.000 MiB" in out
    assert f"restored  {world['src']}/a/b" in out
    assert "Summary: Restored " in out


def test_overwrite_modes(world, tmp_path):
    target = tmp_path / "out"
    run_restique(world["repo"], "restore", "latest", "--target", target, "--include", "*.txt")
    hello = restored(target, world) + "/hello.txt"
    deep = restored(target, world) + "/a/b/c/deep.txt"

    def change(path, mtime_ns):
        with open(path, "wb") as f:
            f.write(b"local\n")
        os.utime(path, ns=(mtime_ns, mtime_ns))

    change(hello, OLD_NS + 10**12)  # newer than the snapshot's
    change(deep, OLD_NS - 10**12)  # older
    proc = run_restique(world["repo"], "restore", "latest", "-t", target, "--include", "*.txt", "--overwrite", "never")
    assert open(hello, "rb").read() == b"local\n" and open(deep, "rb").read() == b"local\n"
    assert ", skipped " in proc.stdout.decode()
    run_restique(world["repo"], "restore", "latest", "-t", target, "--include", "*.txt", "--overwrite", "if-newer")
    assert open(hello, "rb").read() == b"local\n"
    assert open(deep, "rb").read() == b"deep\n" and os.stat(deep).st_mtime_ns == OLD_NS + 3
    run_restique(world["repo"], "restore", "latest", "-t", target, "--include", "*.txt")  # always
    assert open(hello, "rb").read() == b"hello restic\n" and os.stat(hello).st_mtime_ns == OLD_NS + 1

    proc = run_restique(world["repo"], "restore", "latest", "-t", target, "--overwrite", "sometimes", check=False)
    assert_clean_failure(proc)
    assert b"--overwrite" in proc.stderr


def test_delete_removes_what_the_snapshot_lacks(world, tmp_path):
    target = tmp_path / "out"
    run_restique(world["repo"], "restore", "latest", "--target", target, "--include", "/**/sub")
    sub = restored(target, world) + "/sub"
    os.makedirs(sub + "/extra-dir/deeper")
    _write(sub + "/extra-dir/deeper/x", b"x")
    _write(sub + "/extra.txt", b"x")
    _write(str(target) + "/outside-the-selection", b"x")
    proc = run_restique(world["repo"], "-vv", "restore", "latest", "-t", target, "--include", "/**/sub",
                        "--delete", "--dry-run")
    assert os.path.exists(sub + "/extra.txt")
    assert f"deleted   {sub}/extra-dir/deeper/x" in proc.stdout.decode()
    proc = run_restique(world["repo"], "restore", "latest", "-t", target, "--include", "/**/sub", "--delete")
    assert ", deleted 4 files/dirs" in proc.stdout.decode()
    assert sorted(os.listdir(sub)) == sorted(os.listdir(world["src"] + "/sub"))
    assert os.path.exists(str(target) + "/outside-the-selection")


def test_json_summary(world, tmp_path):
    proc = run_restique(world["repo"], "--json", "restore", "latest", "-t", tmp_path / "out", "--include", "/**/a")
    lines = proc.stdout.decode().splitlines()
    assert len(lines) == 1
    summary = json.loads(lines[0])
    assert list(summary)[0] == "message_type" and summary["message_type"] == "summary"
    parents = world["src"].count("/")  # the directories above and including src
    assert summary["total_files"] == summary["files_restored"] == parents + 6  # a, b, c, 3 files
    assert summary["total_bytes"] == summary["bytes_restored"] == len(b"deep\nupper case extension\n# two\n")
    assert set(summary) <= {"message_type", "seconds_elapsed", "total_files", "files_restored", "files_skipped",
                            "files_deleted", "total_bytes", "bytes_restored", "bytes_skipped"}


# --------------------------------------------------------------------------------------------
# (4) a damaged pack


def _snapshot_nodes(repo_path) -> dict:
    """path -> Node of every entry of the latest snapshot, read with restique's walker."""
    from restique.operations.snapshot_lookup import find_snapshot_id, load_snapshot
    from restique.operations.walker import walk
    from restique.repository.repository import open_repository

    with open_repository(str(repo_path), PASSWORD) as repo:
        tree = load_snapshot(repo, find_snapshot_id(repo, "latest")).tree
        return dict(walk(repo, tree))


def _blob_of(repo_path, file_path):
    """(pack id, offset, length) of the first data blob of file_path in the latest snapshot."""
    from restique.repository.repository import open_repository

    node = _snapshot_nodes(repo_path)[file_path]
    with open_repository(str(repo_path), PASSWORD) as repo:
        loc = repo.load_index().lookup("data", node.content[0])
        return loc.pack_id, loc.offset, loc.length


def test_damaged_pack(world, tmp_path):
    repo = tmp_path / "repo"
    shutil.copytree(world["repo"], repo)
    victim = world["src"] + "/sub/inner.txt"
    pack_id, offset, length = _blob_of(repo, victim)
    pack = repo / "data" / pack_id[:2] / pack_id
    os.chmod(pack, 0o600)
    with open(pack, "r+b") as f:
        f.seek(offset + length // 2)
        byte = f.read(1)
        f.seek(offset + length // 2)
        f.write(bytes([byte[0] ^ 0x40]))

    target = tmp_path / "out"
    proc = run_restique(repo, "restore", "latest", "--target", target, check=False)
    assert_clean_failure(proc)
    err = proc.stderr.decode()
    assert f"ignoring error for {victim}: " in err
    assert err.rstrip("\n").endswith("Fatal: There were 1 errors")
    mine = tree_state(restored(target, world))
    theirs = tree_state(world["restic_out"])
    assert b"sub/inner.txt" not in mine  # not left behind half restored
    del theirs[b"sub/inner.txt"]
    # everything else is complete (the directory holding the victim keeps its restore time)
    assert [d for d in diff_states(theirs, mine) if d[:2] != (b"sub", "mtime")] == []


# --------------------------------------------------------------------------------------------
# the walker


def test_walker_order_matches_restic_ls(world):
    from restique.operations.snapshot_lookup import find_snapshot_id, load_snapshot
    from restique.operations.walker import walk
    from restique.repository.repository import open_repository

    listing = run_restic(world["repo"], "ls", "latest").stdout.split(b"\n")[1:-1]
    with open_repository(str(world["repo"]), PASSWORD) as repo:
        tree = load_snapshot(repo, find_snapshot_id(repo, "latest")).tree
        mine = [os.fsencode(p) for p, _ in walk(repo, tree)]
        pruned = [p for p, _ in walk(repo, tree, descend=lambda p, n: n.name != "a")]
    assert mine == listing
    assert world["src"] + "/a" in pruned and world["src"] + "/a/b" not in pruned
    assert len(pruned) == len(mine) - 5
