"""The library examples (examples/*.py) run as the programs they are, against a local
repository and against a REST server (rclone serve restic); restic reads what they wrote.
Also the API reference script (scripts/build_api_docs.py)."""
import json
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import PASSWORD, clean_env, run_restic
from servers import RcloneServer

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"


@pytest.fixture(scope="module")
def rest_server(tmp_path_factory):
    server = RcloneServer(tmp_path_factory.mktemp("api-rest")).start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def password_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("api-pw") / "password"
    path.write_text(PASSWORD + "\n")
    return path


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    root = tmp_path_factory.mktemp("api-example") / "documents"
    (root / "letters").mkdir(parents=True)
    (root / "letters" / "note.txt").write_text("dear restic,\n" * 50)
    (root / "photo.raw").write_bytes(bytes(range(256)) * 400)
    return root


def run_example(name: str, *args) -> subprocess.CompletedProcess:
    proc = subprocess.run([sys.executable, str(EXAMPLES / name), *map(str, args)], capture_output=True,
                          text=True, env=clean_env(), timeout=300)
    assert "Traceback" not in proc.stderr, proc.stderr
    return proc


@pytest.fixture(params=["local", "rest"])
def location(request, tmp_path, rest_server):
    if request.param == "local":
        return str(tmp_path / "repo")
    return f"rest:{rest_server.url}/{tmp_path.name}/"


def test_backup_list_read_back_then_retention(location, folder, password_file):
    for tag in ("monday", "tuesday"):
        proc = run_example("backup_remote.py", location, folder, "letters/note.txt",
                           "--password-file", password_file, "--tag", tag)
        assert proc.returncode == 0, proc.stderr
        assert "note.txt: 650 bytes restored into memory" in proc.stdout
    assert "2 files" in proc.stdout and proc.stdout.count(str(folder)) == 2  # both snapshots listed

    listed = json.loads(run_restic(location, "snapshots", "--json", env=clean_env()).stdout)
    assert sorted(tag for sn in listed for tag in sn["tags"]) == ["monday", "tuesday"]
    note = run_restic(location, "dump", "latest", f"{folder}/letters/note.txt", env=clean_env()).stdout
    assert note == (folder / "letters" / "note.txt").read_bytes()

    proc = run_example("retention.py", location, "--password-file", password_file, "--keep-last", "1")
    assert proc.returncode == 0, proc.stderr
    assert "keep 1, remove 1" in proc.stdout and "prune:" in proc.stdout
    remaining = json.loads(run_restic(location, "snapshots", "--json", env=clean_env()).stdout)
    assert [sn["tags"] for sn in remaining] == [["tuesday"]]
    run_restic(location, "check", "--read-data", env=clean_env())


def test_examples_report_errors_with_exit_codes(tmp_path, folder, password_file):
    wrong = tmp_path / "wrong"
    wrong.write_text("not the password\n")
    repo = tmp_path / "repo"
    assert run_example("backup_remote.py", repo, folder, "photo.raw", "--password-file", password_file).returncode == 0
    proc = run_example("retention.py", repo, "--password-file", wrong, "--keep-last", "1")
    assert proc.returncode == 12 and proc.stderr.startswith("error: wrong password")
    proc = run_example("retention.py", tmp_path / "nothing", "--password-file", password_file, "--keep-last", "1")
    assert proc.returncode == 10


def test_reference_pages_list_the_public_names(tmp_path):
    import restique.api

    proc = subprocess.run([sys.executable, str(ROOT / "scripts" / "build_api_docs.py"), str(tmp_path)],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    page = (tmp_path / "restique" / "api.html").read_text()
    for name in restique.api.__all__:
        assert f'id="{name}"' in page, name
    assert (ROOT / "docs" / "api" / "restique" / "api.html").exists()  # the committed pages
