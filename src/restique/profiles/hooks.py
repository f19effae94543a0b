"""Commands run around a job: `before` (a failure stops the job), `after` (when every step
succeeded), `on-error` (when one failed). Each runs with `sh -c`; the job's state reaches it
in RESTIQUE_* environment variables."""
import os
import subprocess
import time
from dataclasses import dataclass
from typing import Dict, Optional, Sequence

HOOK_NAMES = ("before", "after", "on-error")


@dataclass
class HookResult:
    """The outcome of one hook's commands (they stop at the first that fails)."""
    name: str
    exit_code: int
    duration: float
    message: str


def hook_environment(profile: str, config: str, job: str, result: Optional[str] = None,
                     exit_code: Optional[int] = None, snapshot_id: Optional[str] = None,
                     error: Optional[str] = None) -> Dict[str, str]:
    """The variables a hook sees, on top of restique's own environment. RESTIQUE_RESULT,
    RESTIQUE_EXIT_CODE, RESTIQUE_SNAPSHOT_ID and RESTIQUE_ERROR only once the job ran
    (before hooks see the first three variables only)."""
    env = {"RESTIQUE_PROFILE": profile, "RESTIQUE_CONFIG": config, "RESTIQUE_JOB": job}
    if result is not None:
        env["RESTIQUE_RESULT"] = result
        env["RESTIQUE_EXIT_CODE"] = str(exit_code if exit_code is not None else "")
        env["RESTIQUE_SNAPSHOT_ID"] = snapshot_id or ""
        env["RESTIQUE_ERROR"] = error or ""
    return env


def run_hook(name: str, commands: Sequence[str], variables: Dict[str, str], stdout=None) -> Optional[HookResult]:
    """Run the hook's commands in order with `sh -c`; None when it has none. stdout: where
    their output goes (None: restique's own; the CLI passes stderr under --json). A command
    that exits non-zero or cannot start ends the hook with exit code 1 and a message naming
    its status."""
    if not commands:
        return None
    started = time.monotonic()
    env = {**os.environ, **variables}
    for command in commands:
        try:
            proc = subprocess.run(["sh", "-c", command], env=env, stdout=stdout, stdin=subprocess.DEVNULL)
        except OSError as exc:
            return HookResult(name, 1, time.monotonic() - started, f"{command!r} could not start: {exc.strerror}")
        if proc.returncode != 0:
            status = f"signal {-proc.returncode}" if proc.returncode < 0 else f"exit status {proc.returncode}"
            return HookResult(name, 1, time.monotonic() - started, f"{command!r} failed: {status}")
    return HookResult(name, 0, time.monotonic() - started, "ok")

