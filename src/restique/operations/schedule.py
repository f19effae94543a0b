"""Running a profile's job on a schedule: a systemd user timer and service
(restique-NAME.timer, restique-NAME.service), or a crontab line where no user systemd
answers. The library builds the texts and writes or removes the files; the caller decides
whether to talk to systemctl (has_user_systemd, systemctl)."""
import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from typing import List, Optional, Sequence

from ..errors import UsageError

_TIME = re.compile(r"([01]?[0-9]|2[0-3]):([0-5][0-9])")
_UNIT_NAME = re.compile(r"[A-Za-z0-9_.:-]+")
_WEEKDAY = {"weekly": "Mon"}


@dataclass
class Schedule:
    """every: hourly, daily, weekly, or a systemd OnCalendar expression; at: HH:MM (for
    hourly only the minutes count), not with an expression."""
    every: str
    at: Optional[str] = None

    def _hour_minute(self):
        found = _TIME.fullmatch(self.at or "00:00")
        if not found:
            raise UsageError(f'--at takes a time as HH:MM, not "{self.at}"')
        return int(found.group(1)), int(found.group(2))

    def on_calendar(self) -> str:
        if self.every not in ("hourly", "daily", "weekly"):
            if self.at:
                raise UsageError("--at goes with --every hourly, daily or weekly, not with a calendar expression")
            if not self.every.strip() or "\n" in self.every:
                raise UsageError("--every needs hourly, daily, weekly or a systemd calendar expression")
            return self.every
        hour, minute = self._hour_minute()
        if self.every == "hourly":
            return f"*-*-* *:{minute:02d}:00"
        return f"{_WEEKDAY.get(self.every, '')} *-*-* {hour:02d}:{minute:02d}:00".strip()

    def crontab_fields(self) -> Optional[str]:
        """The five time fields of a crontab line, None for a calendar expression."""
        if self.every not in ("hourly", "daily", "weekly"):
            return None
        hour, minute = self._hour_minute()
        return {"hourly": f"{minute} * * * *", "daily": f"{minute} {hour} * * *",
                "weekly": f"{minute} {hour} * * 1"}[self.every]


@dataclass
class ScheduledJob:
    """profile: its name; command: the program and arguments that run it (absolute paths)."""
    profile: str
    command: Sequence[str]
    schedule: Schedule

    @property
    def unit(self) -> str:
        return unit_name(self.profile)

    def service_text(self) -> str:
        return (f"[Unit]\nDescription=restique job of profile {self.profile}\n"
                "Wants=network-online.target\nAfter=network-online.target\n\n"
                # a backup yields to interactive work
                f"[Service]\nType=oneshot\nNice=10\nIOSchedulingClass=idle\n"
                f"ExecStart={_exec_line(self.command)}\n")

    def timer_text(self) -> str:
        return (f"[Unit]\nDescription=restique job of profile {self.profile}, on schedule\n\n"
                f"[Timer]\nOnCalendar={self.schedule.on_calendar()}\nPersistent=true\n"
                f"Unit={self.unit}.service\n\n[Install]\nWantedBy=timers.target\n")

    def crontab_line(self) -> Optional[str]:
        fields = self.schedule.crontab_fields()
        return None if fields is None else f"{fields} {' '.join(_shell_quote(a) for a in self.command)}"


def unit_name(profile: str) -> str:
    """restique-NAME, the name of both units."""
    if not _UNIT_NAME.fullmatch(profile):
        raise UsageError(f'profile name "{profile}" cannot be part of a unit name: use letters, digits and _.:- only')
    return f"restique-{profile}"


def _exec_line(args: Sequence[str]) -> str:
    """systemd's quoting: double quotes around words with spaces, % doubled."""
    def word(arg: str) -> str:
        arg = arg.replace("%", "%%")
        if re.fullmatch(r"[A-Za-z0-9_@%+=:,./-]+", arg):
            return arg
        return '"' + arg.replace("\\", "\\\\").replace('"', '\\"') + '"'

    return " ".join(word(a) for a in args)


def _shell_quote(arg: str) -> str:
    import shlex

    return shlex.quote(arg).replace("%", "\\%")  # cron turns a bare % into a newline


def unit_folder() -> str:
    """$XDG_CONFIG_HOME/systemd/user (~/.config/systemd/user)."""
    base = os.environ.get("XDG_CONFIG_HOME") or os.path.join(os.path.expanduser("~"), ".config")
    return os.path.join(base, "systemd", "user")


def write_units(job: ScheduledJob, folder: str) -> List[str]:
    """Write the service and the timer (the timer last, so it never names a missing
    service); returns their paths."""
    os.makedirs(folder, exist_ok=True)
    texts = [(f"{job.unit}.service", job.service_text()), (f"{job.unit}.timer", job.timer_text())]
    paths = []
    for name, text in texts:
        path = os.path.join(folder, name)
        temporary = path + ".tmp"
        with open(temporary, "w") as f:
            f.write(text)
        os.replace(temporary, path)
        paths.append(path)
    return paths


def remove_units(profile: str, folder: str) -> List[str]:
    """Delete the profile's unit files; returns those that existed."""
    removed = []
    for suffix in (".timer", ".service"):
        path = os.path.join(folder, unit_name(profile) + suffix)
        if os.path.exists(path):
            os.remove(path)
            removed.append(path)
    return removed


def has_user_systemd() -> bool:
    """Whether a systemd user instance answers (not in containers, cron-only machines, or
    sessions without a user bus)."""
    if not shutil.which("systemctl"):
        return False
    try:
        proc = subprocess.run(["systemctl", "--user", "show-environment"], stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return proc.returncode == 0


def systemctl(*args: str) -> None:
    """`systemctl --user ARGS`; UsageError with its message when it fails."""
    proc = subprocess.run(["systemctl", "--user", *args], capture_output=True, text=True, stdin=subprocess.DEVNULL)
    if proc.returncode != 0:
        detail = " ".join(proc.stderr.split()) or f"exit status {proc.returncode}"
        raise UsageError(f"systemctl --user {' '.join(args)} failed: {detail}")
