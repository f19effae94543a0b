"""restique run NAME: a profile's job (hooks, backup, forget and prune, check) on a local
repository and on a REST server, with restic reading the result; the JSON report; the exit
status of the worst step; hooks in order, with the job's result in their environment."""
import json
import os
import shutil
import tempfile
import textwrap
from pathlib import Path

import pytest

from conftest import PASSWORD, clean_env, restique_cmd, run_program, run_restic, run_restique
from restique.operations.run_job import worst_exit_code
from restique.repository.repository import init_repository
from servers import RcloneServer


@pytest.fixture(scope="module")
def home(tmp_path_factory):
    root = tmp_path_factory.mktemp("run")
    src = root / "src"
    (src / "sub").mkdir(parents=True)
    (src / "a.txt").write_text("alpha\n")
    (src / "sub" / "b.bin").write_bytes(os.urandom(50_000))
    (src / "skip.tmp").write_text("excluded\n")
    return root


def profile_file(folder: Path, repository: str, source: Path, extra: str = "", name: str = "job") -> Path:
    """A profile file in folder, with a password file beside it."""
    path = folder / f"{name}.toml"
    if not (folder / "pw").exists():
        (folder / "pw").write_text(PASSWORD + "\n")
        (folder / "pw").chmod(0o600)
    path.write_text(textwrap.dedent(f"""
        [profile.{name}]
        repository = "{repository}"
        password-file = "pw"
        [profile.{name}.backup]
        sources = ["{source}"]
        exclude = ["*.tmp"]
        tags = ["scheduled"]
        """) + textwrap.dedent(extra))
    return path


def run_job(path: Path, *args, name="job", **kw):
    env = clean_env()
    del env["RESTIC_PASSWORD"]  # the profile's password file must be enough
    return run_restique(None, "run", name, "--config", path, *args, env=kw.pop("env", env), **kw)


def snapshots(repo, **kw):
    return json.loads(run_restic(repo, "snapshots", "--json", **kw).stdout)


def test_worst_step_decides_the_exit_status():
    assert worst_exit_code([0, 0]) == 0
    assert worst_exit_code([3, 0]) == 3
    assert worst_exit_code([3, 1]) == 1
    assert worst_exit_code([0, 12, 1]) == 12
    assert worst_exit_code([1, 3]) == 1


def test_run_on_a_local_repository_backs_up_forgets_prunes_and_checks(home, tmp_path):
    repo = tmp_path / "repo"
    init_repository(str(repo), PASSWORD, kdf_params=(1 << 10, 8, 1)).close()
    path = profile_file(tmp_path, str(repo), home / "src", """
        [profile.job.forget]
        keep-last = 1
        prune = true
        [profile.job.check]
        read-data-subset = "100%"
        """)
    first = run_job(path)
    (home / "src" / "a.txt").write_text("alpha, changed\n")
    second = run_job(path)
    lines = second.stdout.decode().splitlines()
    assert [line.split(":")[0] for line in lines] == ["backup", "forget", "prune", "check", "run job"], lines
    assert "1 changed" in lines[0] and lines[1].startswith("forget: removed 1 snapshots, kept 1")
    assert lines[3].startswith("check: no errors were found, ") and "packs read" in lines[3]
    assert lines[-1].startswith("run job: success in ")
    assert first.stdout.decode().splitlines()[1].startswith("forget: removed 0 snapshots")
    # restic reads what the job left: one snapshot, without the excluded file, and no damage
    listed = snapshots(repo)
    assert len(listed) == 1 and listed[0]["tags"] == ["scheduled"]
    files = run_restic(repo, "ls", "latest").stdout.decode()
    assert "a.txt" in files and "skip.tmp" not in files
    run_restic(repo, "check", "--read-data")


@pytest.fixture(scope="module")
def rest_server(tmp_path_factory):
    server = RcloneServer(tmp_path_factory.mktemp("rest")).start()
    yield server
    server.stop()


def test_run_against_a_rest_server_with_a_json_report(home, tmp_path, rest_server):
    location = f"rest:{rest_server.url}/profile-job/"
    path = profile_file(tmp_path, location, home / "src", """
        [profile.job.forget]
        keep-daily = 7
        """)
    env = clean_env()
    del env["RESTIC_PASSWORD"]
    run_restique(None, "--config", path, "--profile", "job", "init", env=env)
    proc = run_job(path, "--json")
    report = json.loads(proc.stdout)  # one JSON document, nothing else on stdout
    assert report["message_type"] == "run_summary" and report["profile"] == "job"
    assert report["success"] is True and report["exit_code"] == 0
    assert [step["step"] for step in report["steps"]] == ["backup", "forget", "check"]
    for step in report["steps"]:
        assert {"step", "exit_code", "success", "duration", "message"} <= set(step)
    backup = report["steps"][0]
    assert backup["snapshot_id"] == report["snapshot_id"] and backup["errors"] == 0
    assert backup["files_new"] == 2
    assert report["steps"][2]["summary"]["num_errors"] == 0
    listed = snapshots(None, env=clean_env(RESTIC_REPOSITORY=location))
    assert [sn["id"] for sn in listed] == [report["snapshot_id"]]


def test_hooks_run_in_order_with_the_jobs_result(home, tmp_path):
    repo = tmp_path / "repo"
    init_repository(str(repo), PASSWORD, kdf_params=(1 << 10, 8, 1)).close()
    log = tmp_path / "hooks.log"
    path = profile_file(tmp_path, str(repo), home / "src", f"""
        [profile.job.hooks]
        before = ['echo "before $RESTIQUE_PROFILE $RESTIQUE_JOB ${{RESTIQUE_RESULT-unset}} $(ls {repo}/snapshots | wc -l)" >> {log}']
        after = ['echo "after $RESTIQUE_RESULT $RESTIQUE_EXIT_CODE $RESTIQUE_SNAPSHOT_ID [$RESTIQUE_ERROR] $(ls {repo}/snapshots | wc -l)" >> {log}',
                 'echo "second after" >> {log}']
        on-error = 'echo "on-error" >> {log}'
        """)
    report = json.loads(run_job(path, "--json").stdout)
    before, after, second = log.read_text().splitlines()
    assert before == "before job run unset 0"  # before the backup: no snapshot yet
    assert after == f"after success 0 {report['snapshot_id']} [] 1"
    assert second == "second after"
    assert [s["step"] for s in report["steps"]] == ["before-hook", "backup", "check", "after-hook"]


def test_a_failing_before_hook_stops_the_job(home, tmp_path):
    repo = tmp_path / "repo"
    init_repository(str(repo), PASSWORD, kdf_params=(1 << 10, 8, 1)).close()
    log = tmp_path / "hooks.log"
    path = profile_file(tmp_path, str(repo), home / "src", f"""
        [profile.job.hooks]
        before = ["exit 7", "echo never >> {log}"]
        after = "echo after >> {log}"
        on-error = 'echo "on-error $RESTIQUE_RESULT $RESTIQUE_EXIT_CODE [$RESTIQUE_ERROR]" >> {log}'
        """)
    proc = run_job(path, check=False)
    assert proc.returncode == 1
    out = proc.stdout.decode().splitlines()
    assert len(out) == 3 and out[0].startswith("before-hook: failed (exit 1): 'exit 7' failed: exit status 7")
    assert out[1].startswith("on-error-hook: ok")
    assert out[2].startswith("run job: failed at before-hook (exit 1)")
    assert log.read_text().splitlines() == ["on-error failure 1 [before-hook: 'exit 7' failed: exit status 7]"]
    assert os.listdir(repo / "snapshots") == []


def test_a_failed_step_runs_on_error_with_its_exit_code(home, tmp_path):
    log = tmp_path / "hooks.log"
    path = profile_file(tmp_path, str(tmp_path / "missing"), home / "src", f"""
        [profile.job.hooks]
        after = "echo after >> {log}"
        on-error = 'echo "$RESTIQUE_RESULT $RESTIQUE_EXIT_CODE" >> {log}'
        """)
    proc = run_job(path, "--json", check=False)
    assert proc.returncode == 10
    report = json.loads(proc.stdout)
    assert [(s["step"], s["exit_code"]) for s in report["steps"]] == [("open", 10), ("on-error-hook", 0)]
    assert log.read_text() == "failure 10\n"
    assert proc.stderr.count(b"\n") == 0, "run reports in its summary, not with Fatal"


DROP = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]


def test_an_unreadable_file_makes_the_job_exit_3_after_all_steps():
    """restique runs as user nobody, so that a root-only file cannot be read."""
    folder = Path(tempfile.mkdtemp(prefix="restique-run-nobody-", dir="/tmp"))
    try:
        folder.chmod(0o777)
        src = folder / "data"
        src.mkdir()
        (src / "ok.txt").write_text("ok\n")
        (src / "secret.txt").write_text("secret\n")
        (src / "secret.txt").chmod(0o000)
        (folder / "pw").write_text(PASSWORD)
        (folder / "pw").chmod(0o644)
        for sub in ("home", "cache"):
            (folder / sub).mkdir()
            os.chown(folder / sub, 65534, 65534)
        path = profile_file(folder, str(folder / "repo"), src, name="nobody")
        path.chmod(0o644)
        env = clean_env(HOME=str(folder / "home"), XDG_CACHE_HOME=str(folder / "cache"))
        del env["RESTIC_PASSWORD"]
        run_program(DROP + restique_cmd(), "--config", path, "--profile", "nobody", "init", env=env, cwd=folder)
        proc = run_program(DROP + restique_cmd(), "run", "nobody", "--config", path, env=env, cwd=folder, check=False)
        out = proc.stdout.decode().splitlines()
        assert proc.returncode == 3, (out, proc.stderr)
        assert out[0].startswith("backup: failed (exit 3): snapshot ") and "1 source files could not be read" in out[0]
        assert out[1].startswith("check: no errors were found")  # the job went on
        assert out[2].startswith("run nobody: failed at backup (exit 3)")
        assert b"secret.txt" in proc.stderr
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def test_run_needs_something_to_back_up(tmp_path):
    path = tmp_path / "p.toml"
    path.write_text('[profile.empty]\nrepository = "/nowhere"\n')
    proc = run_restique(None, "run", "empty", "--config", path, check=False)
    assert proc.returncode == 1
    assert proc.stderr.decode() == (f"Fatal: {path}: profile empty has nothing to back up: "
                                    "set backup.sources (or backup.files-from)\n")


def test_damage_found_by_check_fails_the_job_after_a_good_backup(home, tmp_path):
    """check reads the repository itself (not the local cache): a damaged data pack is found."""
    repo = tmp_path / "repo"
    init_repository(str(repo), PASSWORD, kdf_params=(1 << 10, 8, 1)).close()
    path = profile_file(tmp_path, str(repo), home / "src", """
        [profile.job.check]
        read-data-subset = "100%"
        """)
    run_job(path)
    biggest = max((repo / "data").rglob("*"), key=lambda p: p.stat().st_size if p.is_file() else 0)
    damaged = bytearray(biggest.read_bytes())
    damaged[100] ^= 0xFF
    biggest.chmod(0o600)
    biggest.write_bytes(bytes(damaged))
    proc = run_job(path, "--json", check=False)
    report = json.loads(proc.stdout)
    assert proc.returncode == 1 and report["exit_code"] == 1 and report["success"] is False
    assert [(s["step"], s["exit_code"]) for s in report["steps"]] == [("backup", 0), ("check", 1)]
    assert report["steps"][1]["message"].startswith("repository contains errors (1 found, ")
    assert biggest.name[:8] in report["steps"][1]["message"]
