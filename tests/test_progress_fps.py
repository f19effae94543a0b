"""RESTIC_PROGRESS_FPS: how often backup reports its status; in a log (stdout not a terminal)
restic writes no status unless the variable asks for it, then each status as plain lines."""
import json
import re

import pytest

from conftest import clean_env, run_restique as restique

SLOW_SOURCE = ("--stdin-from-command", "--", "sh", "-c", "sleep 0.8; echo data")
STATUS = re.compile(rb"^\[0:0\d\] \d+ files, ")


@pytest.fixture(scope="module")
def repo(tmp_path_factory):
    repo = tmp_path_factory.mktemp("fps") / "repo"
    restique(repo, "init")
    return repo


@pytest.mark.parametrize("fps, shown", [("10", True), ("0.5", False), ("", False), ("0", False),
                                        ("many", False), ("1000", True)])
def test_status_lines_in_a_log_only_when_asked(repo, fps, shown):
    out = restique(repo, "backup", *SLOW_SOURCE, env=clean_env(RESTIC_PROGRESS_FPS=fps)).stdout
    status = [line for line in out.splitlines() if STATUS.match(line)]
    assert bool(status) == shown, out.decode()
    if fps == "10":
        assert 3 <= len(status) <= 12  # ~8 in 0.8 s
    assert out.splitlines()[-1].startswith(b"snapshot ") and out.count(b"\x1b") == 0


def test_quiet_shows_no_status(repo):
    out = restique(repo, "-q", "backup", *SLOW_SOURCE, env=clean_env(RESTIC_PROGRESS_FPS="10")).stdout
    assert out == b""


def test_json_status_follows_the_rate(repo):
    def statuses(fps):
        out = restique(repo, "backup", "--json", *SLOW_SOURCE, env=clean_env(RESTIC_PROGRESS_FPS=fps)).stdout
        messages = [json.loads(line)["message_type"] for line in out.splitlines()]
        assert messages[-1] == "summary"
        return messages.count("status")

    assert statuses("20") >= 8  # ~16 in 0.8 s
    assert statuses("") <= 2  # one a second by default
