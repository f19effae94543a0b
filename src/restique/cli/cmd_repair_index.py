"""restique repair index (and its old name rebuild-index): build a new index from the packs."""
import sys
import time

import click

from ..operations.repair_index import Counter, MaintenanceReport

HELP = """Build a new index.

The "repair index" command creates a new index based on the pack files in the
repository.

EXIT STATUS
===========

Exit status is 0 if the command was successful.
Exit status is 1 if there was any error.
Exit status is 10 if the repository does not exist.
Exit status is 11 if the repository is already locked.
Exit status is 12 if the password is incorrect.
"""


class _PrintedCounter(Counter):
    """Prints the counter's final state as restic does when stdout is not a terminal."""

    def __init__(self, unit: str, total, shown: bool):
        self.unit, self.total, self.shown = unit, total, shown
        self.count = 0
        self.started = time.monotonic()

    def add(self, n: int = 1) -> None:
        self.count += n

    def done(self) -> None:
        from .fmt import progress_counter_line

        if self.shown:
            line = progress_counter_line(time.monotonic() - self.started, self.count, self.total or 0, self.unit)
            print(line + "\n", flush=True)
            self.shown = False  # a counter is finished once


class TextReport(MaintenanceReport):
    """restic's levels: messages unless -q, details with -v, warnings always (stderr)."""

    def __init__(self, opts):
        self.quiet = opts.quiet
        self.verbose = opts.verbose

    def message(self, text: str) -> None:
        if not self.quiet:
            print(text, flush=True)

    def detail(self, text: str) -> None:
        if self.verbose >= 1 and not self.quiet:
            print(text, flush=True)

    def warning(self, text: str) -> None:
        sys.stdout.flush()
        print(text, file=sys.stderr, flush=True)

    def counter(self, unit: str, total) -> Counter:
        return _PrintedCounter(unit, total, not self.quiet)


def run_repair_index(opts, read_all_packs: bool) -> None:
    from ..operations.repair_index import RepairIndexOptions, repair_index

    repo = opts.open_exclusively()
    report = TextReport(opts)
    repair_index(repo, RepairIndexOptions(read_all_packs=read_all_packs), report)
    report.message("done")


_read_all_packs = click.option("--read-all-packs", is_flag=True,
                               help="read all pack files to generate new index from scratch")


@click.command("index", help=HELP, short_help="Build a new index")
@_read_all_packs
@click.pass_obj
def index(opts, read_all_packs):
    run_repair_index(opts, read_all_packs)


@click.command("rebuild-index", help=HELP, short_help="Build a new index")
@_read_all_packs
@click.pass_obj
def rebuild_index(opts, read_all_packs):
    # current restic keeps the old name working and says so on stderr
    print('Command "rebuild-index" is deprecated, Use "repair index" instead', file=sys.stderr)
    run_repair_index(opts, read_all_packs)
