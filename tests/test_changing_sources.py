"""Sources that change or cannot be read while a backup runs (issue 12, item 5), checked
against the real restic 0.14.

1. Read failures, the same for both programs: a file that vanishes between the directory
   listing and its opening, a read that fails half way (EIO), a folder and a file whose open or
   lstat is refused. The tests run as root, where mode 000 stops nothing, so the failures are
   injected with `strace -e inject=...` on one path (`-P`): the system call fails for that
   path only, at a fixed point, for restic (a static Go binary) and restique alike. (test_backup.py
   shows the other way: restique run as user nobody with setpriv.) Both print the same
   `error: ...` lines, end with "Warning: at least one source file could not be read", exit 3,
   and their snapshots hold what could be read.
2. Changes while a file is read, and between the listing and the read: the file grows,
   shrinks, vanishes, or is replaced by a folder, a symlink, a FIFO or another file. The
   timing is made certain by a BackupProgress that changes the source from the archiver's own
   events: `start_file` is called after the entry's lstat and before its file is opened;
   `bytes_read` after the first chunk of a file was read and before the rest is. The
   snapshot holds what was read, restic check --read-data accepts it and restic restores it.
3. Shapes: a tree 500 levels deep, a path 4,000 bytes long and a folder of many entries
   (scripts/source_stress.py runs 1,000,000; here 20,000), with peak memory compared with
   restic's on the same folder.
"""
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from restique.operations.archiver import BackupOptions
from restique.operations.archiver.progress import BackupProgress
from restique.operations.backup import BackupRequest, run_backup
from restique.repository.repository import init_repository

from conftest import (PASSWORD, TRACEBACK, both, clean_env, restic_path, restique_cmd, run_program,
                      run_restic, run_restique)

WARNING = "Warning: at least one source file could not be read"
MiB = 1 << 20
WIDE_ENTRIES = 20_000


def show(proc) -> str:
    return (f"exit {proc.returncode}\nstdout:\n{proc.stdout.decode(errors='replace')[-2000:]}\n"
            f"stderr:\n{proc.stderr.decode(errors='replace')[-2000:]}")


def saved_id(proc) -> str:
    for line in proc.stdout.decode().splitlines():
        if line.startswith("snapshot ") and line.endswith(" saved"):
            return line.split()[1]
    raise AssertionError(f"no snapshot saved:\n{show(proc)}")


def error_lines(proc) -> list:
    """The `error: ...` lines, with restic 0.14's extra `Open: ` wrapper of a folder's open
    error removed (current restic, which restique follows, prints `error: open <dir>: ...`)."""
    return sorted(line.replace("error: Open: open ", "error: open ")
                  for line in proc.stderr.decode(errors="replace").splitlines() if line.startswith("error: "))


def tree_files(root: Path) -> dict:
    """{relative path: content (files), "<dir>" (folders), "-> target" (symlinks)}."""
    found = {}
    for path in sorted(root.rglob("*")):
        rel = str(path.relative_to(root))
        if path.is_symlink():
            found[rel] = "-> " + os.readlink(path)
        elif path.is_dir():
            found[rel] = "<dir>"
        else:
            found[rel] = path.read_bytes()
    return found


def restored(repo, snapshot_id: str, src: Path, target: Path) -> dict:
    """What restic restores of src from the snapshot (restic reads restique's repositories too)."""
    run_restic(repo, "restore", snapshot_id, "--target", target, "--no-lock")
    return tree_files(target / str(src).lstrip("/"))


@pytest.fixture(scope="module")
def repos(tmp_path_factory):
    """A repository made by restic and one made by restique, shared by the module's tests
    (each test backs up its own source folder)."""
    base = tmp_path_factory.mktemp("repos")
    ours, theirs = base / "restique", base / "restic"
    both([(run_restique, (ours, "init"), {}), (run_restic, (theirs, "init"), {})])
    return ours, theirs


def make_source(root: Path) -> Path:
    src = root / "src"
    (src / "sub").mkdir(parents=True)
    (src / "small.txt").write_bytes(b"small file\n")
    (src / "big.bin").write_bytes(os.urandom(3 * MiB))  # above the chunker's minimum: read in chunks
    (src / "sub" / "ok.txt").write_bytes(b"ok\n")
    (src / "sub" / "also.txt").write_bytes(b"also ok\n")
    return src


# --------------------------------------------------------------------------------------------
# 1. read failures, injected into both programs


def strace(syscall: str, error: str, *paths, when: str = "") -> list:
    """A command prefix that makes `syscall` fail with `error` for the given paths only."""
    tool = shutil.which("strace")
    if not tool:
        pytest.fail("strace is not installed: it injects the read failures of these tests")
    inject = f"{syscall}:error={error}" + (f":when={when}" if when else "")
    prefix = [tool, "-f", "-qq", "--seccomp-bpf", "-o", "/dev/null", "-e", f"trace={syscall}",
              "-e", f"inject={inject}"]
    for path in paths:
        prefix += ["-P", str(path)]
    return prefix


def backup_both(repos, src: Path, prefix: list):
    ours, theirs = repos
    return both([
        (run_program, (prefix + restique_cmd(), "backup", src), dict(repo=ours, check=False)),
        (run_program, (prefix + [restic_path()], "backup", src), dict(repo=theirs, check=False)),
    ])


def assert_incomplete_like_restic(ours, theirs, expected_errors):
    assert theirs.returncode == 3, f"restic (the oracle) behaved unexpectedly:\n{show(theirs)}"
    assert error_lines(theirs) == sorted(expected_errors), show(theirs)
    assert error_lines(ours) == error_lines(theirs), f"restique:\n{show(ours)}\nrestic:\n{show(theirs)}"
    assert ours.stderr.decode().splitlines()[-1] == WARNING, show(ours)
    assert ours.returncode == 3, show(ours)


def assert_snapshots_hold(repos, ours, theirs, src, tmp_path, expected):
    ours_repo, theirs_repo = repos
    got_ours = restored(ours_repo, saved_id(ours), src, tmp_path / "ours")
    got_theirs = restored(theirs_repo, saved_id(theirs), src, tmp_path / "theirs")
    assert got_theirs == expected, sorted(got_theirs)
    assert got_ours == expected, sorted(got_ours)


@pytest.mark.parametrize("victims", [["small.txt"], ["big.bin"], ["small.txt", "big.bin"]])
def test_file_vanished_before_open(repos, tmp_path, victims):
    """Listed and lstat'ed, gone when opened: `error: open <file>: no such file or directory`."""
    src = make_source(tmp_path)
    paths = [src / v for v in victims]
    ours, theirs = backup_both(repos, src, strace("openat", "ENOENT", *paths))
    assert_incomplete_like_restic(ours, theirs, [f"error: open {p}: no such file or directory" for p in paths])
    expected = {k: v for k, v in tree_files(src).items() if k not in victims}
    assert_snapshots_hold(repos, ours, theirs, src, tmp_path, expected)


def test_read_fails_half_way(repos, tmp_path):
    """The second read of a large file fails (a bad sector): the file is left out, the rest kept."""
    src = make_source(tmp_path)
    ours, theirs = backup_both(repos, src, strace("read", "EIO", src / "big.bin", when="2"))
    assert_incomplete_like_restic(ours, theirs, [f"error: read {src / 'big.bin'}: input/output error"])
    expected = {k: v for k, v in tree_files(src).items() if k != "big.bin"}
    assert_snapshots_hold(repos, ours, theirs, src, tmp_path, expected)


def test_unreadable_folder_is_left_out(repos, tmp_path):
    src = make_source(tmp_path)
    ours, theirs = backup_both(repos, src, strace("openat", "EACCES", src / "sub"))
    assert_incomplete_like_restic(ours, theirs, [f"error: open {src / 'sub'}: permission denied"])
    expected = {k: v for k, v in tree_files(src).items() if not k.startswith("sub")}
    assert_snapshots_hold(repos, ours, theirs, src, tmp_path, expected)


def test_lstat_refused(repos, tmp_path):
    src = make_source(tmp_path)
    victim = src / "sub" / "ok.txt"
    ours, theirs = backup_both(repos, src, strace("newfstatat", "EACCES", victim))
    assert_incomplete_like_restic(ours, theirs, [f"error: lstat {victim}: permission denied"])
    expected = {k: v for k, v in tree_files(src).items() if k != "sub/ok.txt"}
    assert_snapshots_hold(repos, ours, theirs, src, tmp_path, expected)


def test_file_vanished_after_listing_is_not_an_error(repos, tmp_path):
    """Listed, gone before its lstat: restic 0.14 reports `lstat ...: no such file or
    directory` and exits 3; current restic (and restique) leave the file out silently, as it
    was never there to lose."""
    src = make_source(tmp_path)
    victim = src / "small.txt"
    ours, theirs = backup_both(repos, src, strace("newfstatat", "ENOENT", victim))
    assert theirs.returncode == 3 and error_lines(theirs) == [
        f"error: lstat {victim}: no such file or directory"], show(theirs)
    assert ours.returncode == 0 and error_lines(ours) == [], show(ours)
    expected = {k: v for k, v in tree_files(src).items() if k != "small.txt"}
    assert restored(repos[0], saved_id(ours), src, tmp_path / "ours") == expected


# --------------------------------------------------------------------------------------------
# 2. sources changed at certain points of the archiver's work (library level)


class ChangingProgress(BackupProgress):
    """Runs `change` once: at `start_file` of the file named at_start_of (after its lstat,
    before it is opened) or, without a name, at the first `bytes_read` (a chunk of a large
    file has been read, the rest has not). Records the error messages."""

    def __init__(self, change, at_start_of=None):
        super().__init__()
        self.pending = change
        self.at_start_of = at_start_of
        self.messages = []

    def _fire(self):
        if self.pending is not None:
            fire, self.pending = self.pending, None
            fire()

    def start_file(self, path):
        super().start_file(path)
        if self.at_start_of is not None and path.endswith("/" + self.at_start_of):
            self._fire()

    def bytes_read(self, n):
        if self.at_start_of is None:
            self._fire()

    def error(self, path, message, during="archival"):
        super().error(path, message, during)
        self.messages.append(message)


@pytest.fixture(scope="module")
def library_repo(tmp_path_factory):
    path = tmp_path_factory.mktemp("library") / "repo"
    repo = init_repository(str(path), PASSWORD, kdf_params=(1 << 10, 8, 1))
    yield path, repo
    repo.close()
    run_restic(path, "check", "--read-data")  # every snapshot the changes made is sound


def library_backup(repo, src: Path, progress):
    request = BackupRequest(paths=[str(src)], force=True, options=BackupOptions(read_concurrency=1))
    return run_backup(repo, request, progress)


def _replace_with_dir(p: Path):
    p.unlink()
    p.mkdir()


def _replace_with_symlink(p: Path):
    p.unlink()
    p.symlink_to("sub/ok.txt")


def _replace_with_fifo(p: Path):
    p.unlink()
    os.mkfifo(p)


def _replace_with_new_file(p: Path):
    fresh = p.with_name(p.name + ".new")
    fresh.write_bytes(b"the replacement, saved by rename\n")
    os.chmod(fresh, 0o600)
    fresh.rename(p)


def _changed_type(p: Path) -> str:
    return f'file "{p}" changed type, refusing to archive'


# (name of the changed file, change, error message or None, what the snapshot holds of it)
BETWEEN_LSTAT_AND_OPEN = {
    "small-vanished": ("small.txt", Path.unlink, lambda p: f"open {p}: no such file or directory", None),
    "big-vanished": ("big.bin", Path.unlink, lambda p: f"open {p}: no such file or directory", None),
    "small-became-dir": ("small.txt", _replace_with_dir, _changed_type, None),
    "big-became-dir": ("big.bin", _replace_with_dir, _changed_type, None),
    "small-became-symlink": ("small.txt", _replace_with_symlink,
                             lambda p: f"open {p}: too many levels of symbolic links", None),
    "big-became-fifo": ("big.bin", _replace_with_fifo, _changed_type, None),
    "small-replaced": ("small.txt", _replace_with_new_file, None, b"the replacement, saved by rename\n"),
    "big-replaced": ("big.bin", _replace_with_new_file, None, b"the replacement, saved by rename\n"),
}


@pytest.mark.parametrize("case", sorted(BETWEEN_LSTAT_AND_OPEN))
def test_changed_between_lstat_and_open(library_repo, tmp_path, case):
    path, repo = library_repo
    name, change, message, content = BETWEEN_LSTAT_AND_OPEN[case]
    src = make_source(tmp_path)
    victim = src / name
    expected = tree_files(src)
    del expected[name]
    progress = ChangingProgress(lambda: change(victim), at_start_of=name)
    outcome = library_backup(repo, src, progress)
    if message is None:
        assert progress.messages == [] and outcome.progress.stats.errors == 0
        expected[name] = content
    else:
        assert progress.messages == [message(victim)]
        assert outcome.progress.stats.errors == 1  # the CLI exits 3
    assert restored(path, outcome.snapshot_id, src, tmp_path / "restored") == expected
    if case.endswith("replaced"):  # saved with the metadata of the file that was read
        node = _ls_node(path, outcome.snapshot_id, str(victim))
        assert node["mode"] == 0o600 and node["size"] == len(content), node


def _ls_node(repo, snapshot_id: str, path: str) -> dict:
    out = run_restic(repo, "ls", "--json", "--no-lock", snapshot_id, path).stdout
    return next(obj for obj in map(json.loads, out.splitlines()) if obj.get("path") == path)


def _grow(p: Path):
    with open(p, "ab") as f:
        f.write(b"appended while the file was read\n" * 1000)


WHILE_READ = {
    "grows": (_grow, lambda before, after: after),
    "shrinks": (lambda p: os.truncate(p, 1000), None),
    "emptied": (lambda p: os.truncate(p, 0), None),
}


@pytest.mark.parametrize("case", sorted(WHILE_READ))
def test_changed_while_read(library_repo, tmp_path, case):
    """The large file changes after its first chunk was read: the snapshot holds what was read
    (a prefix of the old content for a shrunk file, all of it for a grown one), its node's
    size is the bytes read, and restore gives exactly that."""
    path, repo = library_repo
    change, expect = WHILE_READ[case]
    src = make_source(tmp_path)
    big = src / "big.bin"
    big.write_bytes(os.urandom(12 * MiB))  # several reads of the archiver's 4 MiB buffer
    before = big.read_bytes()
    progress = ChangingProgress(lambda: change(big))
    outcome = library_backup(repo, src, progress)
    assert progress.pending is None and progress.messages == []
    saved = restored(path, outcome.snapshot_id, src, tmp_path / "restored")["big.bin"]
    if expect is not None:
        assert saved == expect(before, big.read_bytes())
    else:  # what had been read when the file shrank: at least one chunk, a prefix of the old file
        assert 0 < len(saved) < len(before) and before.startswith(saved), len(saved)
    assert _ls_node(path, outcome.snapshot_id, str(big))["size"] == len(saved)


# --------------------------------------------------------------------------------------------
# 3. deep, long and wide


def backup_both_measured(repos, src: Path):
    """Both backups side by side; (restique, restic) as (CompletedProcess, peak RSS in KiB)."""
    ours, theirs = repos
    calls = [(run_measured, (restique_cmd() + ["-r", str(ours), "backup", str(src)], clean_env()), {}),
             (run_measured, ([restic_path(), "-r", str(theirs), "backup", str(src)], clean_env()), {})]
    return [(proc, peak) for proc, _seconds, peak in both(calls)]


# A child's peak RSS counts the memory of the process it was forked from (and vfork, which
# subprocess uses, shares it): a small interpreter forks the program and reports wait4's
# figure, so that the test process's own size never shows up as the program's.
_MEASURE = """import os, sys
pid = os.fork()
if pid == 0:
    os.execvp(sys.argv[2], sys.argv[2:])
_, status, usage = os.wait4(pid, 0)
with open(sys.argv[1], "w") as f:
    f.write(str(usage.ru_maxrss))
sys.exit(os.waitstatus_to_exitcode(status))
"""


def run_measured(cmd: list, env: dict):
    """(CompletedProcess, seconds, peak RSS in KiB) of one program run."""
    with tempfile.TemporaryDirectory() as scratch:
        figure = Path(scratch) / "peak"
        started = time.monotonic()
        proc = subprocess.run([sys.executable, "-c", _MEASURE, str(figure)] + cmd, env=env,
                              stdin=subprocess.DEVNULL, capture_output=True)
        seconds = time.monotonic() - started
        peak = int(figure.read_text())
    assert TRACEBACK not in proc.stdout + proc.stderr, show(proc)
    return proc, seconds, peak


def test_tree_500_levels_deep(repos, tmp_path):
    src = tmp_path / "deep"
    leaf = src.joinpath(*["d"] * 500)
    leaf.mkdir(parents=True)
    (leaf / "leaf.txt").write_bytes(b"at the bottom\n")
    ours, theirs = both([(run_restique, (repos[0], "backup", src), dict(check=False)),
                         (run_restic, (repos[1], "backup", src), dict(check=False))])
    assert theirs.returncode == 0, show(theirs)
    assert ours.returncode == 0 and error_lines(ours) == [], show(ours)
    got = restored(repos[0], saved_id(ours), src, tmp_path / "restored")
    assert got == tree_files(src)


def test_path_4000_bytes_long(repos, tmp_path):
    """Nested folders of 200-byte names (one name is at most 255 bytes) down to a file whose
    path is 4,000 bytes; restored below a short target, it stays under PATH_MAX."""
    src = tmp_path / "long"
    folder = src
    while len(bytes(folder)) + 201 < 3980:
        folder = folder / ("x" * 200)
    leaf = folder / ("y" * (4000 - len(bytes(folder)) - 1))
    folder.mkdir(parents=True)
    leaf.write_bytes(b"far away\n")
    assert len(bytes(leaf)) == 4000
    ours, theirs = both([(run_restique, (repos[0], "backup", src), dict(check=False)),
                         (run_restic, (repos[1], "backup", src), dict(check=False))])
    assert theirs.returncode == 0, show(theirs)
    assert ours.returncode == 0 and error_lines(ours) == [], show(ours)
    dumped = run_restic(repos[0], "dump", "--no-lock", saved_id(ours), str(leaf)).stdout
    assert dumped == b"far away\n"
    short = Path(os.environ.get("TMPDIR", "/tmp")) / f"rq-long-{os.getpid()}"
    try:
        run_restique(repos[0], "restore", saved_id(ours), "--target", short, "--no-lock")
        assert (short / str(leaf).lstrip("/")).read_bytes() == b"far away\n"
    finally:
        shutil.rmtree(short, ignore_errors=True)


@pytest.fixture(scope="module")
def wide_folder(tmp_path_factory):
    """A folder of WIDE_ENTRIES empty files, on tmpfs where there is one (creating files there
    is several times faster)."""
    shm = Path("/dev/shm")
    on_tmpfs = shm.is_dir() and os.access(shm, os.W_OK)
    base = Path(tempfile.mkdtemp(prefix="restique-wide-", dir=shm)) if on_tmpfs else tmp_path_factory.mktemp("wide")
    folder = base / "wide"
    folder.mkdir()
    flags = os.O_CREAT | os.O_WRONLY | os.O_CLOEXEC
    for i in range(WIDE_ENTRIES):
        os.close(os.open(folder / f"entry-{i:07d}", flags, 0o644))
    yield folder
    shutil.rmtree(base, ignore_errors=True)


def test_wide_folder_memory_like_restic(repos, wide_folder):
    (ours, ours_kib), (theirs, theirs_kib) = backup_both_measured(repos, wide_folder)
    assert theirs.returncode == 0, show(theirs)
    assert ours.returncode == 0, show(ours)
    listed = run_restic(repos[0], "ls", "--no-lock", saved_id(ours), str(wide_folder)).stdout.splitlines()
    assert sum(line.startswith(bytes(wide_folder) + b"/") for line in listed) == WIDE_ENTRIES
    # restique's interpreter alone takes ~30 MiB; beyond that, no more than restic needs
    assert ours_kib <= theirs_kib * 1.5 + 30 * 1024, (ours_kib, theirs_kib)
