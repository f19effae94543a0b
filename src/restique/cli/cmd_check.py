"""restique check: find damage in a repository, in restic 0.14's text layout with current
restic's messages for each kind of damage and its --json lines (errors on stderr, a summary
on stdout)."""
import os
import shutil
import sys
import tempfile

import click

from .options import snapshot_filter_options

_GUIDE = "https://restic.readthedocs.io/en/stable/077_troubleshooting.html"
_ISSUES = "https://github.com/restic/restic/issues/new/choose"


def _from_profile(name: str) -> bool:
    """Whether a flag's value came from a profile (click's default map), not the command line."""
    from click.core import ParameterSource

    return click.get_current_context().get_parameter_source(name) is ParameterSource.DEFAULT_MAP


@click.command("check")
@click.argument("snapshot_ids", nargs=-1)
@click.option("--read-data", is_flag=True, help="read all data blobs")
@click.option("--read-data-subset", metavar="subset",
              help="read a subset of data packs, specified as 'n/t' for specific part, or either 'x%' or "
                   "'x.y%' or a size in bytes with suffixes k/K, m/M, g/G, t/T for a random subset")
@click.option("--check-unused", is_flag=True, hidden=True)
@click.option("--with-cache", is_flag=True, help="use existing cache, only read uncached data from repository")
@snapshot_filter_options()
@click.pass_obj
def check(opts, snapshot_ids, read_data, read_data_subset, check_unused, with_cache, snapshot_filter):
    """Check the repository for errors.

    The "check" command tests the repository for errors and reports any errors it finds.

    By default, check verifies the structural consistency and integrity of snapshots, trees
    and pack files. To also verify the integrity of the actual backed-up data, use the
    --read-data or --read-data-subset flags.

    By default, check creates a new temporary cache directory to verify data. To reuse the
    existing cache, use the --with-cache flag.

    Exit status is 0 if the command was successful, 1 if there was any error, 10 if the
    repository does not exist, 11 if it is already locked, 12 if the password is incorrect.
    """
    from ..errors import RestiqueError
    from ..operations.check import CheckOptions, check as run_check

    if read_data and read_data_subset:  # the command line's choice beats a profile's other one
        if _from_profile("read_data_subset"):
            read_data_subset = None
        elif _from_profile("read_data"):
            read_data = False
    options = CheckOptions(read_data=read_data, read_data_subset=read_data_subset,
                           snapshot_ids=snapshot_ids, filter=snapshot_filter.filter())
    options.validate()  # before anything is opened, as restic does
    if check_unused:
        print("Flag --check-unused has been deprecated, `--check-unused` is deprecated and will be ignored",
              file=sys.stderr)
    printer = _Printer(opts)
    cache_dir = _temporary_cache(opts, with_cache, printer)
    try:
        if not opts.no_lock:
            printer.out("create exclusive lock for repository")
        repo = opts.open_unlocked() if opts.no_lock else opts.open_exclusively()
        summary = run_check(repo, options, _TextReport(printer))
        _print_ending(printer, summary)
        if opts.json:
            if summary.errors_found and summary.num_errors == 0:
                summary.num_errors = 1
            printer.json_summary(summary)
        if summary.errors_found:
            raise RestiqueError("repository contains errors")
        printer.out("no errors were found")
    finally:
        if cache_dir:
            shutil.rmtree(cache_dir, ignore_errors=True)


def _temporary_cache(opts, with_cache: bool, printer) -> str:
    """restic checks with a fresh cache in a temporary folder (under --cache-dir when given)
    and says so. restique's check reads everything from the repository instead (its cache is
    off unless --with-cache), so the folder stays empty; it is made and removed all the same
    so that the message is true."""
    if with_cache or opts.no_cache:
        return ""
    parent = opts.cache_dir or None
    try:
        if parent:
            os.makedirs(parent, exist_ok=True)
        path = tempfile.mkdtemp(prefix="restic-check-cache-", dir=parent)
    except OSError as exc:
        printer.err(f"unable to create temporary directory for cache during check, disabling cache: {exc}\n")
        return ""
    printer.out(f"using temporary cache in {path}")
    return path


class _Printer:
    """restic's printer levels: out (normal), always (shown even with -q), verbose, err;
    with --json only errors are printed, as JSON lines on stderr."""

    def __init__(self, opts):
        self.json = opts.json
        self.level = 0 if opts.quiet else 1 + opts.verbose

    def _write(self, text: str, stream) -> None:
        from .output import write_text

        write_text(text if text.endswith("\n") else text + "\n", stream)

    def out(self, text: str) -> None:
        if not self.json and self.level >= 1:
            self._write(text, sys.stdout)

    def always(self, text: str) -> None:
        if not self.json:
            self._write(text, sys.stdout)

    def verbose(self, text: str) -> None:
        if not self.json and self.level >= 2:
            self._write(text, sys.stdout)

    def err(self, text: str) -> None:
        if self.json:
            from .output import write_text
            from ..model import gojson

            write_text(gojson.dumps({"message_type": "error", "message": text}) + "\n", sys.stderr)
        else:
            self._write(text, sys.stderr)

    def json_summary(self, summary) -> None:
        from .output import write_text
        from ..model import gojson

        write_text(gojson.dumps(summary.to_json()) + "\n")


class _TextReport:
    """Prints each stage and finding as restic does, and the notes that close a stage."""

    def __init__(self, printer: _Printer):
        self.p = printer
        self.duplicate_packs = self.mixed_packs = False
        self.orphaned = 0
        self.errors = False

    def stage(self, name: str, **info) -> None:
        if name == "load_indexes":
            self.p.out("load indexes")
        elif name == "packs":
            if self.duplicate_packs:
                self.p.always("Duplicate packs are non-critical, you can run `restic repair index' to correct this.")
            if self.mixed_packs:
                self.p.always("Mixed packs with tree and data blobs are non-critical, you can run `restic prune` "
                              "to correct this.")
            self.p.out("check all packs")
        elif name == "structure":
            if self.orphaned and not self.errors:  # hidden when the repository is damaged
                self.p.out(f"{self.orphaned} additional files were found in the repo, which likely contain "
                           "duplicate data.\nThis is non-critical, you can run `restic prune` to correct this.")
            self.p.out("check snapshots, trees and blobs")
        elif name == "read_data":
            self.p.out(_read_data_title(info))

    def problem(self, problem) -> None:
        kind = problem.kind
        self.errors = self.errors or problem.is_error
        if kind == "duplicate_pack":
            self.duplicate_packs = True
            self.p.always(problem.message)
        elif kind == "mixed_pack":
            self.mixed_packs = True
            self.p.always(problem.message)
        elif kind == "pack_orphaned":
            self.orphaned += 1
            self.p.verbose(problem.message)
        elif kind == "index_damaged":
            self.p.err(f"error: {problem.message}\n")
        elif kind == "tree":
            self.p.err(problem.message + "\n")
            for detail in problem.details:
                self.p.err(f"  {detail}\n")
        else:
            self.p.err(problem.message)

    def progress(self, unit: str, done: int, total: int, elapsed: float, finished: bool = False) -> None:
        from .fmt import format_duration

        if not finished:
            return
        if total:
            line = "[%s] %.2f%%  %d / %d %s" % (format_duration(elapsed), done / total * 100, done, total, unit)
        else:
            line = "[%s] %10d %s" % (format_duration(elapsed), done, unit)
        self.p.out(line + "\n\n")


def _read_data_title(info: dict) -> str:
    kind = "filtered " if info.get("filtered") else ""
    subset = info.get("subset")
    if subset == "group":
        return (f"read group #{info['group']} of {info['selected']} {kind}data packs "
                f"(out of total {info['total']} packs in {info['groups']} groups)")
    if subset == "percent":
        return "read %.1f%% of %spackfiles" % (info["percent"], kind)
    if subset == "size":
        return "read %d bytes (%.1f%%) of %sdata packs" % (info["subset_size"], info["percent"], kind)
    return f"read all {kind}data"


def _print_ending(p: _Printer, summary) -> None:
    """The closing advice restic prints for each kind of damage."""
    if summary.index_damaged:
        p.err("\nThe repository index is damaged and must be repaired. You must run `restic repair index' "
              "to correct this.\n\n")
        return
    if summary.broken_packs:
        p.err("\nThe repository contains damaged pack files. These damaged files must be removed to repair "
              "the repository. This can be done using the following commands. Please read the "
              f"troubleshooting guide at {_GUIDE} first.\n\n")
        p.err(f"restic repair packs {' '.join(summary.broken_packs)}\nrestic repair snapshots --forget\n\n")
        p.err("Damaged pack files can be caused by backend problems, hardware problems or bugs in restic. "
              f"Please open an issue at {_ISSUES} for further troubleshooting!\n")
    if summary.broken_snapshots:
        p.err("\nThe repository contains damaged snapshot files. These damaged files must be removed to "
              "repair the repository. This can be done using the following commands. Please read the "
              f"troubleshooting guide at {_GUIDE} first.\n\n")
        p.err(f"restic repair snapshots --forget {' '.join(summary.broken_snapshots)}\n\n")
        p.err("Damaged snapshot files can be caused by backend problems, hardware problems or bugs in "
              f"restic. Please open an issue at {_ISSUES} for further troubleshooting!\n")
    if summary.errors_found and not summary.broken_packs and not summary.broken_snapshots:
        p.err(f"\nThe repository is damaged and must be repaired. Please follow the troubleshooting guide at "
              f"{_GUIDE} .\n\n")
