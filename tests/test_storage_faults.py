"""Failing storage: a repository on a disk that fills up, a read-only repository, and a pack
file that the index names but that is gone. Each failure is one line and a non-zero exit,
nothing is reported as saved or restored, and the repository stays consistent."""
import os
import shutil
import subprocess

import pytest

from conftest import run_restic, run_restique

MiB = 1 << 20


def one_line_error(proc, code=1):
    detail = f"exit {proc.returncode}\nstdout: {proc.stdout[-800:]!r}\nstderr: {proc.stderr[-1500:]!r}"
    assert proc.returncode == code, detail
    lines = proc.stderr.decode().strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Fatal: "), detail
    return lines[0]


def mount(*args):
    subprocess.run(["mount", *map(str, args)], check=True, capture_output=True)


def unmount(path):
    subprocess.run(["umount", "-l", str(path)], capture_output=True)


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    base = tmp_path_factory.mktemp("faults-src")
    (base / "big.bin").write_bytes(os.urandom(24 * MiB))
    (base / "small.txt").write_text("small\n" * 100)
    return base


@pytest.fixture
def small_disk(tmp_path):
    disk = tmp_path / "disk"
    disk.mkdir()
    mount("-t", "tmpfs", "-o", "size=20m", "tmpfs", disk)
    yield disk
    unmount(disk)


def test_full_disk_fails_in_one_line_and_leaves_a_sound_repository(small_disk, source):
    repo = small_disk / "repo"
    run_restique(repo, "init")
    run_restique(repo, "backup", source / "small.txt")
    proc = run_restique(repo, "backup", source, check=False)
    line = one_line_error(proc)
    assert "no space left on device" in line.lower(), line
    assert b"saved" not in proc.stdout
    assert len(os.listdir(repo / "snapshots")) == 1, "a snapshot was saved"
    assert os.listdir(repo / "locks") == [], "the lock was left behind"
    assert not [f for _, _, files in os.walk(repo) for f in files if "-tmp-" in f], "temporary files left"
    run_restic(repo, "check")
    run_restique(repo, "check")

    mount("-o", "remount,size=80m", small_disk)  # space freed
    run_restique(repo, "backup", source)
    run_restic(repo, "check")
    assert len(os.listdir(repo / "snapshots")) == 2


@pytest.fixture(scope="module")
def read_only_repo(tmp_path_factory, source):
    """A read-only bind mount of a repository (root ignores file modes, so chmod does not do)."""
    base = tmp_path_factory.mktemp("read-only")
    repo, view = base / "repo", base / "view"
    run_restique(repo, "init")
    run_restique(repo, "backup", source / "small.txt")
    view.mkdir()
    mount("--bind", repo, view)
    try:
        mount("-o", "remount,bind,ro", view)
        yield view
    finally:
        unmount(view)


@pytest.mark.parametrize("args", [("snapshots",), ("ls", "latest"), ("cat", "config")])
def test_read_only_repository_reads_without_lock(read_only_repo, args):
    theirs, ours = run_restic(read_only_repo, "--no-lock", *args), run_restique(read_only_repo, "--no-lock", *args)
    assert ours.stdout == theirs.stdout


def test_read_only_repository_restores_without_lock(read_only_repo, source, tmp_path):
    proc = run_restique(read_only_repo, "--no-lock", "restore", "latest", "--target", tmp_path)
    assert (tmp_path / str(source / "small.txt").lstrip("/")).read_text() == "small\n" * 100
    assert b"Fatal" not in proc.stderr


@pytest.mark.parametrize("args", [("backup", "{source}"), ("forget", "--keep-last", "1"), ("key", "add")])
def test_read_only_repository_refuses_writes_in_one_line(read_only_repo, source, args):
    args = [a.format(source=source) for a in args]
    proc = run_restique(read_only_repo, *args, check=False, input=b"")
    line = one_line_error(proc)
    assert "read-only file system" in line.lower(), line


@pytest.fixture(scope="module")
def pack_gone_template(tmp_path_factory):
    base = tmp_path_factory.mktemp("pack-gone")
    repo, small = base / "repo", base / "src"
    run_restique(repo, "init")
    small.mkdir()
    (small / "data.bin").write_bytes(os.urandom(2 * MiB))
    run_restique(repo, "backup", small)
    (pack,) = [p for p in (repo / "data").rglob("*") if p.is_file() and p.stat().st_size > MiB]
    pack.unlink()
    return repo, pack.name, small


@pytest.fixture
def pack_gone(tmp_path, pack_gone_template):
    """Copies (one for restique, one for restic) of a repository whose data pack was deleted
    behind the index."""
    template, pack, small = pack_gone_template
    repo, copy = tmp_path / "repo", tmp_path / "copy"
    shutil.copytree(template, repo)
    shutil.copytree(template, copy)
    return repo, copy, pack, small


def test_missing_pack_restore_never_reports_success(pack_gone, tmp_path):
    repo, _, pack, small = pack_gone
    proc = run_restique(repo, "restore", "latest", "--target", tmp_path / "target", check=False)
    assert proc.returncode == 1
    assert pack[:10] in proc.stderr.decode() and proc.stderr.decode().splitlines()[-1].startswith("Fatal: ")
    summary = [line for line in proc.stdout.decode().splitlines() if line.startswith("Summary: Restored ")]
    if summary:  # restic's summary counts what was restored: never all of it here
        done, _, total = summary[0].split()[2:5]
        assert int(done) < int(total), summary


@pytest.mark.parametrize("args", [("check",), ("prune",), ("dump", "latest", "{small}/data.bin")])
def test_missing_pack_named_by_check_prune_dump(pack_gone, args):
    repo, copy, pack, small = pack_gone
    args = [a.format(small=small) for a in args]
    ours = run_restique(repo, *args, check=False)
    assert ours.returncode != 0 and b"Fatal: " in ours.stderr
    assert pack[:10] in ours.stderr.decode() + ours.stdout.decode(), ours.stderr
    if args[0] != "dump":  # restic retries a missing file for 45 s
        theirs = run_restic(copy, *args, check=False)
        assert theirs.returncode == ours.returncode
