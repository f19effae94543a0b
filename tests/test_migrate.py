"""migrate: a format 1 repository made by restic, upgraded by restique to format 2, then
checked, backed up into with compression by both tools and restored; the listing and
messages as restic prints them (current restic's where 0.14 said less)."""
import json
import re
import shutil

import pytest

from conftest import PASSWORD, run_restic, run_restique

UPGRADE_LISTING = b"available migrations:\n  upgrade_repo_v2\tupgrade a repository to version 2\n"


@pytest.fixture(scope="module")
def v1_repo(tmp_path_factory):
    """A format 1 repository made and backed up into by restic (shared: copy before use)."""
    base = tmp_path_factory.mktemp("migrate")
    data = base / "data"
    (data / "sub").mkdir(parents=True)
    (data / "text.txt").write_bytes(b"compressible text\n" * 20000)
    (data / "sub" / "small").write_bytes(b"small file\n")
    repo = base / "v1"
    run_restic(repo, "init", "--repository-version", "1")
    run_restic(repo, "backup", "-q", data)
    return repo


@pytest.fixture
def repo(v1_repo, tmp_path):
    return shutil.copytree(v1_repo, tmp_path / "repo")


def config(repo) -> dict:
    return json.loads(run_restic(repo, "cat", "config", "--no-lock").stdout)


def without_cache_path(output: bytes) -> bytes:
    return re.sub(rb"temporary cache in \S+", b"temporary cache in X", output)


def test_listing_matches_restic(repo):
    restic = run_restic(repo, "migrate")
    restique = run_restique(repo, "migrate")
    assert restique.stdout == restic.stdout == UPGRADE_LISTING


def test_upgrade_prints_what_restic_prints_and_keeps_id_and_polynomial(repo, tmp_path):
    by_restic = shutil.copytree(repo, tmp_path / "by-restic")
    before = config(repo)
    assert before["version"] == 1
    restic = run_restic(by_restic, "migrate", "upgrade_repo_v2")
    restique = run_restique(repo, "migrate", "upgrade_repo_v2")
    assert without_cache_path(restique.stdout) == without_cache_path(restic.stdout)
    assert restique.stdout.endswith(b"applying migration upgrade_repo_v2...\nmigration upgrade_repo_v2: success\n")
    assert restique.stderr == restic.stderr == b""
    assert config(repo) == dict(before, version=2) == config(by_restic)
    run_restic(repo, "check", "--read-data")


def test_upgraded_repository_takes_compressed_backups_from_both_tools(repo, tmp_path):
    run_restique(repo, "migrate", "upgrade_repo_v2")
    data = tmp_path / "new"
    data.mkdir()
    (data / "by-restic.txt").write_bytes(b"restic writes this compressed\n" * 5000)
    (data / "by-restique.txt").write_bytes(b"restique writes this compressed\n" * 5000)
    run_restic(repo, "backup", "-q", "--compression", "max", data, "--tag", "restic")
    run_restique(repo, "backup", "-q", "--compression", "max", data, "--tag", "restique")
    run_restic(repo, "check", "--read-data")
    run_restique(repo, "check", "--read-data")
    compressed = {}
    for index_id in run_restic(repo, "list", "index", "--no-lock").stdout.split():
        index = json.loads(run_restic(repo, "cat", "index", index_id.decode(), "--no-lock").stdout)
        for pack in index["packs"]:
            for blob in pack["blobs"]:
                compressed[blob["id"]] = "uncompressed_length" in blob
    assert any(compressed.values()) and not all(compressed.values())  # old blobs stay as they were
    for tool, run in (("restic", run_restic), ("restique", run_restique)):
        target = tmp_path / f"restored-{tool}"
        run(repo, "restore", "latest", "--tag", tool, "--target", target)
        restored = target / str(data).lstrip("/")
        assert (restored / "by-restic.txt").read_bytes() == (data / "by-restic.txt").read_bytes()
        assert (restored / "by-restique.txt").read_bytes() == (data / "by-restique.txt").read_bytes()
    old = tmp_path / "restored-old"
    run_restique(repo, "restore", "latest", "--tag", "", "--target", old)
    assert any(p.name == "text.txt" for p in old.rglob("*"))


def test_second_run_unknown_names_and_force(repo):
    run_restique(repo, "migrate", "upgrade_repo_v2", "-q")
    again = run_restique(repo, "migrate", "upgrade_repo_v2", "nosuch")
    assert again.returncode == 0 and again.stdout == b""
    assert again.stderr == (b"migration upgrade_repo_v2 cannot be applied: repository is already upgraded to "
                            b"version 2\nIf you want to apply this migration anyway, re-run with option --force\n"
                            b"unknown migration nosuch\n")
    listing = [run(repo, "migrate").stdout for run in (run_restic, run_restique)]
    assert listing[0] + b"\n" == listing[1] == b"available migrations:\nno migrations found\n"  # 0.14: no newline
    forced = run_restique(repo, "migrate", "--force", "upgrade_repo_v2", check=False)
    assert forced.returncode == 1 and forced.stdout.startswith(b"checking repository integrity...")
    assert forced.stderr == (b"check for migration upgrade_repo_v2 failed, continuing anyway\n"
                             b"migration upgrade_repo_v2 failed: repository has version 2, only upgrades from "
                             b"version 1 are supported\n"
                             b"Fatal: repository has version 2, only upgrades from version 1 are supported\n")
    assert config(repo)["version"] == 2


def test_damaged_repository_is_not_upgraded(repo):
    pack = next(p for p in (repo / "data").rglob("*") if p.is_file())
    pack.chmod(0o600)
    pack.write_bytes(pack.read_bytes()[:-10])
    result = run_restique(repo, "migrate", "upgrade_repo_v2", check=False)
    assert result.returncode == 1 and result.stderr.endswith(b"Fatal: repository contains errors\n")
    assert b"applying migration" not in result.stdout
    assert config(repo)["version"] == 1


def test_locked_repository_and_wrong_password(repo):
    import restique

    with restique.open_repository(str(repo), PASSWORD) as other:
        other.lock(exclusive=False)
        locked = run_restique(repo, "migrate", "upgrade_repo_v2", check=False)
    assert locked.returncode == 11 and locked.stderr.startswith(b"Fatal: unable to create lock")
    assert config(repo)["version"] == 1
    from conftest import clean_env

    wrong = run_restique(repo, "migrate", env=clean_env(RESTIC_PASSWORD="wrong"), check=False)
    assert wrong.returncode == 12 and wrong.stderr == b"Fatal: wrong password or no key found\n"


def test_failed_save_puts_the_old_config_back(repo, monkeypatch, tmp_path):
    """The library call: a backend that fails to store the new config keeps the old one, and
    the copy named in the error stays where it says."""
    import tempfile

    import restique
    from restique.errors import RestiqueError
    from restique.operations.migrate import MigrateOptions, migrate

    original = (repo / "config").read_bytes()
    with restique.open_repository(str(repo), PASSWORD) as opened:
        real_save = opened.backend.save
        calls = []

        def flaky_save(ftype, name, data):
            calls.append(name)
            if len(calls) == 1:
                raise OSError("disk full")
            real_save(ftype, name, data)

        monkeypatch.setattr(opened.backend, "save", flaky_save)
        monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))  # the kept copy goes here
        events = []
        with pytest.raises(RestiqueError, match="re-uploaded old config was successful") as raised:
            for event in migrate(opened, MigrateOptions(names=["upgrade_repo_v2"])):
                events.append(event.kind)
        assert events == ["applying", "failed"] and opened.config.version == 1
    assert (repo / "config").read_bytes() == original
    kept = str(raised.value).rsplit(" ", 1)[1]
    assert kept.startswith(str(tmp_path)) and open(kept, "rb").read() == original
