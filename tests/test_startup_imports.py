"""Start-up cost: every command pays for the modules it imports. These tests run commands in a
fresh interpreter and check which modules they loaded, so that a module-level import cannot
quietly bring back what is loaded lazily on purpose (the tree walker and the file name quoting
behind it, the index and blob store, the password command's subprocess), and that the garbage
collector, off during start-up, is on again while the command works."""
import json
import sys

import pytest

from conftest import run_program, run_restique

# Runs restique's main() with the arguments after the output file name, then writes what the
# command loaded and whether the collector was on when it opened the repository.
PROBE = """
import gc, json, sys
out = sys.argv[1]
sys.argv = ["restique"] + sys.argv[2:]
from restique.cli import context

collector_on = []
def _recording(open_repository):
    def wrapper(self, *args, **kwargs):
        collector_on.append(gc.isenabled())
        return open_repository(self, *args, **kwargs)
    return wrapper
for name in ("open_for_reading", "open_exclusively", "open_unlocked"):
    setattr(context.GlobalOptions, name, _recording(getattr(context.GlobalOptions, name)))

def write():
    with open(out, "w") as f:
        json.dump({"modules": sorted(sys.modules), "collector_on": collector_on}, f)
import atexit
atexit.register(write)  # whatever way main() ends the process, exit handlers run

from restique.cli.main import main
main()
"""

# not needed to list snapshots
LAZY_FOR_SNAPSHOTS = {
    "restique.operations.walker", "restique.model.node", "restique.model.names",
    "restique.repository.index", "restique.repository.blob_store",
    "subprocess", "shlex",
    "zstandard",  # decompression is native; only writers compress
    "difflib",  # click's "did you mean" list, built when -r was tried as a long option
    "tempfile", "shutil", "random",  # the cache's writes and the retries' pauses need them
}


def probe(tmp_path, repo, *args):
    out = tmp_path / "probe.json"
    proc = run_program([sys.executable, "-c", PROBE, out], *args, repo=repo)
    return proc, json.loads(out.read_text())


@pytest.fixture(scope="module")
def repo(tmp_path_factory):
    base = tmp_path_factory.mktemp("startup")
    (base / "data").mkdir()
    (base / "data" / "file").write_text("content")
    repo = base / "repo"
    run_restique(repo, "init")
    run_restique(repo, "backup", base / "data")
    return repo


def test_snapshots_loads_no_tree_index_or_subprocess_modules(tmp_path, repo):
    proc, seen = probe(tmp_path, repo, "snapshots", "--json")
    assert len(json.loads(proc.stdout)) == 1
    assert LAZY_FOR_SNAPSHOTS.isdisjoint(seen["modules"]), LAZY_FOR_SNAPSHOTS & set(seen["modules"])


def test_version_opens_no_repository_modules(tmp_path):
    proc, seen = probe(tmp_path, None, "version")
    assert proc.stdout.startswith(b"restique ")
    opening = {"restique.operations.open_repo", "restique.repository.repository", "restique.repository.keys"}
    assert opening.isdisjoint(seen["modules"]), opening & set(seen["modules"])


def test_the_lazy_modules_still_load_where_they_are_used(tmp_path, repo):
    proc, seen = probe(tmp_path, repo, "ls", "latest")
    assert b"/file" in proc.stdout
    assert {"restique.operations.walker", "restique.repository.index"} <= set(seen["modules"])


@pytest.mark.parametrize("args", [("snapshots",), ("check",), ("unlock",)])
def test_collector_is_on_while_the_command_works(tmp_path, repo, args):
    _, seen = probe(tmp_path, repo, *args)
    assert seen["collector_on"] == [True]


def test_password_command_still_works(tmp_path, repo):
    from conftest import PASSWORD, clean_env

    env = clean_env()
    del env["RESTIC_PASSWORD"]
    proc = run_restique(repo, "--password-command", f"echo {PASSWORD}", "snapshots", "--json", env=env)
    assert len(json.loads(proc.stdout)) == 1


def test_the_key_derivation_starts_before_typing_loads():
    """What loads before the key prefetch starts the derivation delays every command: the
    package and the prefetch keep typing (and the re, functools... it brings) for later."""
    proc = run_program([sys.executable, "-c",
                        "import sys; import restique.cli.key_prefetch, restique.repository.derivations; "
                        "print(sorted({'typing', 're', 'click'} & set(sys.modules)))"], repo=None)
    assert proc.stdout.strip() == b"[]"
