"""Repositories that try to harm the machine reading them, and repositories that are damaged.

A hostile repository's trees hold entry names that are not one path component (``..``,
``a/b``, an absolute path, an empty name, ``.``) and a symlink with a directory of the same
name below it. `restore`, `dump`, `ls` and `find` must never create or change anything outside
the restore target (restic's restorer refuses such names with "invalid child node name";
restique does the same, also for a repeated name, and `dump` leaves such entries out of its
archives). A damaged repository (key, config, index, snapshot, pack header, blob data) gives a
one-line error and a non-zero exit, never a traceback or a hang, and a restore either restores
the source's bytes or fails naming the damaged file.
"""
import hashlib
import io
import os
import shutil
import tarfile
import time
import zipfile
from pathlib import Path

import pytest

from conftest import PASSWORD, both, run_restic, run_restique

FAST_KDF = (1 << 10, 8, 1)
TIMEOUT = 60  # seconds: a command that takes longer hangs
INVALID = ["", ".", "..", "../escape.txt", "a/b"]  # plus the absolute path of `outside`


def _tree_blob(nodes) -> bytes:
    """A tree blob holding nodes as given: no sorting, no name check (encode_tree refuses
    these names, as it should)."""
    from restique.model.node import encode_node

    return ('{"nodes":[' + ",".join(encode_node(n) for n in nodes) + "]}\n").encode("utf-8", "surrogateescape")


class _Trees:
    """Builds nodes whose blobs go into repo."""

    def __init__(self, repo):
        from restique.model.gotime import GoTime

        self.repo = repo
        self.t = GoTime.parse("2020-01-01T00:00:00Z")

    def _node(self, name, kind, mode, **fields):
        from restique.model.node import Node

        return Node(name, kind, mode=mode, mtime=self.t, atime=self.t, ctime=self.t, **fields)

    def file(self, name, data: bytes, **fields):
        return self._node(name, "file", 0o600, size=len(data), content=[self.repo.save_blob("data", data)[0]],
                          **fields)

    def dir(self, name, nodes):
        from restique.model.node import MODE_DIR

        return self._node(name, "dir", MODE_DIR | 0o700, subtree=self.repo.save_blob("tree", _tree_blob(nodes))[0])

    def symlink(self, name, target):
        from restique.model.node import MODE_SYMLINK

        return self._node(name, "symlink", MODE_SYMLINK | 0o777, linktarget=target)

    def fifo(self, name):
        from restique.model.node import MODE_NAMED_PIPE

        return self._node(name, "fifo", MODE_NAMED_PIPE | 0o600)

    def snapshot(self, nodes, when: str, tag: str) -> None:
        tree = self.repo.save_blob("tree", _tree_blob(nodes))[0]
        self.repo.flush()
        self.repo.save_json("snapshot", {"time": when, "tree": tree, "paths": ["/src"], "hostname": "h",
                                         "username": "u", "tags": [tag]})


def _build_hostile(path: Path, outside: Path) -> None:
    """Snapshot `hostile`: every kind of bad name next to good entries; snapshot `plain`:
    a directory `link`, for a target that already holds a symlink of that name; snapshot
    `hardlinks`: two hard links to one file."""
    from restique.repository.repository import init_repository

    with init_repository(str(path), PASSWORD, kdf_params=FAST_KDF) as repo:
        t = _Trees(repo)
        link_dir = t.dir("link", [t.file("x.txt", b"through the link\n"), t.fifo("fifo"),
                                  t.dir("deeper", [t.file("y", b"deep\n")])])
        hostile = [t.file(name, f"bad {name!r}\n".encode()) for name in INVALID]
        hostile += [
            t.dir(str(outside / "absdir"), [t.file("abs.txt", b"absolute\n")]),
            t.symlink("link", str(outside)), link_dir,  # the symlink first, then a directory through it
            t.file("ok.txt", b"fine\n"),
            t.dir("sub", [t.file("..", b"up\n"), t.dir("..", [t.file("up.txt", b"up\n")]),
                          t.file("inner.txt", b"inner\n")]),
            t.file("dup", b"first\n"), t.file("dup", b"second\n"),
        ]
        t.snapshot(hostile, "2020-01-01T00:00:00Z", "hostile")
        t.snapshot([link_dir, t.file("ok.txt", b"fine\n")], "2020-01-02T00:00:00Z", "plain")
        linked = [t.file(name, b"linked\n", links=2, inode=5, device_id=1) for name in ("a", "b")]
        t.snapshot(linked, "2020-01-03T00:00:00Z", "hardlinks")


@pytest.fixture(scope="module")
def hostile(tmp_path_factory):
    """(work folder, repository, outside folder) for the hostile snapshots; tests make their
    targets in the work folder's `targets` and check that nothing else in it changed."""
    work = tmp_path_factory.mktemp("hostile")
    outside = work / "outside"
    outside.mkdir()
    (work / "targets").mkdir()
    (outside / "x.txt").write_bytes(b"must stay\n")
    (outside / "fifo").write_bytes(b"not a fifo\n")
    os.chmod(outside / "x.txt", 0o644)
    _build_hostile(work / "repo", outside)
    return work, work / "repo", outside


def _state(root: Path, skip: set) -> dict:
    """Everything below root (but the paths in skip): type, mode, size, mtime, content hash,
    link target. A hostile repository must not change any of it."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = [d for d in dirnames if os.path.join(dirpath, d) not in skip]
        for name in dirnames + filenames + ["."]:
            path = os.path.normpath(os.path.join(dirpath, name))
            if path in skip:
                continue
            st = os.lstat(path)
            entry = (st.st_mode, st.st_size, st.st_mtime_ns)
            if os.path.islink(path):
                entry += (os.readlink(path),)
            elif os.path.isfile(path):
                entry += (hashlib.sha256(Path(path).read_bytes()).hexdigest(),)
            out[path] = entry
    return out


class _Guard:
    """Checks that a command changed nothing in the work folder but the targets folder (and
    the repository, whose lock files come and go)."""

    def __init__(self, work: Path):
        self.work = work
        self.skip = {str(work / "repo"), str(work / "targets")}
        self.before = _state(work, self.skip)

    def check(self) -> None:
        assert _state(self.work, self.skip) == self.before, "something outside the target changed"


def _restique(repo, *args, **kw):
    return run_restique(repo, "--no-cache", *args, check=False, timeout=TIMEOUT, **kw)


def _restic(repo, *args, **kw):
    return run_restic(repo, "--no-cache", *args, check=False, timeout=TIMEOUT, **kw)


def _refused(stderr: bytes) -> set:
    """(folder, name) of every "invalid/duplicate child node name" error."""
    out = set()
    for line in stderr.decode("utf-8", "replace").splitlines():
        if "child node name " in line and line.startswith("ignoring error for "):
            folder, _, rest = line[len("ignoring error for "):].partition(": ")
            out.add((folder, rest))
    return out


def _expected_refusals(outside: Path) -> set:
    names = INVALID + [str(outside / "absdir")]
    refused = {("/", f"invalid child node name {n}") for n in names}
    refused.add(("/sub", "invalid child node name .."))
    return refused | {("/", "duplicate child node name link"), ("/", "duplicate child node name dup")}


@pytest.mark.parametrize("args, absolute", [([], True), ([], False), (["--include", "/link"], True),
                                            (["--exclude", "/ok.txt"], False), (["--delete"], True),
                                            (["--overwrite", "if-changed"], False)],
                         ids=["absolute", "relative", "include", "exclude", "delete", "if-changed"])
def test_restore_refuses_bad_names(hostile, args, absolute):
    """Each bad name is an error of its own (restic's message), the rest is restored, exit 1;
    a second restore into the same target (existing files, --delete) changes nothing outside
    either."""
    work, repo, outside = hostile
    name = "t-" + "-".join(a.strip("-/") for a in args) + ("-abs" if absolute else "-rel")
    target = work / "targets" / name
    guard = _Guard(work)
    expected = _expected_refusals(outside)
    if args[:1] == ["--include"]:  # /sub is not entered
        expected.discard(("/sub", "invalid child node name .."))
    for _ in range(2):
        proc = _restique(repo, "restore", "latest", "--tag", "hostile", "--target",
                         str(target) if absolute else name, *args, cwd=work / "targets")
        guard.check()
        assert proc.returncode == 1
        assert _refused(proc.stderr) == expected
        assert proc.stderr.decode().endswith(f"\nFatal: There were {len(expected)} errors\n")
    assert os.readlink(target / "link") == str(outside)  # the first of the two entries named link
    if args[:1] != ["--include"]:
        assert (target / "sub" / "inner.txt").read_bytes() == b"inner\n"
        assert (target / "dup").read_bytes() == b"first\n"
        assert sorted(os.listdir(target / "sub")) == ["inner.txt"]
    assert sorted(os.listdir(target)) == sorted({"dup", "link", "ok.txt", "sub"} - _left_out(args))


def _left_out(args) -> set:
    return {"--include": {"dup", "ok.txt", "sub"}, "--exclude": {"ok.txt"}}.get(args[0] if args else "", set())


def test_restic_refuses_the_same_names(hostile):
    """restic 0.14 on the same snapshot: the same names refused (each reported by both of its
    walks), the symlink over the directory an error of its own, nothing written outside."""
    work, repo, outside = hostile
    guard = _Guard(work)
    proc = _restic(repo, "restore", "latest", "--tag", "hostile", "--target", work / "targets" / "by-restic")
    guard.check()
    assert proc.returncode == 1
    invalid = {r for r in _expected_refusals(outside) if r[1].startswith("invalid")}
    assert _refused(proc.stderr) == invalid
    assert b"ignoring error for /link: Symlink: symlink " in proc.stderr


def test_dry_run_creates_nothing(hostile):
    work, repo, _ = hostile
    guard = _Guard(work)
    target = work / "targets" / "dry-run"
    proc = _restique(repo, "restore", "latest", "--tag", "hostile", "--target", target, "--dry-run")
    guard.check()
    assert proc.returncode == 1 and not target.exists()


def test_symlink_left_in_target_is_not_followed(hostile):
    """A target that already holds `link -> outside` (say from restoring the hostile snapshot)
    and a snapshot with a directory `link`: the symlink is replaced by the directory, also
    when only a file deep below it is included. restic 0.14 follows the symlink and writes
    outside the target."""
    work, repo, outside = hostile
    for tool, include in (("restique", []), ("restique", ["--include", "/link/deeper/y"]),
                          ("restic", ["--include", "/link/deeper/y"])):
        target = work / "targets" / f"left-{tool}-{len(include)}"
        target.mkdir()
        os.symlink(outside, target / "link")
        if tool == "restic":
            scratch = shutil.copytree(outside, work / "targets" / "scratch-outside")
            os.unlink(target / "link")
            os.symlink(scratch, target / "link")
            _restic(repo, "restore", "latest", "--tag", "plain", "--target", target, *include)
            assert (scratch / "deeper" / "y").read_bytes() == b"deep\n"  # restic's hole
            continue
        guard = _Guard(work)
        proc = _restique(repo, "restore", "latest", "--tag", "plain", "--target", target, *include)
        guard.check()
        assert proc.returncode == 0, proc.stderr
        assert not os.path.islink(target / "link")
        assert (target / "link" / "deeper" / "y").read_bytes() == b"deep\n"


def test_hard_link_to_a_symlink_left_in_target(hostile):
    """`a` and `b` are hard links; the target holds `a -> outside/x.txt`, which --overwrite never
    leaves alone: `b` is not linked to it, and nothing outside changes mode or content."""
    work, repo, outside = hostile
    target = work / "targets" / "hardlinks"
    target.mkdir()
    os.symlink(outside / "x.txt", target / "a")
    guard = _Guard(work)
    proc = _restique(repo, "restore", "latest", "--tag", "hardlinks", "--target", target, "--overwrite", "never")
    guard.check()
    assert proc.returncode == 1
    assert b"ignoring error for /b: cannot create hard link to /a: not a regular file" in proc.stderr
    assert sorted(os.listdir(target)) == ["a"]


def _archive_names(data: bytes, archive: str) -> list:
    if archive == "zip":
        return zipfile.ZipFile(io.BytesIO(data)).namelist()
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        return [m.name + ("/" if m.isdir() else "") for m in tar.getmembers()]


def _safe_member(name: str) -> bool:
    parts = name.rstrip("/").split("/")
    return bool(name) and not name.startswith("/") and all(p not in ("", ".", "..") for p in parts)


@pytest.mark.parametrize("archive", ["tar", "zip"])
def test_dump_leaves_bad_names_out(hostile, archive):
    """An archive of the hostile snapshot holds only safe member names, no name twice, and
    nothing below a symlink member; each entry left out is reported, exit 1. (restic 0.14
    writes the entries with their paths cleaned: `..` becomes `.`, `/abs` becomes `abs`, and
    the directory behind the symlink `link` is in the archive too.)"""
    work, repo, outside = hostile
    guard = _Guard(work)
    out = work / "targets" / f"dump.{archive}"
    proc = _restique(repo, "dump", "-a", archive, "--tag", "hostile", "latest", "/", "--target", out)
    guard.check()
    assert proc.returncode == 1
    expected = _expected_refusals(outside) | {("/sub", "invalid child node name ..")}
    assert _refused(proc.stderr) == expected
    assert proc.stderr.decode().endswith(f"\nFatal: There were {len(expected) + 1} errors\n")
    names = _archive_names(out.read_bytes(), archive)
    assert names == ["dup", "link", "ok.txt", "sub/", "sub/inner.txt"]
    assert all(_safe_member(n) for n in names)
    if archive == "tar":
        with tarfile.open(out) as tar:
            tar.extractall(work / "targets" / "unpacked", filter="tar")
        guard.check()
        by_restic = _restic(repo, "dump", "--tag", "hostile", "latest", "/").stdout
        theirs = _archive_names(by_restic, "tar")
        assert not any(n.startswith("/") or ".." in n.split("/") for n in theirs)
        assert {".", "escape.txt", "link", "link/", "link/x.txt"} <= set(theirs)  # cleaned; through the link


def test_dump_single_files(hostile):
    """A single file is written as it is; a path with `..` is cleaned first, as restic does."""
    work, repo, _ = hostile
    for path, data in (("/ok.txt", b"fine\n"), ("/sub/inner.txt", b"inner\n"), ("/sub/../ok.txt", b"fine\n"),
                       ("/dup", b"first\n")):
        proc = _restique(repo, "dump", "--tag", "hostile", "latest", path)
        assert (proc.returncode, proc.stdout) == (0, data), proc.stderr


@pytest.mark.parametrize("command", [["ls", "-l", "--tag", "hostile", "latest"], ["find", "*"],
                                     ["ls", "--json", "--tag", "hostile", "latest"]])
def test_listing_does_no_harm(hostile, command):
    work, repo, outside = hostile
    guard = _Guard(work)
    proc = _restique(repo, *command)
    guard.check()
    assert proc.returncode == 0, proc.stderr
    assert b"ok.txt" in proc.stdout and b"abs.txt" in proc.stdout


def test_impossible_metadata(tmp_path):
    """Ids, times, device numbers and attribute names no system has: each is an error of its
    own entry (never an internal error), everything else is restored."""
    from restique.repository.repository import init_repository

    repo = tmp_path / "repo"
    with init_repository(str(repo), PASSWORD, kdf_params=FAST_KDF) as opened:
        blob = opened.save_blob("data", b"hello")[0]
        content = f'"size":5,"content":["{blob}"]'
        entries = [
            f'{{"name":"a-ids","type":"file",{content},"uid":-7,"gid":99999999999}}',
            f'{{"name":"b-time","type":"file",{content},"mtime":"9999-12-31T23:59:59Z"}}',
            '{"name":"c-dev","type":"chardev","device":99999999999999999999999}',
            f'{{"name":"d-xattr","type":"file",{content},"extended_attributes":[{{"name":"","value":"AA=="}}]}}',
            '{"name":"e-link","type":"symlink","linktarget":""}',
            f'{{"name":"ok","type":"file",{content}}}',
        ]
        tree = opened.save_blob("tree", ('{"nodes":[' + ",".join(entries) + "]}\n").encode())[0]
        opened.flush()
        opened.save_json("snapshot", {"time": "2021-01-01T00:00:00Z", "tree": tree, "paths": ["/a"], "hostname": "h"})
    target = tmp_path / "target"
    proc = _restique(repo, "restore", "latest", "--target", target)
    err = proc.stderr.decode()
    assert proc.returncode == 1 and "internal error" not in err, err
    failed = {line.split(":")[0][len("ignoring error for "):] for line in err.splitlines()
              if line.startswith("ignoring error for ")}
    assert failed == {"/a-ids", "/c-dev", "/d-xattr", "/e-link"}
    assert (target / "ok").read_bytes() == (target / "b-time").read_bytes() == b"hello"


# --- damaged repositories -------------------------------------------------------------------

OPENING = [["snapshots"], ["restore", "latest", "--target", "T"], ["check"]]
READING = [["snapshots"], ["ls", "latest"], ["cat", "snapshot", "SNAP"], ["restore", "latest", "--target", "T"],
           ["dump", "latest", "SRC/d/big.bin"], ["dump", "latest", "/"], ["check", "--read-data"]]
# damage -> the commands that must fail (exit 1) on it; the others must still work
DAMAGE = {
    "key": ("keys", lambda p: _truncate(p, 10), OPENING, {"snapshots", "restore", "check"}),
    "config": ("config", lambda p: _truncate(p, 20), OPENING, {"snapshots", "restore", "check"}),
    "index": ("index", lambda p: _truncate(p, 50), READING, {"ls", "restore", "dump", "check"}),
    "snapshot": ("snapshots", lambda p: _flip(p, 30), READING, {"ls", "cat", "restore", "dump", "check"}),
    "pack header": ("data:largest", lambda p: _flip(p, -20), READING, {"check"}),
    "truncated pack": ("data:largest", lambda p: _truncate(p, os.path.getsize(p) // 2), READING,
                       {"restore", "dump", "check"}),
    "blob data": ("data:largest", lambda p: _flip(p, os.path.getsize(p) // 3), READING, {"restore", "dump", "check"}),
    "tree": ("data:smallest", lambda p: _flip(p, 40), READING, {"ls", "restore", "dump", "check"}),
}


def _flip(path: str, at: int) -> None:
    data = bytearray(Path(path).read_bytes())
    data[at] ^= 0xFF
    os.chmod(path, 0o600)
    Path(path).write_bytes(bytes(data))


def _truncate(path: str, size: int) -> None:
    os.chmod(path, 0o600)
    with open(path, "r+b") as f:
        f.truncate(size)


def _victim(repo: Path, where: str) -> str:
    if where == "config":
        return str(repo / "config")
    folder, _, pick = where.partition(":")
    files = sorted(str(p) for p in (repo / folder).rglob("*") if p.is_file())
    if pick:
        files.sort(key=os.path.getsize)
        return files[-1] if pick == "largest" else files[0]
    return files[0]


@pytest.fixture(scope="module")
def damaged_source(tmp_path_factory):
    """(work folder, source folder, repository, snapshot id): a small backup made by restic;
    big.bin is one chunk of its own, in the largest pack."""
    import json

    work = tmp_path_factory.mktemp("damaged")
    src = work / "src"
    (src / "d").mkdir(parents=True)
    (src / "a.txt").write_bytes(b"hello\n" * 1000)
    (src / "d" / "big.bin").write_bytes(os.urandom(600 * 1024))
    repo = work / "repo"
    run_restic(repo, "init")
    run_restic(repo, "backup", "--no-cache", src)
    snap = json.loads(run_restic(repo, "snapshots", "--json", "--no-cache").stdout)[0]["id"]
    return work, src, repo, snap


@pytest.mark.parametrize("damage", list(DAMAGE))
def test_damaged_repository(damaged_source, tmp_path, damage):
    """Every command gives a one-line error and exit 1 where it needs the damaged part, works
    where it does not, never hangs or prints a traceback; a restore reported complete restored
    the source's bytes, and one that failed names each file it could not restore and leaves
    no such file behind."""
    work, src, base, snap = damaged_source
    repo = shutil.copytree(base, tmp_path / "repo")
    where, hurt, commands, failing = DAMAGE[damage]
    hurt(_victim(repo, where))
    for command in commands:
        target = tmp_path / "target"
        shutil.rmtree(target, ignore_errors=True)
        args = [{"T": str(target), "SNAP": snap}.get(a, a.replace("SRC", str(src))) for a in command]
        proc = _restique(repo, *args)
        err = proc.stderr.decode("utf-8", "replace")
        shown = f"{damage}: {' '.join(command)} exited {proc.returncode}: {err[-500:]}"
        assert proc.returncode == (1 if command[0] in failing else 0), shown
        if proc.returncode:
            last = err.rstrip("\n").splitlines()[-1]
            assert last.startswith(("Fatal: ", "invalid id ", "latest snapshot for criteria not found",
                                    'Ignoring "latest"')), shown
        if command[0] == "restore":
            _check_restored(src, target / str(src).lstrip("/"), proc, err)


def _check_restored(src: Path, restored: Path, proc, err: str) -> None:
    """Each source file is restored with its bytes, or it (or its folder) is named in an error
    and it is absent; an error-free restore restored everything."""
    for rel in ("a.txt", "d/big.bin"):
        path = restored / rel
        named = [p for p in [src / rel, *(src / rel).parents] if f"ignoring error for {p}: " in err
                 and str(p).startswith(str(src))]
        if named:
            assert proc.returncode == 1 and not path.exists(), f"{rel} failed but was left behind"
        elif proc.returncode == 0 or "ignoring error for " in err:
            assert path.read_bytes() == (src / rel).read_bytes(), f"{rel} restored with other bytes"


@pytest.mark.parametrize("field, value, message", [
    ("salt", "AAAA", "invalid scrypt parameters"),  # 3 bytes: restic's check wants 8 or more
    ("N", 1 << 30, "need more than 2 GiB of memory"),  # would ask scrypt for 128 GiB
    ("N", 1000, "invalid scrypt parameters"),  # not a power of two
])
def test_hostile_key_parameters(tmp_path, field, value, message):
    """A key file whose scrypt parameters are impossible or would exhaust memory is reported as
    a damaged key (exit 1, as restic), not tried and not reported as a wrong password."""
    import json

    repo = tmp_path / "repo"
    run_restic(repo, "init")
    key_path = next((repo / "keys").iterdir())
    key = json.loads(key_path.read_bytes())
    key[field] = value
    os.chmod(key_path, 0o600)
    key_path.write_text(json.dumps(key))
    started = time.monotonic()
    proc = _restique(repo, "snapshots")
    err = proc.stderr.decode()
    assert proc.returncode == 1 and message in err and len(err.splitlines()) == 1, err
    assert time.monotonic() - started < 10
    if field != "N" or value < 1 << 20:  # restic would try to allocate the 128 GiB
        assert _restic(repo, "snapshots").returncode == 1
