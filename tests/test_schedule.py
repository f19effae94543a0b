"""restique schedule NAME: systemd user units (checked with systemd-analyze verify), the
crontab line where no user systemd answers, --dry-run and --remove. The tests never reach
the real user's systemd: HOME, XDG_CONFIG_HOME and XDG_RUNTIME_DIR are temporary folders."""
import shlex
import shutil
import subprocess

import pytest

from conftest import PASSWORD, clean_env, run_restique
from restique.errors import UsageError
from restique.operations.schedule import Schedule
from restique.repository.repository import init_repository

NO_SYSTEMD = ("no systemd user instance is reachable: the timer is written but not enabled; "
              "add this line to your crontab (crontab -e) instead:")


@pytest.fixture
def world(tmp_path):
    """A profile file, a repository, and an environment whose user systemd is unreachable."""
    (tmp_path / "run").mkdir()
    (tmp_path / "pw").write_text(PASSWORD)
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "f.txt").write_text("data")
    init_repository(str(tmp_path / "repo"), PASSWORD, kdf_params=(1 << 10, 8, 1)).close()
    config = tmp_path / "profiles.toml"
    config.write_text(f'[profile.nightly]\nrepository = "{tmp_path / "repo"}"\npassword-file = "pw"\n'
                      f'[profile.nightly.backup]\nsources = ["{tmp_path / "src"}"]\n')
    env = clean_env(HOME=str(tmp_path), XDG_CONFIG_HOME=str(tmp_path / "config"),
                    XDG_RUNTIME_DIR=str(tmp_path / "run"), DBUS_SESSION_BUS_ADDRESS=f"unix:path={tmp_path}/no-bus")
    del env["RESTIC_PASSWORD"]
    return tmp_path, config, env


def verify(env, *units):
    """systemd-analyze verify, as the user manager would load the units."""
    tool = shutil.which("systemd-analyze")
    assert tool, "systemd-analyze is part of the test environment (package systemd)"
    return subprocess.run([tool, "verify", "--user", *map(str, units)], env=env, capture_output=True, text=True)


def test_daily_units_are_written_verified_and_runnable(world):
    folder, config, env = world
    proc = run_restique(None, "schedule", "nightly", "--every", "daily", "--at", "02:30", "--config", config, env=env)
    units = folder / "config" / "systemd" / "user"
    service, timer = units / "restique-nightly.service", units / "restique-nightly.timer"
    lines = proc.stdout.decode().splitlines()
    assert lines[:3] == [f"wrote {service}", f"wrote {timer}", NO_SYSTEMD]
    command = lines[3].split(" ", 5)
    assert command[:5] == ["30", "2", "*", "*", "*"]
    assert command[5].endswith(f"restique run nightly --config {config}")
    assert "OnCalendar=*-*-* 02:30:00\nPersistent=true\n" in timer.read_text()
    checked = verify(env, timer, service)
    assert checked.returncode == 0, checked.stderr
    # the service's command is the job: run it as systemd would
    exec_start = next(l for l in service.read_text().splitlines() if l.startswith("ExecStart="))
    job = subprocess.run(shlex.split(exec_start[len("ExecStart="):]), env=env, capture_output=True, text=True)
    assert job.returncode == 0 and job.stdout.splitlines()[-1].startswith("run nightly: success"), job
    assert len(list((folder / "repo" / "snapshots").iterdir())) == 1


@pytest.mark.parametrize("every, at, calendar, crontab", [
    ("hourly", "00:15", "*-*-* *:15:00", "15 * * * *"),
    ("weekly", "23:05", "Mon *-*-* 23:05:00", "5 23 * * 1"),
    ("Mon..Fri 22:00", None, "Mon..Fri 22:00", None),
])
def test_other_schedules_verify(world, every, at, calendar, crontab):
    folder, config, env = world
    args = ["--every", every] + (["--at", at] if at else [])
    proc = run_restique(None, "--config", config, "schedule", "nightly", *args, env=env)
    timer = folder / "config" / "systemd" / "user" / "restique-nightly.timer"
    assert f"OnCalendar={calendar}\n" in timer.read_text()
    assert verify(env, timer, timer.with_suffix(".service")).returncode == 0
    last = proc.stdout.decode().splitlines()[-1]
    if crontab:
        assert last.startswith(crontab + " /")
    else:
        assert "a calendar expression has no crontab form" in last


def test_a_bad_calendar_is_caught_by_systemd_analyze(world):
    folder, config, env = world
    run_restique(None, "--config", config, "schedule", "nightly", "--every", "every full moon", env=env)
    timer = folder / "config" / "systemd" / "user" / "restique-nightly.timer"
    checked = verify(env, timer, timer.with_suffix(".service"))
    assert checked.returncode != 0 and "calendar" in checked.stderr


def test_dry_run_writes_nothing_and_remove_takes_the_units_out(world):
    folder, config, env = world
    units = folder / "config" / "systemd" / "user"
    dry = run_restique(None, "--config", config, "schedule", "nightly", "--dry-run", env=env)
    assert not units.exists()
    out = dry.stdout.decode()
    assert f"# {units / 'restique-nightly.service'}\n[Unit]" in out and "OnCalendar=*-*-* 00:00:00" in out
    run_restique(None, "--config", config, "schedule", "nightly", env=env)
    removed = run_restique(None, "schedule", "nightly", "--remove", env=env)
    assert removed.stdout.decode().splitlines() == [
        f"removed {units / 'restique-nightly.timer'}", f"removed {units / 'restique-nightly.service'}",
        "no systemd user instance is reachable: remove the job's line from your crontab if you added one"]
    assert list(units.iterdir()) == []
    again = run_restique(None, "schedule", "nightly", "--remove", env=env)
    assert again.stdout.decode().splitlines()[0] == f"no units of profile nightly in {units}"


@pytest.mark.parametrize("args, message", [
    (["unknown"], 'unknown profile "unknown"'),
    (["nightly", "--at", "25:00"], '--at takes a time as HH:MM, not "25:00"'),
    (["nightly", "--every", "Mon 10:00", "--at", "10:00"], "--at goes with --every hourly, daily or weekly"),
])
def test_mistakes_write_nothing(world, args, message):
    folder, config, env = world
    proc = run_restique(None, "--config", config, "schedule", *args, env=env, check=False)
    assert proc.returncode == 1 and message in proc.stderr.decode() and proc.stderr.count(b"\n") == 1
    assert not (folder / "config" / "systemd").exists()


def test_schedule_texts():
    assert Schedule("daily").on_calendar() == "*-*-* 00:00:00"
    assert Schedule("daily", "7:05").crontab_fields() == "5 7 * * *"
    with pytest.raises(UsageError):
        Schedule("daily", "7").on_calendar()
