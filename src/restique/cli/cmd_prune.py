"""restique prune: remove the data no snapshot uses. Text as restic 0.14 prints it; --json
prints current restic's summary object (0.14 ignored --json).

`prune_flags` and `run_prune` are shared with `forget --prune`."""
import functools
import sys
import time

import click

from ..operations.prune.report import Counter, PruneReport


def prune_flags(fn):
    """The prune flags forget --prune shares (restic's AddLimitedFlags); the command gets
    them as one keyword argument `prune_options`, a PruneOptions."""
    flags = [
        click.option("--max-unused", default="5%", metavar="limit",
                     help="tolerate given limit of unused data (absolute value in bytes with suffixes k/K, "
                          "m/M, g/G, t/T, a value in % or the word 'unlimited')"),
        click.option("--max-repack-size", default=None, metavar="size",
                     help="stop after repacking this much data in total (allowed suffixes: k/K, m/M, g/G, t/T)"),
        click.option("--repack-cacheable-only", is_flag=True, help="only repack packs which are cacheable"),
        click.option("--repack-small", is_flag=True, help="repack pack files below 80% of target pack size"),
        click.option("--repack-uncompressed", is_flag=True, help="repack all uncompressed data"),
        click.option("--repack-smaller-than", default=None, metavar="below-limit",
                     help="pack below-limit packfiles (allowed suffixes: k/K, m/M, g/G, t/T)"),
    ]

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        from ..operations.prune import PruneOptions

        kwargs["prune_options"] = PruneOptions(
            max_unused=kwargs.pop("max_unused"), max_repack_size=kwargs.pop("max_repack_size"),
            repack_cacheable_only=kwargs.pop("repack_cacheable_only"), repack_small=kwargs.pop("repack_small"),
            repack_uncompressed=kwargs.pop("repack_uncompressed"),
            repack_smaller_than=kwargs.pop("repack_smaller_than"))
        return fn(*args, **kwargs)

    for flag in reversed(flags):
        wrapper = flag(wrapper)
    return wrapper


@click.command("prune")
@click.option("-n", "--dry-run", is_flag=True, help="do not modify the repository, just print what would be done")
@click.option("--unsafe-recover-no-free-space", default="", metavar="string", hidden=True)
@prune_flags
@click.pass_obj
def prune(opts, dry_run, unsafe_recover_no_free_space, prune_options):
    """Remove unneeded data from the repository.

    The "prune" command checks the repository and removes data that is not
    referenced and therefore not needed any more.

    \b
    EXIT STATUS
    ===========
    Exit status is 0 if the command was successful.
    Exit status is 1 if there was any error.
    Exit status is 10 if the repository does not exist.
    Exit status is 11 if the repository is already locked.
    Exit status is 12 if the password is incorrect.
    """
    from ..errors import UsageError

    prune_options.dry_run = dry_run
    prune_options.validate()
    if unsafe_recover_no_free_space:
        raise UsageError("--unsafe-recover-no-free-space is not supported; try 'prune --max-repack-size 0'")
    if prune_options.repack_uncompressed and opts.compression == "off":
        raise UsageError("disabled compression and `--repack-uncompressed` are mutually exclusive")
    if opts.no_lock and not dry_run:
        raise UsageError("--no-lock is only applicable in combination with --dry-run for prune command")
    repo = opts.open_exclusively(dry_run)
    run_prune(opts, repo, prune_options)


def run_prune(opts, repo, prune_options, ignore_snapshots=()) -> None:
    """Plan, print the statistics, carry out (unless a dry run): what `prune` and
    `forget --prune` print. The caller opened repo with the exclusive lock."""
    from ..model import gojson
    from ..operations.prune import execute_plan, plan_prune

    report = TextReport(opts)
    plan = plan_prune(repo, prune_options, report, ignore_snapshots)
    if opts.json:
        sys.stdout.write(gojson.dumps(plan.stats.to_json()) + "\n")
    else:
        _write(stats_text(plan.stats, report.verbosity))
        if prune_options.dry_run and report.verbosity >= 2:
            _write(dry_run_text(plan))
    execute_plan(repo, plan, report)


def _write(text: str) -> None:
    sys.stdout.write(text)
    sys.stdout.flush()


def stats_text(stats, verbosity: int) -> str:
    """restic 0.14's statistics block (the first part and the pack counts only with -v)."""
    from .fmt import format_bytes as size

    b, s, p = stats.blobs, stats.bytes, stats.packs
    out = []
    if verbosity >= 2:
        out.append("\nused:         %10d blobs / %s\n" % (b.used, size(s.used)))
        if b.duplicate:
            out.append("duplicates:   %10d blobs / %s\n" % (b.duplicate, size(s.duplicate)))
        out.append("unused:       %10d blobs / %s\n" % (b.unused, size(s.unused)))
        if s.unreferenced:
            out.append("unreferenced:                    %s\n" % size(s.unreferenced))
        out.append("total:        %10d blobs / %s\n" % (b.total, size(s.total)))
        out.append("unused size: %s of total size\n" % _percent(s.duplicate + s.unused, s.total))
    if verbosity >= 1:
        out.append("\nto repack:    %10d blobs / %s\n" % (b.repack, size(s.repack)))
        out.append("this removes: %10d blobs / %s\n" % (b.repack_remove, size(s.repack_remove)))
        out.append("to delete:    %10d blobs / %s\n" % (b.remove, size(s.remove + s.unreferenced)))
        out.append("total prune:  %10d blobs / %s\n" % (b.remove_total, size(s.remove_total)))
        out.append("remaining:    %10d blobs / %s\n" % (b.remaining, size(s.remaining)))
        out.append("unused size after prune: %s (%s of remaining size)\n"
                   % (size(s.remaining_unused), _percent(s.remaining_unused, s.remaining)))
        out.append("\n")
    if verbosity >= 2:
        out.append("totally used packs: %10d\n" % p.used)
        out.append("partly used packs:  %10d\n" % p.partly_used)
        out.append("unused packs:       %10d\n\n" % p.unused)
        out.append("to keep:      %10d packs\n" % p.keep)
        out.append("to repack:    %10d packs\n" % p.repack)
        out.append("to delete:    %10d packs\n" % p.remove)
        if p.unreferenced:
            out.append("to delete:    %10d unreferenced packs\n\n" % p.unreferenced)
    return "".join(out)


def dry_run_text(plan) -> str:
    """The pack lists restic 0.14 prints for `prune --dry-run -v`, as Go sets of short ids."""
    def id_set(ids) -> str:
        return "{" + " ".join(sorted(i[:8] for i in ids)) + "}"

    out = []
    if plan.remove_first:
        out.append("Would have removed the following unreferenced packs:\n%s\n\n" % id_set(plan.remove_first))
    out.append("Would have repacked and removed the following packs:\n%s\n\n" % id_set(plan.repack))
    out.append("Would have removed the following no longer used packs:\n%s\n\n" % id_set(plan.remove))
    return "".join(out)


def _percent(part: int, whole: int) -> str:
    """restic's formatPercent: empty for a zero whole, at most 100%."""
    if not whole:
        return ""
    return "%3.2f%%" % min(100.0, 100.0 * part / whole)


class TextReport(PruneReport):
    """Phases, progress and warnings printed as restic does at its verbosity: 0 with -q or
    --json, 1 by default, 2 with -v, 3 with -vv."""

    def __init__(self, opts):
        self.verbosity = 0 if opts.quiet or opts.json else 1 + opts.verbose
        self.terminal = sys.stdout.isatty()

    def message(self, text: str) -> None:
        if self.verbosity >= 1:
            _write(text + "\n")

    def detail(self, text: str) -> None:
        if self.verbosity >= 2:
            _write(text + "\n")

    def debug(self, text: str) -> None:
        if self.verbosity >= 3:
            _write(text + "\n")

    def warning(self, text: str) -> None:
        sys.stdout.flush()
        sys.stderr.write(text + "\n")
        sys.stderr.flush()

    def counter(self, description: str, total: int) -> Counter:
        if self.verbosity < 1:
            return Counter()
        return ProgressCounter(description, total, self.terminal)


class ProgressCounter(Counter):
    """restic's counter bar: `[0:03] 45.00%  9 / 20 snapshots`. On a terminal it is
    redrawn in place; otherwise only its final state is printed, followed by an empty line."""

    _REDRAW_SECONDS = 0.1

    def __init__(self, description: str, total: int, terminal: bool):
        self.description = description
        self.total = total
        self.value = 0
        self.terminal = terminal
        self.start = self._drawn = time.monotonic()

    def status(self) -> str:
        from .fmt import format_duration

        elapsed = format_duration(time.monotonic() - self.start)
        if not self.total:
            return "[%s]          %d %s" % (elapsed, self.value, self.description)
        return "[%s] %s  %d / %d %s" % (elapsed, _percent(self.value, self.total), self.value, self.total,
                                       self.description)

    def add(self, n: int = 1) -> None:
        self.value += n
        now = time.monotonic()
        if self.terminal and now - self._drawn >= self._REDRAW_SECONDS:
            self._drawn = now
            _write("\x1b[2K" + self.status() + "\r")

    def done(self) -> None:
        if self.terminal:
            _write("\x1b[2K" + self.status() + "\r\n")
        else:
            _write(self.status() + "\n\n")
