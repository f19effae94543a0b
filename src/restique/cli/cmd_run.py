"""restique run NAME: a profile's whole job (hooks, backup, forget and prune by its policy,
check), one line per step and a result line, or one JSON report; the exit status is the
worst step's (see docs/profiles.md)."""
import json
import sys
import time

import click

from ..errors import UsageError


@click.command("run")
@click.argument("name", required=False)
@click.pass_context
def run(ctx, name):
    """Run a profile's job: backup, forget (and prune), check, with its hooks.

    NAME is a profile of the profile file (--config, $RESTIQUE_CONFIG, else
    ~/.config/restique/profiles.toml); without it, the one given with --profile.
    Exit status is the worst step's: 0 when all succeeded, 3 when the backup could not
    read some files, 1 (10, 11, 12 ...) when a step failed.
    """
    from ..operations.run_job import JobReport, run_job
    from ..profiles import load_profile
    from .main import options_with_profile

    group = ctx.parent
    name = name or group.params.get("profile")
    if not name:
        raise UsageError("run needs a profile name: restique run NAME")
    profile = load_profile(name, group.params.get("config"))
    opts = options_with_profile(group, profile)
    ctx.call_on_close(opts.close)
    job = job_options(profile, opts)
    printer = _Printer(opts, profile.name)
    hooks = _Hooks(profile, opts.json)

    started = time.monotonic()
    report = JobReport()
    before = hooks.run("before")
    if before:
        printer.step(before)
        report.steps.append(before)
    if not before or before.exit_code == 0:
        job_report = run_job(_opener(opts, profile.get("check", "with-cache", False)), job,
                             warn=printer.warn, on_step=printer.step)
        report.steps += job_report.steps
        report.snapshot_id = job_report.snapshot_id
    ending = hooks.run("after" if report.exit_code == 0 else "on-error", report)
    if ending:
        printer.step(ending)
        report.steps.append(ending)
    printer.result(report, time.monotonic() - started)
    if report.exit_code:
        raise click.exceptions.Exit(report.exit_code)


def _opener(opts, check_with_cache: bool):
    """Opens the repository for run_job (twice: check starts afresh, and like `check`
    without the local cache unless with-cache is set); the password is resolved once, so a
    password command runs once."""
    def open_repository(step: str):
        if opts.literal_password is None:
            opts.literal_password = opts.password()
        if step == "check" and not check_with_cache:
            return opts.replace(no_cache=True).open_unlocked()
        return opts.open_unlocked()

    return open_repository


class _Hooks:
    def __init__(self, profile, json_output: bool):
        self.profile = profile
        self.stdout = sys.stderr if json_output else None  # keep stdout one JSON document

    def run(self, name: str, report=None):
        """The hook's StepResult, or None when the profile has no such hook."""
        from ..operations.run_job import StepResult
        from ..profiles.hooks import hook_environment, run_hook

        if report is None:
            variables = hook_environment(self.profile.name, self.profile.file, "run")
        else:
            failed = report.failed_step
            variables = hook_environment(self.profile.name, self.profile.file, "run",
                                         "success" if report.exit_code == 0 else "failure",
                                         report.exit_code, report.snapshot_id,
                                         f"{failed.step}: {failed.message}" if failed else None)
        if self.stdout is not None:
            sys.stdout.flush()
        result = run_hook(name, self.profile.section("hooks").get(name), variables, self.stdout)
        if result is None:
            return None
        return StepResult(f"{name}-hook", result.exit_code, result.duration, result.message)


def job_options(profile, opts):
    """The profile's steps as the library's options objects, built from the same flag values
    that `restique --profile NAME backup|forget|check` would take (profiles/schema.py), with
    the commands' own parsing."""
    from ..operations.check import CheckOptions
    from ..operations.run_job import JobOptions
    from ..profiles.flags import command_defaults

    flags = command_defaults(profile)
    forget_flags = flags.get("forget", {})
    job = JobOptions(backup=_backup_request(profile, flags.get("backup", {})), retry_lock=opts.retry_lock)
    job.forget = _forget_options(forget_flags)
    if job.forget is not None and forget_flags.get("prune"):
        job.prune = _prune_options(flags.get("prune", {}))
    if profile.get("check", "enabled", True):
        check_flags = flags.get("check", {})
        job.check = CheckOptions(read_data=check_flags.get("read_data", False),
                                 read_data_subset=check_flags.get("read_data_subset"))
        job.check.validate()
    return job


def _backup_request(profile, flags):
    from ..model.snapshot_group import GroupBy
    from ..operations.archiver import BackupOptions
    from ..operations.backup import BackupRequest
    from .cmd_backup import environment_flag, file_selector, read_files_from, split_tags
    from .options import PatternOptions

    paths = list(flags.get("paths", ())) + read_files_from(flags.get("files_from", ()), (), ())
    if not paths:
        raise UsageError(f"{profile.file}: profile {profile.name} has nothing to back up: "
                         "set backup.sources (or backup.files-from)")
    excludes = PatternOptions("exclude", *(flags.get(f"exclude_{kind}", ())
                                           for kind in ("patterns", "ipatterns", "files", "ifiles")))
    selector = file_selector(excludes, flags.get("exclude_caches", False), flags.get("exclude_if_present", ()),
                         flags.get("exclude_larger_than"))
    ignore_inode = flags.get("ignore_inode", False) or environment_flag("RESTIC_IGNORE_INODE")
    ignore_ctime = flags.get("ignore_ctime", False) or environment_flag("RESTIC_IGNORE_CTIME")
    return BackupRequest(
        paths=paths, tags=split_tags(flags.get("tag", ())), hostname=flags.get("host"),
        skip_if_unchanged=flags.get("skip_if_unchanged", False), excludes=list(excludes.patterns),
        group_by=GroupBy.parse(flags.get("group_by", "host,paths")),
        options=BackupOptions(read_concurrency=flags.get("read_concurrency") or 2,
                              with_atime=flags.get("with_atime", False),
                              ignore_ctime=ignore_ctime or ignore_inode,
                              ignore_inode=ignore_inode, reject=selector,
                              one_file_system=flags.get("one_file_system", False)))


def _forget_options(flags):
    """ForgetOptions when the profile has a keep policy, else None (no forget step)."""
    from ..model.snapshot_group import GroupBy
    from ..operations.forget import ForgetOptions
    from .cmd_forget import keep_policy_from_flags

    policy = keep_policy_from_flags(flags, flags.get("keep_tags", ()))
    if policy.empty():
        return None
    return ForgetOptions(policy=policy, group_by=GroupBy.parse(flags.get("group_by", "host,paths")))


def _prune_options(flags):
    from ..operations.prune import PruneOptions

    options = PruneOptions(**{name: flags[name] for name in
                              ("max_unused", "max_repack_size", "repack_cacheable_only", "repack_small",
                               "repack_uncompressed") if name in flags})
    options.validate()
    return options


class _Printer:
    def __init__(self, opts, name: str):
        self.opts = opts
        self.name = name

    def warn(self, message: str) -> None:
        print(message, file=sys.stderr, flush=True)

    def step(self, step) -> None:
        if self.opts.json or self.opts.quiet:
            return
        state = "" if step.exit_code == 0 else f"failed (exit {step.exit_code}): "
        print(f"{step.step}: {state}{step.message} ({step.duration:.1f}s)", flush=True)

    def result(self, report, duration: float) -> None:
        code = report.exit_code
        if self.opts.json:
            print(json.dumps({
                "message_type": "run_summary", "profile": self.name, "success": code == 0, "exit_code": code,
                "snapshot_id": report.snapshot_id, "duration": round(duration, 3),
                "steps": [step.to_json() for step in report.steps]}))
            return
        if code == 0:
            print(f"run {self.name}: success in {duration:.1f}s")
        else:
            failed = report.failed_step
            print(f"run {self.name}: failed at {failed.step} (exit {code}) in {duration:.1f}s")
