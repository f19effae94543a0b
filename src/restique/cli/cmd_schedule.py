"""restique schedule NAME: run a profile's job regularly with a systemd user timer (or a
crontab line where no user systemd answers); --remove takes the timer out again."""
import os
import sys

import click


@click.command("schedule")
@click.argument("name")
@click.option("--every", default="daily", metavar="when",
              help="hourly, daily, weekly, or a systemd calendar expression (default: daily)")
@click.option("--at", "at", metavar="HH:MM", help="time of day (for hourly: the minute) (default: 00:00)")
@click.option("--remove", is_flag=True, help="disable the timer and delete its units")
@click.option("-n", "--dry-run", is_flag=True, help="print the units without writing them")
@click.pass_context
def schedule(ctx, name, every, at, remove, dry_run):
    """Run a profile's job (`restique run NAME`) on a schedule.

    Writes restique-NAME.service and restique-NAME.timer to ~/.config/systemd/user
    ($XDG_CONFIG_HOME/systemd/user) and enables the timer (systemctl --user); where no
    systemd user instance is reachable, says so and prints the crontab line to use instead.
    """
    from ..operations import schedule as units
    from ..profiles import config_path, load_profile

    folder = units.unit_folder()
    if remove:
        _remove(name, folder, dry_run)
        return
    path = config_path(ctx.parent.params.get("config"))
    load_profile(name, path)  # the profile must exist and be valid now, not at 02:30
    job = units.ScheduledJob(name, _restique_command() + ["run", name, "--config", path],
                             units.Schedule(every, at))
    if dry_run:
        print(f"# {os.path.join(folder, job.unit)}.service\n{job.service_text()}")
        print(f"# {os.path.join(folder, job.unit)}.timer\n{job.timer_text()}", end="")
        return
    job.timer_text()  # refuses a bad --every/--at before anything is written
    for written in units.write_units(job, folder):
        print(f"wrote {written}")
    if not units.has_user_systemd():
        line = job.crontab_line()
        if line is None:
            print("no systemd user instance is reachable: the timer is written but not enabled "
                  "(a calendar expression has no crontab form)")
        else:
            print("no systemd user instance is reachable: the timer is written but not enabled; "
                  "add this line to your crontab (crontab -e) instead:")
            print(line)
        return
    units.systemctl("daemon-reload")
    units.systemctl("enable", "--now", f"{job.unit}.timer")
    print(f"enabled {job.unit}.timer ({job.schedule.on_calendar()})")


def _remove(name: str, folder: str, dry_run: bool) -> None:
    from ..operations import schedule as units

    unit = units.unit_name(name)
    if dry_run:
        print(f"would disable {unit}.timer and delete its units from {folder}")
        return
    reachable = units.has_user_systemd()
    if reachable:
        units.systemctl("disable", "--now", f"{unit}.timer")
    removed = units.remove_units(name, folder)
    for path in removed:
        print(f"removed {path}")
    if not removed:
        print(f"no units of profile {name} in {folder}")
    if reachable:
        units.systemctl("daemon-reload")
    else:
        print("no systemd user instance is reachable: remove the job's line from your crontab if you added one")


def _restique_command() -> list:
    """How a timer starts this restique: the installed script beside this Python, else
    this Python with -m restique."""
    script = os.path.join(os.path.dirname(sys.executable), "restique")
    if os.access(script, os.X_OK):
        return [script]
    return [sys.executable, "-m", "restique"]
