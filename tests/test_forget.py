"""forget: restic 0.14's text for every kind of policy, grouping, filter and ID list, current
restic's --json, flags and refusals, real runs checked by `restic check --read-data`, and
the same repository forgotten in turns by restic and restique. The policy itself against
generated histories: test_forget_policy.py.

One repository per module, made by restic: a real backup whose snapshot is cloned (same tree)
at the times of restic's forget transcript, on two hosts and two path sets, some tagged.
Tests that remove snapshots work on copies. restic prints groups in random order, so text
is compared as the multiset of its blank-line separated blocks."""
import json
import os
import shutil
import subprocess
import time

import pytest

from conftest import PASSWORD, clean_env, restic_and_restique, restic_path, run_restic, run_restique

FAST_KDF = (1 << 10, 8, 1)
TIMES = ("2020-03-01T09:00:00Z", "2021-12-31T23:00:00Z", "2022-12-31T23:00:00Z", "2023-06-30T12:00:00Z",
         "2023-12-31T23:00:00Z", "2024-01-31T10:00:00Z", "2024-02-29T10:00:00Z", "2024-03-31T10:00:00Z",
         "2024-05-06T10:00:00Z", "2024-05-13T10:00:00Z", "2024-05-20T10:00:00Z", "2024-06-10T10:00:00Z",
         "2024-06-11T10:00:00Z", "2024-06-12T10:00:00Z", "2024-06-15T08:00:00Z", "2024-06-15T09:00:00Z",
         "2024-06-15T11:00:00Z", "2024-06-15T11:30:00Z", "2024-06-15T12:00:00Z")


def _fast_key(path) -> None:
    from restique.backend.base import FileType
    from restique.repository.keys import create_key
    from restique.repository.repository import open_repository

    with open_repository(str(path), PASSWORD) as repo:
        old = repo.list_ids(FileType.KEY)
        create_key(repo.backend, repo.key, PASSWORD, FAST_KDF)
        for key_id in old:
            repo.backend.remove(FileType.KEY, key_id)


def _clone_snapshots(path) -> None:
    """The backup's snapshot again at every time of TIMES (the first tagged `keep`), once
    on otherhost, and once with other paths and the tag `special`."""
    from restique.model.gotime import GoTime
    from restique.operations.snapshot_lookup import load_all_snapshots
    from restique.repository.repository import open_repository

    with open_repository(str(path), PASSWORD) as repo:
        (original,) = load_all_snapshots(repo)
        variants = [(t, "myhost", ["keep"] if i == 0 else None, original.paths) for i, t in enumerate(TIMES)]
        variants.append(("2024-06-15T12:30:00Z", "otherhost", None, original.paths))
        variants.append(("2024-06-01T00:00:00Z", "myhost", ["special"], [original.paths[0] + "/stamp.txt"]))
        for when, host, tags, paths in variants:
            original.time, original.hostname, original.tags, original.paths = GoTime.parse(when), host, tags, paths
            repo.save_json("snapshot", original.to_json(with_id=False))
        repo.remove("snapshot", original.id)


@pytest.fixture(scope="module")
def forget_repo(tmp_path_factory):
    base = tmp_path_factory.mktemp("forget")
    (base / "fdata").mkdir()
    (base / "fdata" / "stamp.txt").write_bytes(b"stamp\n")
    (base / "fdata" / "file.bin").write_bytes(os.urandom(5000))
    path = base / "repo"
    run_restic(path, "init")
    _fast_key(path)
    run_restic(path, "backup", "-q", "fdata", cwd=base)
    _clone_snapshots(path)
    return path


@pytest.fixture
def repo_copies(forget_repo, tmp_path):
    """Two copies of the module's repository: (for restic, for restique)."""
    copies = (tmp_path / "for-restic", tmp_path / "for-restique")
    for copy in copies:
        shutil.copytree(forget_repo, copy)
    return copies


def blocks(text: bytes):
    """The output's first line and its blank-line separated blocks, sorted: group order is
    random in restic."""
    first, _, rest = text.decode().partition("\n")
    return [first] + sorted(rest.split("\n\n"))


def assert_same_output(restic, restique):
    assert (restique.returncode, blocks(restique.stdout)) == (restic.returncode, blocks(restic.stdout))
    assert restique.stderr.decode() == restic.stderr.decode()


def short_ids(repo):
    proc = run_restic(repo, "snapshots", "--json", "--no-lock", "--no-cache")
    return sorted(sn["short_id"] for sn in json.loads(proc.stdout))


# --- text as restic 0.14 prints it ----------------------------------------------------------

@pytest.mark.parametrize("args", [
    ["--keep-last", "3"], ["--keep-hourly", "3", "-v"], ["--keep-daily", "4"], ["-w", "3"], ["-m", "4", "-y", "3"],
    ["-l", "2", "-d", "3", "-w", "2", "-m", "2", "-y", "2"], ["--keep-within", "2d"], ["--keep-within", "1y2m3d4h"],
    ["--keep-within-daily", "7d", "--keep-within-monthly", "6m"], ["--keep-within-hourly", "1d", "--keep-within-weekly", "1m"],
    ["--keep-within-yearly", "10y", "--keep-last", "1"], ["--keep-tag", "keep", "--keep-last", "1"],
    ["--keep-tag", "keep,special", "--keep-tag", "special", "-l", "1"], ["-l", "1", "--group-by", "host"],
    ["-l", "1", "--group-by", ""], ["-l", "1", "-g", "paths,tags", "-v"], ["-l", "1", "--host", "otherhost"],
    ["-l", "1", "--hostname", "otherhost"],
    ["-l", "2", "--path", "PATH", "--compact"], ["-l", "2", "--tag", "keep"], ["-y", "5", "-c", "-v"],
    ["-q", "-l", "2"],
], ids=" ".join)
def test_dry_run_text_as_restic(forget_repo, args):
    if "PATH" in args:
        args = [str(forget_repo.parent / "fdata") if a == "PATH" else a for a in args]
    restic, restique = restic_and_restique(forget_repo, "--no-lock", "forget", "--dry-run", *args)
    assert restic.returncode == 0 and b"snapshots" in restic.stdout
    assert_same_output(restic, restique)


def test_json_groups_as_restic(forget_repo):
    """The groups, keep and remove lists as restic 0.14 writes them, with current restic's
    reasons: each snapshot with its id, no counters."""
    args = ("forget", "--dry-run", "--json", "--keep-last", "2", "--keep-yearly", "1", "--keep-tag", "special")
    restic = json.loads(run_restic(forget_repo, *args).stdout)
    restique = json.loads(run_restique(forget_repo, *args).stdout)

    def by_key(groups):
        return {(g["host"], tuple(g["paths"]), g["tags"]): g for g in groups}

    restic, restique = by_key(restic), by_key(restique)
    assert set(restique) == set(restic)
    for key, group in restique.items():
        expected = restic[key]
        assert list(group) == ["tags", "host", "paths", "keep", "remove", "reasons"]
        assert group["keep"] == expected["keep"] and group["remove"] == expected["remove"]
        assert [r["matches"] for r in group["reasons"]] == [r["matches"] for r in expected["reasons"]]
        for reason, kept in zip(group["reasons"], group["keep"]):
            assert set(reason) == {"snapshot", "matches"} and reason["snapshot"] == kept


def test_json_by_group_key_without_grouping(forget_repo):
    proc = run_restique(forget_repo, "forget", "-n", "--json", "-l", "1", "--group-by", "")
    (group,) = json.loads(proc.stdout)
    assert (group["tags"], group["host"], group["paths"]) == (None, "", None)
    assert len(group["keep"]) == 1 and len(group["remove"]) == len(TIMES) + 1


def test_forget_ids_dry_run_and_unknown_ids(forget_repo):
    ids = short_ids(forget_repo)
    for args in ([ids[0]], [ids[1], "ffffffff"], ["ffffffff"], [ids[2], "--host", "otherhost"]):
        restic = run_restic(forget_repo, "forget", "--dry-run", *args, check=False)
        restique = run_restique(forget_repo, "forget", "--dry-run", *args, check=False)
        assert_same_output(restic, restique)
    assert run_restique(forget_repo, "forget", "--dry-run", "--json", ids[0]).stdout == b""


# --- real runs ------------------------------------------------------------------------------

def test_policy_run_as_restic_and_checked(repo_copies):
    """The same policy on two copies: same output, same snapshots left, restic's check
    passes; then restique forgets on restic's result and restic on restique's."""
    for_restic, for_restique = repo_copies
    args = ("forget", "--keep-daily", "5", "--keep-monthly", "3", "--keep-yearly", "2", "--keep-tag", "keep")
    assert_same_output(run_restic(for_restic, *args), run_restique(for_restique, *args))
    assert short_ids(for_restique) == short_ids(for_restic)
    run_restic(for_restique, "check", "--read-data", "--no-cache")

    again = ("forget", "--keep-last", "2")
    assert_same_output(run_restic(for_restique, *again), run_restique(for_restic, *again))
    assert short_ids(for_restique) == short_ids(for_restic) and len(short_ids(for_restic)) == 4
    run_restic(for_restic, "check", "--read-data", "--no-cache")


def test_forget_ids_run_as_restic(repo_copies):
    for_restic, for_restique = repo_copies
    ids = short_ids(for_restic)
    for args in ([ids[0]], [ids[1], ids[2], "ffffffff"], ["-q", ids[3]]):
        assert_same_output(run_restic(for_restic, "forget", *args), run_restique(for_restique, "forget", *args))
    assert short_ids(for_restique) == short_ids(for_restic) == ids[4:]
    run_restic(for_restique, "check", "--no-cache")


def test_unsafe_allow_remove_all_needs_a_filter(repo_copies):
    """Current restic: an empty policy removes every snapshot the filter selects, and is
    refused without a filter."""
    _, repo = repo_copies
    before = short_ids(repo)
    proc = run_restique(repo, "forget", "--unsafe-allow-remove-all", check=False)
    assert (proc.returncode, proc.stderr) == (
        1, b"Fatal: --unsafe-allow-remove-all is not allowed unless a snapshot filter option is specified\n")
    proc = run_restique(repo, "forget", "--unsafe-allow-remove-all", "--host", "otherhost")
    assert proc.stdout.startswith(b"Applying Policy: remove\nremove 1 snapshots:\n")
    assert b"1 / 1 files deleted" in proc.stdout
    assert len(short_ids(repo)) == len(before) - 1
    run_restic(repo, "check", "--no-cache")


def test_group_left_empty_is_refused(repo_copies):
    """Current restic refuses a policy that keeps nothing of a group, and removes nothing."""
    _, repo = repo_copies
    before = short_ids(repo)
    proc = run_restique(repo, "forget", "--keep-tag", "special", check=False)
    assert proc.returncode == 1 and proc.stdout == b""
    assert proc.stderr.decode().startswith('Fatal: refusing to delete last snapshot of snapshot group "host ')
    assert short_ids(repo) == before


def test_unlimited_counts(forget_repo):
    """unlimited (or -1, as restic 0.16) keeps every month: what a count larger than the
    number of months keeps in restic 0.14 (its oldest snapshot has a month of its own)."""
    args = ("forget", "-n", "--host", "myhost", "-g", "host")
    restic = json.loads(run_restic(forget_repo, *args, "--json", "--keep-monthly", "100").stdout)
    for value in ("unlimited", "-1"):
        proc = run_restique(forget_repo, *args, "--keep-monthly", value)
        assert proc.stdout.decode().splitlines()[:2] == ["Applying Policy: keep all monthly snapshots",
                                                        "keep 10 snapshots:"]
        (group,) = json.loads(run_restique(forget_repo, *args, "--json", "--keep-monthly", value).stdout)
        assert group["keep"] == restic[0]["keep"] and group["remove"] == restic[0]["remove"]


# --- bad input ------------------------------------------------------------------------------

@pytest.mark.parametrize("args", [
    ["--keep-within", "1x"], ["--keep-within-daily", "d"], ["--keep-last", "x"], ["-H", "1.5"],
    ["--no-lock", "--keep-last", "1"], ["--group-by", "foo", "-l", "1"],
], ids=" ".join)
def test_bad_input_as_restic(forget_repo, args):
    restic = run_restic(forget_repo, "forget", *args, check=False)
    restique = run_restique(forget_repo, "forget", *args, check=False)
    assert (restique.returncode, restique.stdout) == (restic.returncode, restic.stdout) == (1, b"")
    assert restique.stderr.decode().strip() == restic.stderr.decode().strip()


@pytest.mark.parametrize("args, message", [
    ([], "Fatal: no policy was specified, no snapshots will be removed"),
    (["--keep-last", "0"], "Fatal: no policy was specified, no snapshots will be removed"),
    (["--keep-last", "-2"], "Fatal: negative values other than -1 are not allowed for --keep-*"),
    (["--keep-within", "-1d"], "Fatal: durations containing negative values are not allowed for --keep-within*"),
], ids=str)
def test_refusals_of_current_restic(forget_repo, args, message):
    proc = run_restique(forget_repo, "forget", *args, check=False)
    assert (proc.returncode, proc.stdout, proc.stderr.decode()) == (1, b"", message + "\n")


def test_locked_repository(forget_repo):
    """restic holding a lock: forget (even a dry run, as restic) fails with exit code 11."""
    backup = subprocess.Popen([restic_path(), "-r", str(forget_repo), "backup", "--stdin", "--no-cache"],
                              stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                              env=clean_env())
    try:
        deadline = time.monotonic() + 30
        while not os.listdir(forget_repo / "locks") and time.monotonic() < deadline:
            time.sleep(0.05)
        proc = run_restique(forget_repo, "forget", "--dry-run", "--keep-last", "1", check=False)
        assert proc.returncode == 11 and proc.stdout == b""
        assert proc.stderr.startswith(b"Fatal: unable to create lock in backend: repository is already locked")
        assert run_restique(forget_repo, "--no-lock", "forget", "--dry-run", "-l", "30").returncode == 0
    finally:
        backup.kill()
        backup.wait()
        for name in os.listdir(forget_repo / "locks"):
            os.unlink(forget_repo / "locks" / name)
