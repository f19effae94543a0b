"""restore's status, as restic 0.16+ shows it: a status line on a terminal, status lines in a
log only with RESTIC_PROGRESS_FPS, `{"message_type":"status",...}` lines with --json, none
with -q; the summary stays as it was.

A download limit makes the restore of 3 MiB take ~3 s, long enough for several
status updates."""
import json
import os
import pty
import re
import subprocess

import pytest

from conftest import PASSWORD, TRACEBACK, clean_env, restique_cmd, run_restique as restique

SLOW = ("--limit-download", "1024")  # KiB/s
STATUS = re.compile(rb"^\[0:0\d\] (\d+\.\d\d%)?  \d+ files/dirs [\d.]+ (B|KiB|MiB), "
                    rb"total \d+ files/dirs [\d.]+ (B|KiB|MiB)$")
SUMMARY = re.compile(rb"^Summary: Restored 6 files/dirs \(3\.000 MiB\) in 0:0\d$")
TOTAL_BYTES = 3 * 1024 * 1024 + 18
STATUS_FIELDS = ["message_type", "seconds_elapsed", "percent_done", "total_files", "files_restored",
                 "files_skipped", "files_deleted", "total_bytes", "bytes_restored", "bytes_skipped"]


@pytest.fixture(scope="module")
def repo(tmp_path_factory):
    base = tmp_path_factory.mktemp("restore-progress")
    src = base / "src"
    os.makedirs(src / "sub")
    # incompressible: 3 MiB to download, in two files, so at least two blobs: the progress
    # counts a blob once it is written, and one 3 MiB file can be one blob (the chunker finds
    # no cut in 8% of random files), which went from 0% to 100% in one step
    (src / "big.bin").write_bytes(os.urandom(2 * 1024 * 1024))
    (src / "a.txt").write_bytes(os.urandom(1024 * 1024))
    for name in ("sub/b.txt", "sub/c.txt"):
        (src / name).write_text(name)
    restique(base / "repo", "init")
    restique(base / "repo", "backup", "src", cwd=base)
    return base / "repo"


def restore(repo, tmp_path, *args, fps=None):
    env = clean_env() if fps is None else clean_env(RESTIC_PROGRESS_FPS=fps)
    target = tmp_path / f"target{len(list(tmp_path.iterdir()))}"
    return restique(repo, *SLOW, *args, "restore", "latest", "--target", target, env=env).stdout


def test_a_log_gets_status_lines_when_asked(repo, tmp_path):
    out = restore(repo, tmp_path, fps="10").splitlines()
    status = [line for line in out if STATUS.match(line)]
    assert len(status) >= 5, out  # ~20 in 2 s
    assert any(b" 0.00%" not in line and b" 100.00%" not in line for line in status)  # while it writes
    assert all(b"total 6 files/dirs 3.000 MiB" in line for line in status[-3:])
    assert out[0].startswith(b"restoring snapshot ") and SUMMARY.match(out[-1])
    assert len(out) == len(status) + 2 and not any(b"\x1b" in line for line in out)


def test_a_log_gets_no_status_by_default(repo, tmp_path):
    out = restore(repo, tmp_path).splitlines()
    assert len(out) == 2 and SUMMARY.match(out[-1]), out


def test_quiet_shows_no_status(repo, tmp_path):
    assert restore(repo, tmp_path, "-q", fps="10") == b""
    assert restore(repo, tmp_path, "-q", "--json", fps="10").count(b'"status"') == 0


def test_json_status_lines_have_restics_fields(repo, tmp_path):
    messages = [json.loads(line) for line in restore(repo, tmp_path, "--json", fps="10").splitlines()]
    status = [m for m in messages if m["message_type"] == "status"]
    assert len(status) >= 5 and messages[-1]["message_type"] == "summary"
    assert len(messages) == len(status) + 1
    for m in status:
        # restic's struct order, its omitempty fields left out when zero, no others
        assert list(m) == [k for k in STATUS_FIELDS if k in m]
        assert {"message_type", "percent_done"} <= set(m)
        assert all(type(m[k]) is int and m[k] > 0 for k in m if k not in ("message_type", "percent_done"))
        assert isinstance(m["percent_done"], (int, float)) and 0 <= m["percent_done"] <= 1
        if m.get("total_bytes"):  # 0 while the plan walk still counts the totals
            assert m["percent_done"] in (0, pytest.approx(m.get("bytes_restored", 0) / m["total_bytes"]))
    percents = [m["percent_done"] for m in status]
    assert percents == sorted(percents)  # never back
    assert any(m.get("seconds_elapsed") for m in status)
    assert any(0 < m["percent_done"] < 1 for m in status)  # while it writes
    assert status[-1]["total_files"] == 6 and status[-1]["total_bytes"] == TOTAL_BYTES
    summary = messages[-1]
    assert {k: v for k, v in summary.items() if k != "seconds_elapsed"} == {
        "message_type": "summary", "total_files": 6, "files_restored": 6,
        "total_bytes": TOTAL_BYTES, "bytes_restored": TOTAL_BYTES}


def test_json_status_once_a_second_by_default(repo, tmp_path):
    out = restore(repo, tmp_path, "--json").splitlines()
    assert 1 <= sum(b'"message_type":"status"' in line for line in out) <= 3  # ~2 in 2 s


def test_a_terminal_gets_one_status_line_cleared_before_the_summary(repo, tmp_path):
    primary, secondary = pty.openpty()
    proc = subprocess.Popen([*restique_cmd(), "-r", str(repo), *SLOW, "restore", "latest",
                             "--target", str(tmp_path / "target")],
                            stdin=subprocess.DEVNULL, stdout=secondary, stderr=secondary, env=clean_env())
    os.close(secondary)
    out = b""
    while True:
        try:
            chunk = os.read(primary, 65536)
        except OSError:  # the program has ended and closed the terminal
            break
        if not chunk:
            break
        out += chunk
    os.close(primary)
    assert proc.wait(timeout=60) == 0 and TRACEBACK not in out, out
    lines = out.split(b"\r\n")
    start = [i for i, line in enumerate(lines) if line.startswith(b"restoring snapshot ")]
    assert start, out
    updates = lines[start[0] + 1].split(b"\r\x1b[2K")  # each update overwrites the line before
    assert len(updates) >= 5, out
    assert all(STATUS.match(u) for u in updates[1:-1]), updates
    # the status is cleared before the summary, not left above it
    assert SUMMARY.match(updates[-1]) and lines[start[0] + 2:] == [b""]


def test_status_texts_are_restics():
    from restique.cli.cmd_restore import _status_json, _status_line
    from restique.operations.restorer import RestoreStats

    empty = RestoreStats()
    assert _status_line(empty, 0.4) == "[0:00]   0 files/dirs 0 B, total 0 files/dirs 0 B"
    assert _status_json(empty, 0.4) == '{"message_type":"status","percent_done":0}'
    stats = RestoreStats(files_total=10, files_restored=4, files_skipped=2, files_deleted=1,
                         bytes_total=4096, bytes_restored=4096, bytes_skipped=100)
    assert _status_line(stats, 65) == ("[1:05] 100.00%  4 files/dirs 4.000 KiB, total 10 files/dirs 4.000 KiB, "
                                       "skipped 2 files/dirs 100 B, deleted 1 files/dirs")
    assert _status_json(stats, 65.9) == (
        '{"message_type":"status","seconds_elapsed":65,"percent_done":1,"total_files":10,"files_restored":4,'
        '"files_skipped":2,"files_deleted":1,"total_bytes":4096,"bytes_restored":4096,"bytes_skipped":100}')
    stats.bytes_restored = 1
    assert '"percent_done":0.000244140625,' in _status_json(stats, 0)
    # while the plan walk still counts the totals, restored / total is no percentage yet
    stats.planning = True
    assert _status_line(stats, 65).startswith("[1:05]   4 files/dirs 1 B, total 10 files/dirs")
    assert '"percent_done":0,' in _status_json(stats, 0)


@pytest.mark.parametrize("delete", [False, True], ids=["overlapped", "walk-first"])
def test_the_totals_are_marked_as_growing_while_the_plan_walk_overlaps_the_writing(repo, tmp_path, monkeypatch,
                                                                                  delete):
    """The percentage of a restore whose walk still counts its totals could step back (files
    are written while the walk goes on): the counts say so until the walk has ended."""
    from restique.operations.restorer import RestoreOptions, Restorer, restorer
    from restique.operations.snapshot_lookup import find_snapshot
    from restique.repository.repository import open_repository

    during = []
    plan_restore = restorer.plan_restore

    def watched(traversal, options, index, report, *args, **kwargs):
        during.append(report.counts().planning)
        plan = plan_restore(traversal, options, index, report, *args, **kwargs)
        during.append(report.counts().planning)
        return plan

    monkeypatch.setattr(restorer, "plan_restore", watched)
    with open_repository(str(repo), PASSWORD) as r:
        snap, _ = find_snapshot(r, "latest")
        stats = Restorer(r, snap.tree, RestoreOptions(str(tmp_path / "out"), delete=delete)).restore()
    assert during == [not delete, not delete] and not stats.planning
    assert stats.bytes_restored == stats.bytes_total == TOTAL_BYTES


def test_the_report_hands_its_printer_a_copy_of_the_counts():
    from restique.operations.restorer import RestoreProgress
    from restique.operations.restorer.report import FILE_RESTORED, RestoreReport

    class Watcher(RestoreProgress):
        def watch(self, counts):
            self.counts = counts

    watcher = Watcher()
    report = RestoreReport(watcher)
    report.planned(10)
    report.done(FILE_RESTORED, "/a", 10, count_bytes=True)
    report.error("/b", "broken")
    seen = watcher.counts()
    report.bytes_restored(5)
    assert (seen.files_total, seen.files_restored, seen.bytes_total, seen.bytes_restored) == (1, 1, 10, 10)
    assert seen.errors == [] and report.stats.errors == [("/b", "broken")]
    assert watcher.counts().bytes_restored == 15
