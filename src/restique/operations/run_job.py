"""A scheduled job in one call: back up, forget by the keep policy (and prune when snapshots
were removed and prune is asked for), then check. Each step takes the lock it needs (shared
for backup, exclusive for the others) and releases it; a step that fails stops the job,
a backup that could not read some files (exit code 3) does not.

The library never prints: run_job returns a JobReport with each step's exit code, duration
and one-line message; on_step(StepResult) hears about each step as it ends."""
import time
from dataclasses import dataclass, field
from typing import Callable, List, Optional

from ..errors import RestiqueError
from .backup import BackupRequest, existing_targets, run_backup
from .archiver import BackupProgress
from .check import CheckOptions, CheckReport, check
from .forget import ForgetOptions, forget
from .prune import PruneOptions, prune

# The job's exit code is its worst step's: any failure beats an incomplete backup (3), which
# beats success; among failures the first one's code is kept.
INCOMPLETE = 3


@dataclass
class JobOptions:
    """Each step's options; None skips that step. prune runs only after forget removed
    snapshots. retry_lock: seconds to wait for a lock another process holds."""
    backup: Optional[BackupRequest] = None
    forget: Optional[ForgetOptions] = None
    prune: Optional[PruneOptions] = None
    check: Optional[CheckOptions] = None
    retry_lock: float = 0.0


@dataclass
class StepResult:
    """step: backup, forget, prune, check (or a hook's name, added by the caller); details:
    step-specific figures for the JSON report."""
    step: str
    exit_code: int
    duration: float
    message: str
    details: dict = field(default_factory=dict)

    def to_json(self) -> dict:
        return {"step": self.step, "exit_code": self.exit_code, "success": self.exit_code == 0,
                "duration": round(self.duration, 3), "message": self.message, **self.details}


@dataclass
class JobReport:
    steps: List[StepResult] = field(default_factory=list)
    snapshot_id: Optional[str] = None

    @property
    def exit_code(self) -> int:
        return worst_exit_code(step.exit_code for step in self.steps)

    @property
    def failed_step(self) -> Optional[StepResult]:
        return next((s for s in self.steps if s.exit_code not in (0, INCOMPLETE)), None) or \
            next((s for s in self.steps if s.exit_code != 0), None)


def worst_exit_code(codes) -> int:
    worst = 0
    for code in codes:
        if _severity(code) > _severity(worst):
            worst = code
    return worst


def _severity(code: int) -> int:
    return 0 if code == 0 else 1 if code == INCOMPLETE else 2


def run_job(open_repository: Callable[[str], object], options: JobOptions,
            warn: Callable[[str], None] = lambda message: None,
            on_step: Optional[Callable[[StepResult], None]] = None) -> JobReport:
    """Run the steps; open_repository(step) returns the repository opened for the step
    named, not locked (called for the first step and again for check; a failure to open is
    the step "open"). warn receives per-file backup errors, forget's
    warnings and check's findings."""
    report = JobReport()
    steps = [("backup", options.backup, False, _backup), ("forget", options.forget, True, _forget),
             ("check", options.check, True, _check)]
    repo = None
    try:
        for name, step_options, exclusive, run in steps:
            if step_options is None:
                continue
            if name == "check" and repo is not None:
                repo.close()  # check reads the repository afresh, not this process's index of it
                repo = None
            if repo is None:
                repo, results = _open(open_repository, name)
            if repo is not None:
                results = _locked_step(repo, name, exclusive, options,
                                       lambda: run(repo, step_options, options, warn, report))
            for result in results:
                report.steps.append(result)
                if on_step:
                    on_step(result)
            if any(r.exit_code not in (0, INCOMPLETE) for r in results):
                break
    finally:
        if repo is not None:
            repo.close()
    return report


def _open(open_repository, step: str):
    """(the repository, []) or (None, [the failed "open" step])."""
    started = time.monotonic()
    try:
        return open_repository(step), []
    except RestiqueError as exc:
        return None, [StepResult("open", exc.exit_code, time.monotonic() - started, _one_line(exc))]


def _locked_step(repo, name: str, exclusive: bool, options: JobOptions, run) -> List[StepResult]:
    started = time.monotonic()
    try:
        repo.lock(exclusive=exclusive, retry_seconds=options.retry_lock)
        try:
            return run()
        finally:
            repo.unlock()
    except RestiqueError as exc:
        return [StepResult(name, exc.exit_code, time.monotonic() - started, _one_line(exc))]
    except OSError as exc:
        where = f": {exc.filename}" if exc.filename else ""
        return [StepResult(name, 1, time.monotonic() - started, f"{exc.strerror or exc}{where}")]


def _one_line(exc: Exception) -> str:
    return " ".join(str(exc).split())


class _CollectingProgress(BackupProgress):
    """Passes each unreadable file to warn, as backup prints them."""

    def __init__(self, warn):
        super().__init__()
        self.warn = warn

    def error(self, path: str, message: str, during: str = "archival") -> None:
        super().error(path, message, during)
        self.warn(f"error: {message}")


def _backup(repo, request: BackupRequest, options: JobOptions, warn, report: JobReport) -> List[StepResult]:
    started = time.monotonic()
    if request.stdin is None:
        request.paths = existing_targets(request.paths, warn)
    outcome = run_backup(repo, request, _CollectingProgress(warn))
    stats = outcome.progress.stats
    report.snapshot_id = outcome.snapshot_id
    details = {"snapshot_id": outcome.snapshot_id, "files_new": stats.files.new,
               "files_changed": stats.files.changed, "files_unmodified": stats.files.unmodified,
               "data_added": stats.data_added, "errors": stats.errors}
    if outcome.skipped:
        message = "nothing changed, no snapshot saved"
    elif outcome.snapshot_id:
        message = (f"snapshot {outcome.snapshot_id[:8]} saved ({stats.files.new} new, {stats.files.changed} "
                   f"changed, {stats.files.unmodified} unmodified files)")
    else:
        message = "dry run, no snapshot saved"
    code = 0
    if stats.errors:
        code = INCOMPLETE
        message += f"; {stats.errors} source files could not be read"
    return [StepResult("backup", code, time.monotonic() - started, message, details)]


def _forget(repo, forget_options: ForgetOptions, options: JobOptions, warn, report) -> List[StepResult]:
    started = time.monotonic()
    result = forget(repo, forget_options, warn=warn)
    done = "would remove" if result.dry_run else "removed"
    steps = [StepResult("forget", 0, time.monotonic() - started,
                        f"{done} {len(result.remove_ids)} snapshots, kept "
                        f"{sum(len(g.keep) for g in result.groups)}",
                        {"removed": result.removed, "remove": result.remove_ids})]
    if options.prune is not None and result.remove_ids:
        started = time.monotonic()
        options.prune.dry_run = forget_options.dry_run
        try:
            plan = prune(repo, options.prune, ignore_snapshots=result.remove_ids)
        except RestiqueError as exc:
            return steps + [StepResult("prune", exc.exit_code, time.monotonic() - started, _one_line(exc))]
        removed = len(plan.remove) + len(plan.repack) + len(plan.remove_first)
        steps.append(StepResult("prune", 0, time.monotonic() - started,
                                f"{removed} packs removed or repacked", {"statistics": plan.stats.to_json()}))
    return steps


class _FirstProblem(CheckReport):
    """Passes each error check finds to warn, and keeps the first for the step's message."""

    def __init__(self, warn):
        self.warn = warn
        self.first = ""

    def problem(self, problem) -> None:
        if problem.is_error:
            self.first = self.first or " ".join(problem.message.split())
            self.warn(problem.message)


def _check(repo, check_options: CheckOptions, options: JobOptions, warn, report) -> List[StepResult]:
    started = time.monotonic()
    found = _FirstProblem(warn)
    summary = check(repo, check_options, found)
    read = f", {summary.packs_read} packs read" if summary.packs_read else ""
    if summary.errors_found:
        return [StepResult("check", 1, time.monotonic() - started,
                           f"repository contains errors ({max(1, summary.num_errors)} found{read}): {found.first}",
                           {"summary": summary.to_json()})]
    return [StepResult("check", 0, time.monotonic() - started, f"no errors were found{read}",
                       {"summary": summary.to_json()})]
