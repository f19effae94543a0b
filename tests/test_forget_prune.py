"""forget --prune: the policy's removal followed by prune on the same locked repository, as
restic 0.14 prints and does it; prune's flags checked before anything is removed."""
import re
import shutil

import pytest

from conftest import run_restic, run_restique


@pytest.fixture(scope="module")
def history(tmp_path_factory):
    """A restic-made repository with three snapshots of a folder whose files change, so
    that forgetting the older two leaves data to prune."""
    base = tmp_path_factory.mktemp("forget-prune")
    repo, data = base / "repo", base / "data"
    data.mkdir()
    run_restic(repo, "init")
    for round_ in range(3):
        for i in range(4):
            (data / f"f{i}").write_bytes(bytes([round_ * 7 + i]) * (150_000 + 1000 * i) + str(round_).encode())
        run_restic(repo, "backup", "data", cwd=base)
    return repo


def _copy(history, tmp_path, name):
    target = tmp_path / name
    shutil.copytree(history, target)
    return target


def _normalised(text: bytes) -> str:
    return re.sub(r"\[\d+:\d\d\]", "[T]", text.decode())


def _files(repo, folder):
    return sorted(p.name for p in (repo / folder).rglob("*") if p.is_file())


@pytest.mark.parametrize("dry_run", [False, True])
def test_forget_prune_prints_and_does_what_restic_does(history, tmp_path, dry_run):
    by_restic, by_restique = _copy(history, tmp_path, "a"), _copy(history, tmp_path, "b")
    args = ["forget", "--keep-last", "1", "--prune", "--max-unused", "0"] + (["--dry-run"] if dry_run else [])
    expected = run_restic(by_restic, *args)
    got = run_restique(by_restique, *args)
    assert _normalised(got.stdout) == _normalised(expected.stdout)
    assert "2 snapshots have been removed, running prune" in got.stdout.decode()  # 0.14: in a dry run too
    for folder in ("data", "index", "snapshots"):
        assert len(_files(by_restique, folder)) == len(_files(by_restic, folder)), folder
    if dry_run:
        assert _files(by_restique, "data") == _files(history, "data")
    run_restic(by_restique, "check", "--read-data")
    run_restique(by_restic, "check", "--read-data")


def test_nothing_removed_means_no_prune(history, tmp_path):
    repo = _copy(history, tmp_path, "r")
    out = run_restique(repo, "forget", "--keep-last", "5", "--prune").stdout.decode()
    assert "running prune" not in out and "loading indexes" not in out
    assert _files(repo, "data") == _files(history, "data")


def test_bad_prune_flag_removes_nothing(history, tmp_path):
    repo = _copy(history, tmp_path, "r")
    proc = run_restique(repo, "forget", "--keep-last", "1", "--prune", "--max-unused", "1x", check=False)
    assert proc.returncode == 1
    assert proc.stderr.decode().strip() == (
        'Fatal: invalid number of bytes "1x" for --max-unused: strconv.ParseInt: parsing "1x": invalid syntax')
    assert _files(repo, "snapshots") == _files(history, "snapshots")
