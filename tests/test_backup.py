"""restique backup, checked against the real restic 0.14 (the oracle).

What is shown here (each point one or more test functions):

1. every kind of directory entry survives `restique backup` + `restic restore` exactly, restic's
   `check --read-data` accepts the result, and restique's trees equal the trees restic writes
   for the same directory (`restic ls -l` and the tree blobs themselves);
2. deduplication works in both directions between restique and restic, and parents are used;
3. tags, host, time and paths of the snapshot;
4. file selection options store the same set of paths as restic does;
5. --dry-run writes nothing;
6. --json output and the summary's counts;
7. exit code 3 for unreadable files (restique run as user nobody);
8. missing targets / no targets;
9. --stdin and --stdin-from-command;
10. Ctrl-C leaves a consistent, unlocked repository.

Costs: every restic/restique run pays ~0.3-0.5 s of key derivation, so the source trees and
the repositories that tests only read are module fixtures. Source trees get fixed mtimes and
atimes in the future (so that relatime never changes an atime when a backup reads a file,
which keeps the trees written by two backups of the same directory identical). Backups of
those trees are made with a relative target from the tree's parent directory, so the saved
tree does not contain the (changing) pytest temporary directories above it.
"""
import base64
import hashlib
import json
import os
import random
import re
import shutil
import signal
import stat
import subprocess
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta, timezone
from pathlib import Path
from types import SimpleNamespace

import pytest

from conftest import (TRACEBACK, both, clean_env, restic_path, restique_cmd, run_program,
                      run_restic as restic, run_restique as restique)

KiB = 1 << 10
MiB = 1 << 20

BASE_MTIME_NS = 1_600_000_000_123_456_789  # 2020-09-13, with nanoseconds
FUTURE_ATIME_NS = 1_900_000_000_987_654_321  # 2030: relatime never updates such an atime

SUMMARY_FIELDS = [
    "files_new", "files_changed", "files_unmodified", "dirs_new", "dirs_changed",
    "dirs_unmodified", "data_blobs", "tree_blobs", "data_added", "data_added_packed",
    "total_files_processed", "total_bytes_processed", "total_duration", "backup_start",
    "backup_end", "snapshot_id",
]
# the fields restic 0.14 has too, with values that must agree between the two programs
COUNT_FIELDS = [
    "files_new", "files_changed", "files_unmodified", "dirs_new", "dirs_changed",
    "dirs_unmodified", "data_blobs", "tree_blobs", "total_files_processed",
    "total_bytes_processed",
]


def show(proc) -> str:
    return (f"exit {proc.returncode}\nstdout:\n{proc.stdout.decode(errors='replace')[-3000:]}\n"
            f"stderr:\n{proc.stderr.decode(errors='replace')[-3000:]}")


SAVED = re.compile(rb"^snapshot ([0-9a-f]{8,64}) saved$", re.M)


def saved_id(proc) -> str:
    """The snapshot id a backup reports (text `snapshot X saved` or the JSON summary)."""
    m = SAVED.search(proc.stdout)
    if m:
        return m.group(1).decode()
    for line in proc.stdout.splitlines():
        if line.startswith(b"{") and b'"summary"' in line:
            sid = json.loads(line).get("snapshot_id")
            if sid:
                return sid
    raise AssertionError(f"backup did not report a saved snapshot:\n{show(proc)}")


def json_summary(proc) -> dict:
    lines = [l for l in proc.stdout.splitlines() if l.strip()]
    assert lines, f"no output from a --json backup:\n{show(proc)}"
    last = json.loads(lines[-1])
    assert last.get("message_type") == "summary", f"last line is not the summary:\n{show(proc)}"
    return last


TEXT_COUNTS = re.compile(rb"^(Files|Dirs):\s+(\d+) new,\s+(\d+) changed,\s+(\d+) unmodified$", re.M)


def text_counts(proc) -> dict:
    """{'Files': (new, changed, unmodified), 'Dirs': (...)} from restic's text summary."""
    found = {m.group(1).decode(): tuple(int(m.group(i)) for i in (2, 3, 4))
             for m in TEXT_COUNTS.finditer(proc.stdout)}
    assert set(found) == {"Files", "Dirs"}, f"no Files:/Dirs: summary lines:\n{show(proc)}"
    return found


def snapshots(repo) -> list:
    return json.loads(restic(repo, "snapshots", "--json", "--no-lock").stdout)


def snapshot(repo, sid) -> dict:
    matches = [s for s in snapshots(repo) if s["id"].startswith(sid)]
    assert len(matches) == 1, f"snapshot {sid} not found (once) in {repo}: {matches}"
    return matches[0]


def list_ids(repo, kind) -> list:
    return restic(repo, "list", kind, "--no-lock").stdout.decode().split()


def ls_paths(repo, sid) -> set:
    """The paths stored in a snapshot, from `restic ls --json` (restic is the reader)."""
    out = restic(repo, "ls", "--json", "--no-lock", sid).stdout
    paths = set()
    for line in out.splitlines():
        obj = json.loads(line)
        if obj.get("struct_type") == "node":
            paths.add(obj["path"])
    return paths


def cat_json(repo, kind, blob_id):
    return json.loads(restic(repo, "cat", kind, blob_id, "--no-lock").stdout)


def load_trees(repo, root_tree: str) -> dict:
    """All trees below root_tree: {dir path in the snapshot ('' = root): (tree id, raw blob)},
    read with `restic cat blob`, one tree level at a time, in parallel."""
    trees = {}
    level = [("", root_tree)]
    with ThreadPoolExecutor(max_workers=4) as pool:
        while level:
            raws = list(pool.map(
                lambda item: restic(repo, "cat", "blob", item[1], "--no-lock").stdout, level))
            nxt = []
            for (path, tid), raw in zip(level, raws):
                trees[path] = (tid, raw)
                for node in json.loads(raw)["nodes"]:
                    if node["type"] == "dir":
                        nxt.append((f"{path}/{node['name']}", node["subtree"]))
            level = nxt
    return trees


def repo_files(repo: Path) -> set:
    """Every file in a repository except lock files."""
    found = set()
    for dirpath, _, files in os.walk(repo):
        rel = os.path.relpath(dirpath, repo)
        if rel == "locks" or rel.startswith("locks" + os.sep):
            continue
        for f in files:
            found.add(os.path.join(rel, f))
    return found


def go_time(text: str) -> datetime:
    """Parse an RFC 3339 time as Go writes it (up to 9 fractional digits, Z or +hh:mm)."""
    m = re.fullmatch(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d{1,9}))?(Z|[+-]\d\d:\d\d)", text)
    assert m, f"not an RFC 3339 time: {text!r}"
    frac = (m.group(2) or "").ljust(6, "0")[:6]
    tz = "+00:00" if m.group(3) == "Z" else m.group(3)
    return datetime.fromisoformat(f"{m.group(1)}.{frac}{tz}")


# --------------------------------------------------------------------------------------------
# source trees


def rand_bytes(seed, n: int) -> bytes:
    r = random.Random(seed)
    out = bytearray()
    while len(out) < n:
        out += r.randbytes(min(MiB, n - len(out)))
    return bytes(out)


def walk(root: bytes, rel: bytes = b""):
    """Relative paths (bytes) of everything below root, parents before children, sorted."""
    out = []
    for entry in sorted(os.scandir(os.path.join(root, rel) if rel else root), key=lambda e: e.name):
        sub = os.path.join(rel, entry.name) if rel else entry.name
        out.append(sub)
        if entry.is_dir(follow_symlinks=False):
            out.extend(walk(root, sub))
    return out


def fix_times(root: Path) -> None:
    """Give every entry its own fixed mtime (with nanoseconds) and a future atime; children
    first, the root last, so that setting times does not disturb a parent's mtime."""
    rootb = os.fsencode(root)
    entries = walk(rootb)
    for i, rel in reversed(list(enumerate(entries, start=1))):
        os.utime(os.path.join(rootb, rel), ns=(FUTURE_ATIME_NS + i, BASE_MTIME_NS + i * 1_000_000_007),
                 follow_symlinks=False)
    os.utime(rootb, ns=(FUTURE_ATIME_NS, BASE_MTIME_NS))


NON_UTF8_TARGET = b"/tmp/\xff\xfe"


def build_full_tree(root: Path) -> None:
    """Every kind of entry restic knows about."""
    rb = os.fsencode(root)

    def p(rel):
        return os.path.join(rb, rel if isinstance(rel, bytes) else rel.encode())

    def write(rel, data=b"", mode=0o644):
        path = p(rel)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "wb") as f:
            f.write(data)
        os.chmod(path, mode)

    os.makedirs(rb)
    write("empty.txt")
    write("small.txt", b"hello restique\n")
    write("random20m.bin", rand_bytes(1, 20 * MiB))  # several chunks
    write("nested/a/b/c/deep.txt", b"deep file\n")
    write("nested/a/other.txt", b"owned by 4242\n", 0o600)
    os.chown(p("nested/a/other.txt"), 4242, 4242)
    os.makedirs(p("nested/a/b/empty-dir"))
    os.makedirs(p("links"))
    os.symlink("../small.txt", p("links/relative"))
    os.symlink("/etc/passwd", p("links/absolute"))
    os.symlink("/nonexistent/target", p("links/dangling"))
    os.symlink(NON_UTF8_TARGET, p("links/non-utf8-target"))
    write("hardlink-1.txt", b"linked content\n")
    os.link(p("hardlink-1.txt"), p("hardlink-2.txt"))
    os.mkfifo(p("fifo"))
    os.mknod(p("chardev"), stat.S_IFCHR | 0o644, os.makedev(1, 3))
    write("setuid.sh", b"#!/bin/sh\necho hi\n", 0o755)
    os.chmod(p("setuid.sh"), 0o4755)
    write("setgid.sh", b"#!/bin/sh\necho sg\n", 0o755)
    os.chmod(p("setgid.sh"), 0o2750)
    write("sticky/inside.txt", b"in a sticky dir\n")
    os.chmod(p("sticky"), 0o1777)
    write("xattr.txt", b"has xattrs\n")
    os.setxattr(p("xattr.txt"), "user.test", b"v")
    os.setxattr(p("xattr.txt"), "user.binary", b"\x00\xff\x01")
    write(b"caf\xe9.txt", b"latin-1 name\n")
    write(b"dir-\xff\xfe/inner.txt", b"inside a non-UTF-8 directory name\n")
    write("tab\tname.txt", b"tab\n")
    write("unicod\u00e9 \u00fc.txt", b"unicode name\n")
    write("mode600.txt", b"private\n", 0o600)
    fix_times(root)


def build_data_tree(root: Path) -> None:
    """A tree for the selection, dedup, dry-run and exit-code tests."""
    files = {
        "docs/readme.txt": b"Hello restic\n",
        "docs/notes/todo.md": b"- buy milk\n- write code\n",
        "docs/notes/deep/a.txt": b"deep file\n",
        "logs/app.log": b"log line 1\nlog line 2\n",
        "logs/debug.LOG": b"DEBUG\n",
        "logs/sub/x.log": b"x\n",
        "logs/keep.txt": b"keep me\n",
        "cache/CACHEDIR.TAG": b"Signature: 8a477f597d28d172789f06886806bc55\n# a cache directory\n",
        "cache/cached.bin": rand_bytes(2, 4096),
        "cache/sub/more.bin": b"more cache\n",
        "fakecache/CACHEDIR.TAG": b"Signature: not the right one\n",
        "fakecache/f.bin": b"not a cache\n",
        "skipme/.nobackup": b"",
        "skipme/inner.txt": b"inner\n",
        "skipme/sub/deeper.txt": b"deeper\n",
        "photos/img1.jpg": rand_bytes(3, 100 * KiB),
        "photos/IMG2.JPG": rand_bytes(4, 50 * KiB),
        "photos/.hidden.jpg": b"a dot file\n",
        "big.bin": rand_bytes(5, 5 * MiB),  # several chunks
        "exactly1k.bin": rand_bytes(6, 1024),
        "over1k.bin": rand_bytes(7, 1025),
        "empty.txt": b"",
        "dir with space/file with space.txt": b"spaces\n",
        "weird/star*name.txt": b"a literal star\n",
        "hardlink-a.txt": b"linked\n",
    }
    for rel, data in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    os.link(root / "hardlink-a.txt", root / "hardlink-b.txt")
    os.symlink("docs/readme.txt", root / "link-to-readme")
    fix_times(root)


def count_files(root: Path) -> int:
    """Regular files (what restic's `Files:` line and files_* counters count)."""
    rb = os.fsencode(root)
    return sum(1 for rel in walk(rb) if stat.S_ISREG(os.lstat(os.path.join(rb, rel)).st_mode))


def count_dirs(root: Path) -> int:
    """Directories including root itself (a relative target's saved directories)."""
    rb = os.fsencode(root)
    return 1 + sum(1 for rel in walk(rb) if stat.S_ISDIR(os.lstat(os.path.join(rb, rel)).st_mode))


def user_xattrs(path: bytes) -> dict:
    return {name: os.getxattr(path, name, follow_symlinks=False)
            for name in sorted(os.listxattr(path, follow_symlinks=False)) if name.startswith("user.")}


def file_digest(path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(8 * MiB):
            h.update(chunk)
    return h.hexdigest()


def compare_trees(orig: Path, restored: Path, skip_link_targets=()) -> list:
    """Differences between two directory trees: entry set, type, mode (with setuid/setgid/
    sticky), owner, mtime in ns, content, symlink target, device number, user xattrs, and
    hard links (entries sharing an inode in orig must share one in restored)."""
    ob, rb = os.fsencode(orig), os.fsencode(restored)
    problems = []
    o_entries, r_entries = walk(ob), walk(rb)
    if set(o_entries) != set(r_entries):
        problems.append(f"entries missing after restore: {sorted(set(o_entries) - set(r_entries))}; "
                        f"unexpected: {sorted(set(r_entries) - set(o_entries))}")
    inodes = {}
    for rel in [b""] + o_entries:
        if rel not in r_entries and rel != b"":
            continue
        op, rp = os.path.join(ob, rel) if rel else ob, os.path.join(rb, rel) if rel else rb
        a, b = os.lstat(op), os.lstat(rp)
        name = rel.decode(errors="backslashreplace") or "."
        if stat.S_IFMT(a.st_mode) != stat.S_IFMT(b.st_mode):
            problems.append(f"{name}: type {stat.filemode(a.st_mode)} became {stat.filemode(b.st_mode)}")
            continue
        if stat.S_IMODE(a.st_mode) != stat.S_IMODE(b.st_mode):
            problems.append(f"{name}: mode {oct(stat.S_IMODE(a.st_mode))} became {oct(stat.S_IMODE(b.st_mode))}")
        if (a.st_uid, a.st_gid) != (b.st_uid, b.st_gid):
            problems.append(f"{name}: owner {a.st_uid}:{a.st_gid} became {b.st_uid}:{b.st_gid}")
        if a.st_mtime_ns != b.st_mtime_ns:
            problems.append(f"{name}: mtime {a.st_mtime_ns} became {b.st_mtime_ns} (ns)")
        if stat.S_ISREG(a.st_mode):
            if a.st_size != b.st_size or file_digest(op) != file_digest(rp):
                problems.append(f"{name}: content differs (size {a.st_size} -> {b.st_size})")
            if a.st_nlink > 1:
                inodes.setdefault(a.st_ino, []).append(rel)
        if stat.S_ISLNK(a.st_mode) and rel not in skip_link_targets:
            if os.readlink(op) != os.readlink(rp):
                problems.append(f"{name}: symlink target {os.readlink(op)!r} became {os.readlink(rp)!r}")
        if stat.S_ISCHR(a.st_mode) or stat.S_ISBLK(a.st_mode):
            if a.st_rdev != b.st_rdev:
                problems.append(f"{name}: device {a.st_rdev} became {b.st_rdev}")
        if not stat.S_ISLNK(a.st_mode) and user_xattrs(op) != user_xattrs(rp):
            problems.append(f"{name}: xattrs {user_xattrs(op)} became {user_xattrs(rp)}")
    for ino, rels in inodes.items():
        if len(rels) > 1:
            restored_inodes = {os.lstat(os.path.join(rb, r)).st_ino for r in rels if r in r_entries}
            if len(restored_inodes) != 1:
                problems.append(f"hard links {rels} are not one inode after restore: {restored_inodes}")
    return problems


# --------------------------------------------------------------------------------------------
# fixtures



@pytest.fixture(scope="module")
def full(tmp_path_factory):
    """The every-kind-of-entry tree, backed up by restique and, right after and with --force,
    by restic into the same repository."""
    base = tmp_path_factory.mktemp("full")
    tree = base / "tree"
    build_full_tree(tree)
    repo = base / "repo"
    restic(repo, "init")
    ours = restique(repo, "backup", "tree", cwd=base)
    theirs = restic(repo, "backup", "--force", "tree", cwd=base)
    ours_snap = snapshot(repo, saved_id(ours))
    theirs_snap = snapshot(repo, saved_id(theirs))
    return SimpleNamespace(base=base, tree=tree, repo=repo, ours=ours, theirs=theirs,
                           ours_snap=ours_snap, theirs_snap=theirs_snap)


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    base = tmp_path_factory.mktemp("data")
    tree = base / "data"
    build_data_tree(tree)
    return SimpleNamespace(base=base, tree=tree, files=count_files(tree), dirs=count_dirs(tree))


@pytest.fixture(scope="module")
def misc_repo(tmp_path_factory):
    """A restic-initialised repository shared by the small tests that add snapshots to it."""
    repo = tmp_path_factory.mktemp("misc") / "repo"
    restic(repo, "init")
    return repo


# --------------------------------------------------------------------------------------------
# 1. every entry kind, restored by restic


def test_full_tree_backup_reports_like_restic(full):
    """restique's text summary counts the same files and directories restic counts for the
    same tree (restic's run is with --force, so everything is `new` for both)."""
    assert full.ours.stdout.startswith(b"no parent snapshot found, will read all files\n\n"), show(full.ours)
    assert text_counts(full.ours) == text_counts(full.theirs), (
        f"restique:\n{show(full.ours)}\nrestic:\n{show(full.theirs)}")
    processed = re.compile(rb"^processed (\d+ files, .*) in \d+:\d\d$", re.M)
    ours_p, theirs_p = processed.search(full.ours.stdout), processed.search(full.theirs.stdout)
    assert ours_p, f"no `processed N files, SIZE in M:SS` line:\n{show(full.ours)}"
    assert ours_p.group(1) == theirs_p.group(1)
    assert full.ours.returncode == 0 and full.ours.stderr == b"", show(full.ours)


def test_full_tree_passes_restic_check_read_data(full):
    proc = restic(full.repo, "check", "--read-data", check=False)
    assert proc.returncode == 0 and b"no errors were found" in proc.stdout, show(proc)


def test_full_tree_restored_by_restic_is_identical(full, tmp_path):
    """restic restores everything: content, modes (setuid/setgid/sticky), owners, mtimes in
    ns, symlink targets, hard links, xattrs, fifo and device. Only the non-UTF-8 symlink
    target cannot be restored by restic 0.14 (it does not know linktarget_raw); that one is
    checked in test_full_tree_non_utf8_symlink_target_is_stored_raw."""
    target = tmp_path / "restored"
    proc = restic(full.repo, "restore", full.ours_snap["id"], "--target", target, check=False)
    assert proc.returncode == 0, show(proc)
    problems = compare_trees(full.tree, target / "tree", skip_link_targets={b"links/non-utf8-target"})
    assert not problems, "restic restore of restique's snapshot differs:\n" + "\n".join(problems)
    assert os.path.islink(target / "tree/links/non-utf8-target")


def test_full_tree_restored_by_restique_is_identical(full, tmp_path):
    """The same with restique's own restore, which also restores the non-UTF-8 target."""
    target = tmp_path / "restored"
    proc = restique(full.repo, "restore", full.ours_snap["id"], "--target", target, check=False)
    assert proc.returncode == 0, show(proc)
    problems = compare_trees(full.tree, target / "tree")
    assert not problems, "restique restore of restique's snapshot differs:\n" + "\n".join(problems)


@pytest.fixture(scope="module")
def full_trees(full):
    """All trees of restique's and of restic's snapshot of the full tree."""
    ours, theirs = both([
        (load_trees, (full.repo, full.ours_snap["tree"]), {}),
        (load_trees, (full.repo, full.theirs_snap["tree"]), {}),
    ])
    return SimpleNamespace(ours=ours, theirs=theirs)


def test_full_tree_non_utf8_symlink_target_is_stored_raw(full_trees):
    trees = full_trees.ours
    nodes = {n["name"]: n for n in json.loads(trees["/tree/links"][1])["nodes"]}
    node = nodes["non-utf8-target"]
    assert node["type"] == "symlink"
    assert node.get("linktarget_raw") == base64.b64encode(NON_UTF8_TARGET).decode(), node
    assert node["linktarget"] == "/tmp/\ufffd\ufffd", node
    # ... and only there: valid UTF-8 targets have no linktarget_raw (as in restic)
    for name in ("relative", "absolute", "dangling"):
        assert "linktarget_raw" not in nodes[name], nodes[name]
    root_names = {n["name"] for n in json.loads(trees["/tree"][1])["nodes"]}
    assert "caf\\xe9.txt" in root_names and "dir-\\xff\\xfe" in root_names, (
        f"non-UTF-8 names must be stored Go-quoted, as restic does: {sorted(root_names)}")


def test_full_tree_restic_ls_l_matches_restic_snapshot(full):
    """`restic ls -l` of restique's snapshot and of restic's snapshot of the same tree are
    identical apart from the header line."""
    ours, theirs = both([
        (restic, (full.repo, "ls", "-l", "--no-lock", full.ours_snap["id"]), {}),
        (restic, (full.repo, "ls", "-l", "--no-lock", full.theirs_snap["id"]), {}),
    ])
    ours_lines, theirs_lines = ours.stdout.splitlines()[1:], theirs.stdout.splitlines()[1:]
    assert len(theirs_lines) > 20
    diff = [(a, b) for a, b in zip(ours_lines, theirs_lines) if a != b]
    assert ours_lines == theirs_lines, (
        f"restique vs restic `ls -l` lines differ: {diff[:10]}; "
        f"counts {len(ours_lines)} vs {len(theirs_lines)}")


def test_full_tree_nodes_match_restic_nodes(full_trees):
    """Stronger than ls -l: every node of every tree equals restic's node for the same entry
    (all fields, content blob ids included: both snapshots are in the same repository), except
    linktarget_raw, which restic 0.14 does not write, and the subtree ids that depend on it."""
    ours, theirs = full_trees.ours, full_trees.theirs
    assert sorted(ours) == sorted(theirs), "different directories"
    problems = []
    for path in sorted(theirs):
        o_nodes = json.loads(ours[path][1])["nodes"]
        t_nodes = json.loads(theirs[path][1])["nodes"]
        if [n["name"] for n in o_nodes] != [n["name"] for n in t_nodes]:
            problems.append(f"{path}: names {[n['name'] for n in o_nodes]} vs {[n['name'] for n in t_nodes]}")
            continue
        for o, t in zip(o_nodes, t_nodes):
            o = {k: v for k, v in o.items() if k not in ("linktarget_raw", "subtree")}
            t = {k: v for k, v in t.items() if k != "subtree"}
            if o != t:
                keys = sorted(k for k in set(o) | set(t) if o.get(k) != t.get(k))
                problems.append(f"{path}/{t['name']}: " + ", ".join(
                    f"{k}: restique {o.get(k, '<absent>')!r} restic {t.get(k, '<absent>')!r}" for k in keys))
    assert not problems, "tree nodes differ from restic's:\n" + "\n".join(problems)
    # trees without the non-UTF-8 symlink (and not above it) must be byte-identical
    for path in theirs:
        if path not in ("", "/tree", "/tree/links"):
            assert ours[path][0] == theirs[path][0], (
                f"tree {path}: restique blob {ours[path][1][:300]!r} vs restic {theirs[path][1][:300]!r}")


# --------------------------------------------------------------------------------------------
# 2. dedup both ways, parent use


@pytest.fixture(scope="module")
def dedup_restique_first(data, tmp_path_factory):
    repo = tmp_path_factory.mktemp("dedup-a") / "repo"
    restic(repo, "init")
    first = restique(repo, "backup", "data", cwd=data.base)
    second = restique(repo, "backup", "data", cwd=data.base)
    restic_json = restic(repo, "backup", "--json", "data", cwd=data.base)
    restic_force = restic(repo, "backup", "-v", "--force", "data", cwd=data.base)
    return SimpleNamespace(repo=repo, first=first, second=second, restic_json=restic_json,
                           restic_force=restic_force)


@pytest.fixture(scope="module")
def dedup_restic_first(data, tmp_path_factory):
    repo = tmp_path_factory.mktemp("dedup-b") / "repo"
    restic(repo, "init")
    first = restic(repo, "backup", "data", cwd=data.base)
    ours_json = restique(repo, "backup", "--json", "data", cwd=data.base)
    ours_force = restique(repo, "backup", "--json", "--force", "data", cwd=data.base)
    return SimpleNamespace(repo=repo, first=first, ours_json=ours_json, ours_force=ours_force)


def test_restique_second_backup_uses_parent(dedup_restique_first, data):
    d = dedup_restique_first
    first_id = saved_id(d.first)
    assert d.second.stdout.startswith(f"using parent snapshot {first_id[:8]}\n\n".encode()), show(d.second)
    assert text_counts(d.second) == {"Files": (0, 0, data.files), "Dirs": (0, 0, data.dirs)}, show(d.second)
    assert b"Added to the repository: 0 B   (0 B   stored)\n" in d.second.stdout, show(d.second)


def test_restic_after_restique_adds_no_data(dedup_restique_first, data):
    """restic uses restique's snapshot as parent (every file unmodified) and adds nothing;
    with --force it re-reads and re-chunks every file and still finds all blobs."""
    d = dedup_restique_first
    s = json_summary(d.restic_json)
    assert s["data_blobs"] == 0, f"restic added data blobs after restique's backup: {s}"
    assert s["files_unmodified"] == data.files, f"restic did not reuse restique's snapshot as parent: {s}"
    assert s["tree_blobs"] == 0 and s["dirs_unmodified"] == data.dirs, (
        f"restic wrote different trees than restique for an unchanged directory: {s}")
    assert re.search(rb"^Data Blobs:\s+0 new$", d.restic_force.stdout, re.M), show(d.restic_force)
    assert re.search(rb"^Tree Blobs:\s+0 new$", d.restic_force.stdout, re.M), show(d.restic_force)


def test_restique_after_restic_adds_no_data(dedup_restic_first, data):
    d = dedup_restic_first
    s = json_summary(d.ours_json)
    assert s["data_blobs"] == 0, f"restique added data blobs after restic's backup: {s}"
    assert s["files_unmodified"] == data.files, f"restique did not use restic's snapshot as parent: {s}"
    assert s["tree_blobs"] == 0 and s["dirs_unmodified"] == data.dirs, (
        f"restique wrote different trees than restic for an unchanged directory: {s}")
    f = json_summary(d.ours_force)
    assert f["data_blobs"] == 0 and f["tree_blobs"] == 0 and f["files_new"] == data.files, (
        f"restique --force (re-reading every file) added blobs restic had already stored: {f}")
    assert f["data_added"] == 0, f


# --------------------------------------------------------------------------------------------
# 3. snapshot metadata


def test_snapshot_tags_host_time_and_absolute_paths(data, misc_repo, tmp_path):
    """--tag a --tag b,c, --host, --time in local time (here UTC+05:30 via TZ) and a relative
    target; restic stores the same for the same options."""
    if not os.path.exists("/usr/share/zoneinfo/Asia/Kolkata"):
        pytest.fail("tzdata (/usr/share/zoneinfo/Asia/Kolkata) is needed by this test")
    env = clean_env(TZ="Asia/Kolkata")
    args = ["backup", "--tag", "a", "--tag", "b,c", "--host", "H", "--time", "2020-01-02 03:04:05", "docs"]
    oracle_repo = tmp_path / "repo"
    restic(oracle_repo, "init")
    ours, theirs = both([
        (restique, (misc_repo, *args), dict(cwd=data.tree, env=env)),
        (restic, (oracle_repo, *args), dict(cwd=data.tree, env=env)),
    ])
    snap = snapshot(misc_repo, saved_id(ours))
    ref = snapshot(oracle_repo, saved_id(theirs))
    assert snap["tags"] == ["a", "b", "c"], snap
    assert snap["hostname"] == "H", snap
    assert snap["paths"] == [str(data.tree / "docs")], snap
    expected = datetime(2020, 1, 2, 3, 4, 5, tzinfo=timezone(timedelta(hours=5, minutes=30)))
    assert go_time(snap["time"]) == expected, snap["time"]
    assert snap["time"] == ref["time"], f"restique {snap['time']} vs restic {ref['time']}"
    for key in ("tags", "hostname", "paths", "username"):
        assert snap.get(key) == ref.get(key), f"{key}: restique {snap.get(key)!r} vs restic {ref.get(key)!r}"


# --------------------------------------------------------------------------------------------
# 4. selection options: the same paths as restic


@pytest.fixture(scope="module")
def selection_repos(tmp_path_factory):
    base = tmp_path_factory.mktemp("selection")
    ours, theirs = base / "restique-repo", base / "restic-repo"
    both([(restic, (ours, "init"), {}), (restic, (theirs, "init"), {})])
    return SimpleNamespace(base=base, ours=ours, theirs=theirs)


def _lists(data, base):
    d = str(data.tree)
    (base / "excludes.txt").write_text("# a comment\n\n  *.bin  \nphotos/*.jpg\n   \nlogs\n")
    (base / "files-from.txt").write_text(
        f"# list of files\n{d}/docs\n\n{d}/photos/*.jpg\n{d}/skipme/*\n{d}/empty.txt\n")
    (base / "files-from-verbatim.txt").write_text(f"{d}/docs\n{d}/dir with space\n{d}/weird/star*name.txt\n")
    (base / "files-from-raw.bin").write_bytes(
        f"{d}/docs/readme.txt\0{d}/dir with space/file with space.txt\0{d}/big.bin\0".encode())


SELECTIONS = {
    "exclude": ["--exclude", "*.log", "{tree}"],
    "iexclude": ["--iexclude", "*.LOG", "{tree}"],
    "exclude-file": ["--exclude-file", "{base}/excludes.txt", "{tree}"],
    "exclude-caches": ["--exclude-caches", "{tree}"],
    "exclude-if-present": ["--exclude-if-present", ".nobackup", "{tree}"],
    "exclude-larger-than": ["--exclude-larger-than", "1K", "{tree}"],
    "files-from": ["--files-from", "{base}/files-from.txt"],
    "files-from-verbatim": ["--files-from-verbatim", "{base}/files-from-verbatim.txt"],
    "files-from-raw": ["--files-from-raw", "{base}/files-from-raw.bin"],
}

# a few entries each selection must (True) or must not (False) store, relative to the tree;
# the comparison with restic is the real check, these make a failure easier to read
SELECTION_SPOTS = {
    "exclude": {"logs/app.log": False, "logs/sub/x.log": False, "logs/debug.LOG": True},
    "iexclude": {"logs/app.log": False, "logs/sub/x.log": False, "logs/debug.LOG": False, "logs/keep.txt": True},
    "exclude-file": {"big.bin": False, "photos/img1.jpg": False, "logs": False, "photos/IMG2.JPG": True},
    "exclude-caches": {"cache/CACHEDIR.TAG": True, "cache/cached.bin": False, "cache/sub": False,
                       "fakecache/f.bin": True},
    "exclude-if-present": {"skipme/.nobackup": True, "skipme/inner.txt": False, "skipme/sub": False},
    "exclude-larger-than": {"exactly1k.bin": True, "over1k.bin": False, "big.bin": False, "docs/readme.txt": True},
    "files-from": {"docs/notes/deep/a.txt": True, "photos/img1.jpg": True, "photos/IMG2.JPG": False,
                   "skipme/inner.txt": True, "empty.txt": True, "big.bin": False},
    "files-from-verbatim": {"docs/readme.txt": True, "dir with space/file with space.txt": True,
                            "weird/star*name.txt": True, "big.bin": False},
    "files-from-raw": {"docs/readme.txt": True, "big.bin": True, "docs/notes": False},
}


@pytest.mark.parametrize("name", list(SELECTIONS))
def test_selection_matches_restic(name, data, selection_repos):
    base = selection_repos.base
    _lists(data, base)
    args = [a.format(tree=data.tree, base=base) for a in SELECTIONS[name]]
    ours, theirs = both([
        (restique, (selection_repos.ours, "backup", *args), dict(check=False)),
        (restic, (selection_repos.theirs, "backup", *args), dict(check=False)),
    ])
    assert theirs.returncode == 0, show(theirs)
    assert ours.returncode == 0, f"restique backup {' '.join(args)}:\n{show(ours)}"
    ours_paths, theirs_paths = both([
        (ls_paths, (selection_repos.ours, saved_id(ours)), {}),
        (ls_paths, (selection_repos.theirs, saved_id(theirs)), {}),
    ])
    for rel, wanted in SELECTION_SPOTS[name].items():
        path = f"{data.tree}/{rel}"
        assert (path in theirs_paths) == wanted, f"test assumption about restic is wrong for {path}"
        assert (path in ours_paths) == wanted, (
            f"backup {' '.join(args)}: {path} should {'' if wanted else 'not '}be in the snapshot")
    assert ours_paths == theirs_paths, (
        f"backup {' '.join(args)}: only in restique's snapshot: {sorted(ours_paths - theirs_paths)}; "
        f"only in restic's: {sorted(theirs_paths - ours_paths)}")
    assert snapshot(selection_repos.ours, saved_id(ours))["paths"] == \
        snapshot(selection_repos.theirs, saved_id(theirs))["paths"]


# --------------------------------------------------------------------------------------------
# 5. --dry-run


def test_dry_run_writes_nothing(data, restic_repo):
    before = repo_files(restic_repo)
    text = restique(restic_repo, "backup", "--dry-run", "data", cwd=data.base)
    js = restique(restic_repo, "backup", "--dry-run", "--json", "data", cwd=data.base)
    after = repo_files(restic_repo)
    assert after == before, f"--dry-run added files to the repository: {sorted(after - before)}"
    assert list_ids(restic_repo, "snapshots") == []
    assert b"\nWould add to the repository: " in text.stdout, show(text)
    assert b"Added to the repository" not in text.stdout and not SAVED.search(text.stdout), show(text)
    assert text_counts(text) == {"Files": (data.files, 0, 0), "Dirs": (data.dirs, 0, 0)}, show(text)
    s = json_summary(js)
    assert s.get("dry_run") is True, s
    assert s["files_new"] == data.files and s["data_added"] > 5 * MiB, s
    assert list_ids(restic_repo, "locks") == []


# --------------------------------------------------------------------------------------------
# 6. --json


def build_known_tree(root: Path) -> dict:
    """Small files only (below the chunker's 512 KiB minimum), so every non-empty file is
    exactly one blob whatever the repository's chunker polynomial."""
    files = {
        "a.txt": b"alpha\n",
        "b.txt": b"bravo bravo\n",
        "dup.txt": b"alpha\n",  # same content as a.txt: no new blob
        "sub/c.txt": b"charlie\n",
        "sub/empty": b"",  # no blob at all
        "sub/deeper/d.bin": rand_bytes(8, 300 * KiB),
    }
    for rel, content in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(content)
    fix_times(root)
    return files


def test_json_output_and_summary(tmp_path_factory):
    base = tmp_path_factory.mktemp("known")
    files = build_known_tree(base / "known")
    ours_repo, theirs_repo = base / "restique-repo", base / "restic-repo"
    both([(restic, (ours_repo, "init"), {}), (restic, (theirs_repo, "init"), {})])
    wall_start = datetime.now(timezone.utc)
    ours = restique(ours_repo, "backup", "--json", "known", cwd=base)
    wall_end = datetime.now(timezone.utc)
    theirs = restic(theirs_repo, "backup", "--json", "known", cwd=base)

    lines = ours.stdout.splitlines()
    assert lines and all(lines), f"empty lines in --json output:\n{show(ours)}"
    for line in lines:
        try:
            obj = json.loads(line)
        except ValueError:
            raise AssertionError(f"not JSON: {line!r}\n{show(ours)}") from None
        assert isinstance(obj, dict) and "message_type" in obj, line
    assert ours.stdout.endswith(b"}\n")
    s = json_summary(ours)
    assert list(s)[0] == "message_type"
    missing = [f for f in SUMMARY_FIELDS if f not in s]
    assert not missing, f"summary lacks {missing}: {s}"
    assert "dry_run" not in s, s

    distinct = {c for c in files.values() if c}
    expected = dict(files_new=6, files_changed=0, files_unmodified=0, dirs_new=3, dirs_changed=0,
                    dirs_unmodified=0, data_blobs=len(distinct), tree_blobs=4,
                    total_files_processed=6, total_bytes_processed=sum(map(len, files.values())))
    assert {k: s[k] for k in expected} == expected
    r = json_summary(theirs)
    assert {k: s[k] for k in COUNT_FIELDS} == {k: r[k] for k in COUNT_FIELDS}, (
        f"restique {s}\nrestic {r}")

    # data_added: the plaintext size of the new blobs, data and trees (read back with restic)
    snap = snapshot(ours_repo, s["snapshot_id"][:8])
    assert len(s["snapshot_id"]) in (8, 64) and snap["id"].startswith(s["snapshot_id"]), s
    trees = load_trees(ours_repo, snap["tree"])
    assert len({tid for tid, _ in trees.values()}) == 4
    tree_bytes = sum(len(raw) for _, raw in {tid: (tid, raw) for tid, raw in trees.values()}.values())
    assert s["data_added"] == sum(map(len, distinct)) + tree_bytes, s
    packs = sum(f.stat().st_size for f in (ours_repo / "data").rglob("*") if f.is_file())
    assert 0 < s["data_added_packed"] <= packs, (s, packs)
    assert isinstance(s["total_duration"], float) and 0 < s["total_duration"] < 60, s
    start, end = go_time(s["backup_start"]), go_time(s["backup_end"])
    slack = timedelta(seconds=2)
    assert wall_start - slack <= start <= end <= wall_end + slack, (s, wall_start, wall_end)


# --------------------------------------------------------------------------------------------
# 7. exit code 3: unreadable file (restique runs as user nobody)

DROP = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]


@pytest.fixture(scope="module")
def unreadable():
    # pytest's tmp dirs are private to root; nobody needs a world-accessible place
    d = Path(tempfile.mkdtemp(prefix="restique-nobody-", dir="/tmp"))
    try:
        os.chmod(d, 0o777)
        src = d / "data"
        (src / "sub").mkdir(parents=True)
        (src / "ok.txt").write_bytes(b"ok\n")
        (src / "sub/also-ok.txt").write_bytes(b"also ok\n")
        (src / "secret.txt").write_bytes(b"secret\n")
        (src / "locked-dir").mkdir()
        (src / "locked-dir/inner.txt").write_bytes(b"inner\n")
        os.chmod(src / "secret.txt", 0o000)  # owned by root
        os.chmod(src / "locked-dir", 0o000)
        for sub in ("home", "cache", "tmp"):
            (d / sub).mkdir()
            os.chown(d / sub, 65534, 65534)
        env = clean_env(HOME=str(d / "home"), XDG_CACHE_HOME=str(d / "cache"), TMPDIR=str(d / "tmp"))

        who = subprocess.run(DROP + ["id", "-u"], capture_output=True)
        if who.returncode != 0 or who.stdout.strip() != b"65534":
            pytest.fail(f"cannot drop privileges to nobody with setpriv in this sandbox: {who!r}")
        peek = subprocess.run(DROP + ["cat", str(src / "secret.txt")], capture_output=True)
        if peek.returncode == 0:
            pytest.fail("user nobody can read a mode-000 root file here; the test cannot make a read fail")

        ours_repo, theirs_repo = d / "restique-repo", d / "restic-repo"
        both([(run_program, (DROP + [restic_path()], "init"), dict(repo=r, env=env)) for r in (ours_repo, theirs_repo)])
        ours, theirs = both([
            (run_program, (DROP + restique_cmd(), "backup", src), dict(repo=ours_repo, env=env, cwd=d, check=False)),
            (run_program, (DROP + [restic_path()], "backup", src), dict(repo=theirs_repo, env=env, cwd=d, check=False)),
        ])
        yield SimpleNamespace(src=src, ours_repo=ours_repo, theirs_repo=theirs_repo, ours=ours, theirs=theirs)
    finally:
        shutil.rmtree(d, ignore_errors=True)


def test_unreadable_file_gives_exit_3_and_a_snapshot(unreadable):
    u = unreadable
    assert u.theirs.returncode == 3, f"restic (the oracle) behaved unexpectedly:\n{show(u.theirs)}"
    err = u.ours.stderr.decode(errors="replace").splitlines()
    secret = str(u.src / "secret.txt")
    assert any(l.startswith("error: ") and secret in l for l in err), (
        f"no `error: ...` line naming {secret}:\n{show(u.ours)}")
    assert err[-1] == "Warning: at least one source file could not be read", show(u.ours)
    assert list_ids(u.ours_repo, "snapshots") == [snapshot(u.ours_repo, saved_id(u.ours))["id"]]
    paths = ls_paths(u.ours_repo, saved_id(u.ours))
    assert secret not in paths, sorted(paths)
    assert {str(u.src / "ok.txt"), str(u.src / "sub/also-ok.txt")} <= paths, sorted(paths)
    assert u.ours.returncode == 3, show(u.ours)


def test_unreadable_error_lines_match_restic(unreadable):
    """restic prints `error: open <file>: permission denied` and, for the directory,
    `error: Open: open <dir>: permission denied` (0.14 wraps that one error once more; current
    restic prints `error: open <dir>: ...`, which restique follows)."""
    u = unreadable
    ours = sorted(l for l in u.ours.stderr.decode(errors="replace").splitlines() if l.startswith("error: "))
    theirs = sorted(l.replace("error: Open: open ", "error: open ")
                    for l in u.theirs.stderr.decode(errors="replace").splitlines() if l.startswith("error: "))
    assert f"error: open {u.src / 'secret.txt'}: permission denied" in theirs, show(u.theirs)
    assert ours == theirs, f"restique's error lines {ours}\nrestic's {theirs}"


def test_unreadable_directory_is_left_out_like_restic(unreadable):
    u = unreadable
    locked = str(u.src / "locked-dir")
    assert any(l.startswith("error: ") and locked in l
               for l in u.ours.stderr.decode(errors="replace").splitlines()), show(u.ours)
    ours = ls_paths(u.ours_repo, saved_id(u.ours))
    theirs = ls_paths(u.theirs_repo, saved_id(u.theirs))
    assert locked not in ours, sorted(ours)
    assert ours == theirs, f"only restique: {sorted(ours - theirs)}; only restic: {sorted(theirs - ours)}"


# --------------------------------------------------------------------------------------------
# 8. missing targets


def test_missing_target_among_others_is_a_warning(data, misc_repo):
    missing = data.base / "does-not-exist"
    proc = restique(misc_repo, "backup", data.tree / "docs", missing, check=False)
    assert proc.returncode == 0, show(proc)
    assert f"{missing} does not exist, skipping".encode() in proc.stderr.splitlines(), show(proc)
    assert snapshot(misc_repo, saved_id(proc))["paths"] == [str(data.tree / "docs")]


def test_all_targets_missing_fails(data, misc_repo):
    before = list_ids(misc_repo, "snapshots")
    a, b = data.base / "missing-1", data.base / "missing-2"
    proc = restique(misc_repo, "backup", a, b, check=False)
    assert proc.returncode == 1, show(proc)
    err = proc.stderr.splitlines()
    assert f"{a} does not exist, skipping".encode() in err and f"{b} does not exist, skipping".encode() in err, show(proc)
    assert err[-1].startswith(b"Fatal: ") and b"do not exist" in err[-1], show(proc)
    assert list_ids(misc_repo, "snapshots") == before


def test_no_arguments_fails(misc_repo):
    before = list_ids(misc_repo, "snapshots")
    for extra in ([], ["--json"]):
        proc = restique(misc_repo, "backup", *extra, check=False)
        assert proc.returncode == 1, show(proc)
        assert proc.stderr.startswith(b"Fatal: nothing to backup, please specify "), show(proc)
        assert len(proc.stderr.splitlines()) == 1 and proc.stdout == b"", show(proc)
    assert list_ids(misc_repo, "snapshots") == before


# --------------------------------------------------------------------------------------------
# 9. --stdin, --stdin-from-command


def test_stdin_with_filename(misc_repo):
    content = b"CREATE TABLE t (id int);\n" * 1000
    proc = restique(misc_repo, "backup", "--stdin", "--stdin-filename", "db.sql", input=content)
    sid = saved_id(proc)
    assert restic(misc_repo, "dump", "--no-lock", sid, "/db.sql").stdout == content
    assert restic(misc_repo, "ls", "--no-lock", sid).stdout.splitlines()[1:] == [b"/db.sql"]
    assert snapshot(misc_repo, sid)["paths"] == ["/db.sql"]


def test_stdin_from_command(misc_repo):
    proc = restique(misc_repo, "backup", "--stdin-from-command", "--", "sh", "-c", "printf hello")
    sid = saved_id(proc)
    assert restic(misc_repo, "dump", "--no-lock", sid, "/stdin").stdout == b"hello"
    assert restic(misc_repo, "ls", "--no-lock", sid).stdout.splitlines()[1:] == [b"/stdin"]


def test_stdin_from_failing_command_saves_nothing(misc_repo):
    before = list_ids(misc_repo, "snapshots")
    proc = restique(misc_repo, "backup", "--stdin-from-command", "false", check=False)
    assert proc.returncode == 1, show(proc)
    err = proc.stderr.splitlines()
    assert len(err) == 1 and err[0].strip(), f"expected a one-line error:\n{show(proc)}"
    assert not SAVED.search(proc.stdout), show(proc)
    assert list_ids(misc_repo, "snapshots") == before, "a snapshot was saved for a failed command"
    assert list_ids(misc_repo, "locks") == []


# --------------------------------------------------------------------------------------------
# 10. Ctrl-C


def test_ctrl_c_leaves_consistent_unlocked_repository(tmp_path):
    """SIGINT in the middle of a backup: packs already written may stay, but no snapshot, no
    index entry for a missing pack, no lock. The source is a pipe that is never closed, so
    the signal always arrives while restique is still working, however fast it is."""
    repo = tmp_path / "repo"
    restic(repo, "init")
    proc = subprocess.Popen(restique_cmd() + ["-r", str(repo), "backup", "--stdin", "--stdin-filename", "big"],
                            env=clean_env(), stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    started = time.monotonic()
    try:
        # enough incompressible data for a few packs, then wait until one is written
        for _ in range(48):
            proc.stdin.write(os.urandom(MiB))
        proc.stdin.flush()
        while not any(p.is_file() for p in (repo / "data").rglob("*")):
            assert proc.poll() is None, (
                f"restique exited before it wrote any pack: {proc.returncode}\n{proc.communicate()}")
            assert time.monotonic() - started < 30, "no pack file written within 30 s"
            time.sleep(0.02)
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    detail = f"exit {proc.returncode}\nstdout: {out[-2000:]!r}\nstderr: {err[-2000:]!r}"
    assert TRACEBACK not in err, detail
    assert proc.returncode == 130, detail
    assert not SAVED.search(out), detail
    check = restic(repo, "check", check=False)
    assert check.returncode == 0, f"restic check after Ctrl-C:\n{show(check)}"
    assert list_ids(repo, "snapshots") == [], "a snapshot was saved despite Ctrl-C"
    assert list_ids(repo, "locks") == [], "restique left its lock behind"
