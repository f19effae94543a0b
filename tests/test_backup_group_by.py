"""backup --group-by: which snapshots the parent is chosen from (current restic's flag;
restic 0.14 always used host and paths). The newest snapshot not newer than --time in the
group wins: the same host, paths that include all of the backup's, tags that include all of
the backup's, for each field named."""
import json

import pytest

from conftest import PASSWORD, run_restique as restique
from restique.model.snapshot_group import GroupBy


@pytest.fixture(scope="module")
def repo(tmp_path_factory):
    """Three snapshots, oldest first: host a of /x/src (tag t), host b of /x/src, host a of
    /x/other. Each is backed up with --time so their order is fixed."""
    base = tmp_path_factory.mktemp("group_by")
    repo = base / "repo"
    for name in ("src", "other"):
        (base / name).mkdir()
        (base / name / "f").write_text(name)
    restique(repo, "init")
    ids = {}
    for key, host, folder, time, tags in (("a-src", "a", "src", "2024-01-01 10:00:00", ["--tag", "t"]),
                                          ("b-src", "b", "src", "2024-01-02 10:00:00", []),
                                          ("a-other", "a", "other", "2024-01-03 10:00:00", [])):
        out = restique(repo, "backup", "--json", "--host", host, "--time", time, *tags, base / folder).stdout
        ids[key] = json.loads(out.splitlines()[-1])["snapshot_id"]
    return repo, base, ids


def parent_of(repo, base, *flags) -> str:
    """The parent a backup of base/src by host a chooses (None: none), as its first line says."""
    first = restique(repo, "backup", "--dry-run", "--host", "a", *flags, base / "src").stdout.decode().splitlines()[0]
    if first == "no parent snapshot found, will read all files":
        return None
    assert first.startswith("using parent snapshot "), first
    return first.split()[-1]


@pytest.mark.parametrize("flags, expected", [
    ((), "a-src"),                               # default host,paths
    (("--group-by", "host,paths"), "a-src"),
    (("-g", "host"), "a-other"),                 # any paths of host a
    (("--group-by", "paths"), "b-src"),          # any host with /x/src
    (("--group-by", ""), "a-other"),             # no grouping: the newest of all
    (("--group-by", "host,paths,tags", "--tag", "t"), "a-src"),
    (("--group-by", "tags", "--tag", "t"), "a-src"),
    (("--group-by", "host,tags"), "a-other"),    # no tags asked: every tag set matches
])
def test_parent_comes_from_the_group(repo, flags, expected):
    repo_path, base, ids = repo
    assert parent_of(repo_path, base, *flags) == ids[expected][:8]


def test_no_snapshot_in_the_group_means_no_parent(repo):
    repo_path, base, _ = repo
    assert parent_of(repo_path, base, "--group-by", "tags", "--tag", "nowhere") is None
    assert parent_of(repo_path, base, "--group-by", "host,paths", "--time", "2023-12-31 00:00:00") is None


def test_unknown_grouping_is_a_usage_error(repo):
    repo_path, base, _ = repo
    proc = restique(repo_path, "backup", "--group-by", "host,size", base / "src", check=False)
    assert proc.returncode == 1
    assert proc.stderr.decode().strip() == "Fatal: unknown grouping option: 'size'"


def test_library_request_takes_the_grouping(repo):
    from restique import api
    from restique.operations.backup import BackupRequest

    repo_path, base, ids = repo
    opened = api.open(str(repo_path), password=PASSWORD)
    summary = api.backup(opened, [str(base / "src")],
                         BackupRequest(hostname="a", group_by=GroupBy(paths=True), dry_run=True))
    assert summary.outcome.parent == ids["b-src"]


@pytest.mark.parametrize("line, expected", [("", GroupBy(host=True, paths=True)),
                                            ('group-by = "tags"', GroupBy(tags=True)),
                                            ('group-by = ""', GroupBy())])
def test_a_profile_sets_the_grouping_of_its_backup(tmp_path, line, expected):
    from types import SimpleNamespace

    from restique.cli.cmd_run import job_options
    from restique.profiles import load_profile

    path = tmp_path / "profiles.toml"
    path.write_text(f'[profile.p]\nrepository = "/srv/repo"\n[profile.p.backup]\nsources = ["/etc"]\n{line}\n')
    path.chmod(0o600)
    job = job_options(load_profile("p", str(path)), SimpleNamespace(retry_lock=None))
    assert job.backup.group_by == expected
