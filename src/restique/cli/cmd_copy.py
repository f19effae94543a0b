"""restique copy: copy snapshots from another repository (--from-repo) into this one, with
restic 0.14's messages. copy has no JSON output: --json is ignored, as restic ignores it."""
import sys
import time

import click

from .options import from_repo_options, snapshot_filter_options

HELP = """Copy snapshots from one repository to another.

The "copy" command copies one or more snapshots from one repository to another.

NOTE: This process will have to both download (read) and upload (write) the entire
snapshot(s) due to the different encryption keys used in the source and destination
repositories. This may incur higher bandwidth usage and costs than expected during
normal backup runs.

NOTE: The copying process does not re-chunk files, which may break deduplication between
the files copied and files already stored in the destination repository. This can be
mitigated by the "--copy-chunker-params" option when initializing a new destination
repository using the "init" command.

Exit status is 0 if the command was successful, 1 if there was any error, 10 if the
repository does not exist, 11 if it is already locked, 12 if the password is incorrect.
"""


def _warn(message: str) -> None:
    print(message, file=sys.stderr)


class PackProgress:
    """restic 0.14's `[m:ss] 100.00%  N / M packs copied` counter: redrawn on a terminal,
    printed once when done otherwise."""

    def __init__(self):
        self.live = sys.stdout.isatty()
        self.restart()

    def restart(self) -> None:
        self.started = time.monotonic()
        self.done = self.total = 0

    def line(self) -> str:
        from .fmt import progress_counter_line

        return progress_counter_line(time.monotonic() - self.started, self.done, self.total, "packs copied")

    def update(self, done: int, total: int) -> None:
        self.done, self.total = done, total
        if self.live:
            print("\r\x1b[K" + self.line(), end="", flush=True)

    def finish(self) -> None:
        print(("\r\x1b[K" if self.live else "") + self.line() + "\n")


@click.command("copy", help=HELP)
@from_repo_options("to copy snapshots from")
@snapshot_filter_options()
@click.argument("snapshot_ids", nargs=-1)
@click.pass_obj
def copy(opts, source, snapshot_filter, snapshot_ids):
    from ..operations.copy import CopyOptions, CopyStarted, SnapshotCopied, SnapshotSkipped, copy_snapshots

    source.check()
    src = opts.secondary(source).open_for_reading()
    dst = opts.open_for_appending()
    show = not opts.quiet
    say = print if show else (lambda *args, **kw: None)
    progress = PackProgress()
    options = CopyOptions(snapshot_ids=list(snapshot_ids), filter=snapshot_filter.filter(), warn=_warn,
                          on_pack=progress.update if show else None)
    for event in copy_snapshots(src, dst, options):
        sn = event.source
        if isinstance(event, CopyStarted):
            say(f"\nsnapshot {sn.short_id} of [{' '.join(sn.paths or [])}] at {sn.time.go_string()})")
            say("  copy started, this may take a while...")
            progress.restart()
        elif isinstance(event, SnapshotSkipped):
            say(f"\nsnapshot {sn.short_id} of [{' '.join(sn.paths or [])}] at {sn.time.go_string()})")
            say(f"skipping source snapshot {sn.short_id}, was already copied to snapshot {event.existing.short_id}")
        elif isinstance(event, SnapshotCopied):
            if show:
                progress.finish()
            say(f"snapshot {event.new_id[:8]} saved")
