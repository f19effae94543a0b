"""restique restore: extract a snapshot (or one of its folders) into a directory."""
import sys
import threading
import time

import click

from .fmt import format_bytes, format_duration, format_go_duration
from .options import exclude_options, include_options, snapshot_filter_options
from .output import write_text
from .status_ticks import JSON_INTERVAL, TERMINAL_INTERVAL, StatusDisplay, status_interval


@click.command()
@click.argument("args", nargs=-1)
@click.option("-t", "--target", default="", help="directory to extract data to")
@exclude_options
@include_options
@snapshot_filter_options(single=True)
@click.option("--dry-run", is_flag=True, help="do not write any data, just show what would be done")
@click.option("--sparse", is_flag=True, help="restore files as sparse")
@click.option("--verify", is_flag=True, help="verify restored files content")
@click.option("--overwrite", default="always", metavar="behavior", help="overwrite behavior, one of (always|if-changed|if-newer|never) (default: always)")
@click.option("--delete", is_flag=True, help="delete files from target directory if they do not exist in snapshot. Use '--dry-run -vv' to check what would be deleted")
@click.option("--ownership-by-name", is_flag=True, help="restore file ownership by user name and group name (except POSIX ACLs)")
@click.option("--exclude-xattr", multiple=True, metavar="pattern", help="exclude xattr by pattern (can be specified multiple times)")
@click.option("--include-xattr", multiple=True, metavar="pattern", help="include xattr by pattern (can be specified multiple times)")
@click.pass_obj
def restore(opts, args, target, excludes, includes, snapshot_filter, dry_run, sparse, verify, overwrite,
            delete, ownership_by_name, exclude_xattr, include_xattr):
    """Extract the data from a snapshot.

    The special snapshotID "latest" can be used to restore the latest snapshot in the
    repository. To only restore a specific subfolder, use the "snapshotID:subfolder" syntax,
    where "subfolder" is a path within the snapshot tree as shown by "restique ls".

    Exit status is 0 if the command was successful, and 1 if there was any error.
    """
    from ..errors import RestiqueError, UsageError
    from ..operations.restorer import RestoreOptions, Restorer

    excludes = excludes.pattern_lists()
    includes = includes.pattern_lists()
    if not args:
        raise UsageError("no snapshot ID specified")
    if len(args) > 1:
        raise UsageError(f"more than one snapshot ID specified: [{' '.join(args)}]")
    options = RestoreOptions(target=target, includes=includes, excludes=excludes, overwrite=overwrite,
                             delete=delete, dry_run=dry_run, sparse=sparse, verify=verify,
                             ownership_by_name=ownership_by_name, xattr_includes=include_xattr,
                             xattr_excludes=exclude_xattr)
    options.validate()  # before opening the repository, as restic checks its flags first

    repo = opts.open_for_reading()
    snapshot, tree_id = _find_snapshot(repo, args[0], snapshot_filter.filter())

    printer = _JSONPrinter(opts) if opts.json else _TextPrinter(opts, sys.stdout.isatty())
    if not opts.json and not opts.quiet:
        write_text(f"restoring {snapshot} to {target}\n")
    restorer = Restorer(repo, tree_id, options, printer)
    printer.start_status()
    try:
        stats = restorer.restore()
    finally:
        printer.stop_status()
    printer.finish(stats, time.monotonic() - printer.started)
    if stats.errors:
        raise RestiqueError(f"There were {len(stats.errors)} errors\n")
    if verify:
        if not opts.json and not opts.quiet:
            write_text(f"verifying files in {target}\n")
        t1 = time.monotonic()
        count = restorer.verify()
        if stats.errors:
            raise RestiqueError(f"There were {len(stats.errors)} errors\n")
        if not opts.json and not opts.quiet:
            write_text(f"finished verifying {count} files in {target} (took {format_go_duration(time.monotonic() - t1)})\n")
    sys.stdout.flush()


def _find_snapshot(repo, spec, snapshot_filter):
    """(snapshot, tree id) for `ID[:subfolder]` or `latest[:subfolder]`. A name that matches
    no snapshot ends the command as in restic: `invalid id "X": <reason>`, without "Fatal: "."""
    from ..operations.snapshot_lookup import SnapshotNotFound, find_snapshot

    try:
        return find_snapshot(repo, spec, snapshot_filter)
    except SnapshotNotFound as exc:
        write_text(f'invalid id "{spec.partition(":")[0]}": {exc.reason}\n', sys.stderr)
        sys.exit(1)


_ACTIONS = {
    "dir restored": "restored", "file restored": "restored", "other restored": "restored",
    "file updated": "updated", "file unchanged": "unchanged", "deleted": "deleted",
}


class _StatusPrinter:
    """The restore's RestoreProgress, with restic's restore status: a StatusDisplay shows the
    counts every interval seconds (None: only on SIGUSR1) from when start_status() is called
    until stop_status(). (Not a subclass: `restore --help` need not load the restorer.)"""

    interval = None

    def __init__(self, opts):
        self.opts = opts
        self.started = time.monotonic()
        self.counts = None
        self._out_lock = threading.Lock()
        self._display = None

    def watch(self, counts):
        self.counts = counts

    def start_status(self):
        # interval None: shown only when SIGUSR1 asks (-q: never)
        if not self.opts.quiet and self.counts is not None:
            self._display = StatusDisplay(self.interval, self._show_counts)
            self._display.start()

    def stop_status(self):
        if self._display:
            self._display.stop()

    def _show_counts(self):
        # the counts first: the restore's threads hold their lock while they print
        self.show_status(self.counts(), time.monotonic() - self.started)

    def show_status(self, stats, elapsed):
        raise NotImplementedError


def _status_line(stats, elapsed):
    """restic's restore status line."""
    percent = ""
    if stats.bytes_total and not stats.planning:  # a percentage of growing totals could step back
        percent = "%3.2f%%" % min(100.0, 100.0 * stats.bytes_restored / stats.bytes_total)
    line = (f"[{format_duration(elapsed)}] {percent}  {stats.files_restored} files/dirs "
            f"{format_bytes(stats.bytes_restored)}, total {stats.files_total} files/dirs "
            f"{format_bytes(stats.bytes_total)}")
    return line + _skipped_and_deleted(stats)


def _skipped_and_deleted(stats):
    text = ""
    if stats.files_skipped:
        text += f", skipped {stats.files_skipped} files/dirs {format_bytes(stats.bytes_skipped)}"
    if stats.files_deleted:
        text += f", deleted {stats.files_deleted} files/dirs"
    return text


class _TextPrinter(_StatusPrinter):
    def __init__(self, opts, terminal):
        super().__init__(opts)
        self.terminal = terminal and not opts.quiet
        # a log (not a terminal) gets status lines only when RESTIC_PROGRESS_FPS asks for them
        self.interval = None if opts.quiet else status_interval(TERMINAL_INTERVAL if self.terminal else None)
        self._status_shown = False

    def _write(self, text, stream=None):
        with self._out_lock:
            self._clear_status()
            write_text(text, stream)

    def _clear_status(self):
        if self._status_shown:
            sys.stdout.write("\r\x1b[2K")
            sys.stdout.flush()
            self._status_shown = False

    def show_status(self, stats, elapsed):
        line = _status_line(stats, elapsed)
        with self._out_lock:
            if not self.terminal:  # a log: every status a line of its own, as restic writes them
                write_text(line + "\n")
                return
            width = _terminal_width()
            if width > 2:  # as restic, which cuts status lines at the terminal's width
                line = line[:width - 2]
            write_text("\r\x1b[2K" + line)
            self._status_shown = True

    def stop_status(self):
        super().stop_status()
        with self._out_lock:
            self._clear_status()

    def item(self, action, location, size):
        if self.opts.quiet or self.opts.verbose < 2:
            return
        word = _ACTIONS[action]
        if action in ("dir restored", "other restored", "deleted"):
            self._write("%-9s %s\n" % (word, location))
        else:
            self._write("%-9s %s with size %s\n" % (word, location, format_bytes(size)))

    def error(self, location, message):
        self._write(f"ignoring error for {location}: {message}\n", sys.stderr)

    def finish(self, stats, seconds):
        if self.opts.quiet:
            return
        took = format_duration(seconds)
        if stats.complete:
            line = f"Summary: Restored {stats.files_total} files/dirs ({format_bytes(stats.bytes_total)}) in {took}"
        else:
            line = (f"Summary: Restored {stats.files_restored} / {stats.files_total} files/dirs "
                    f"({format_bytes(stats.bytes_restored)} / {format_bytes(stats.bytes_total)}) in {took}")
        write_text(line + _skipped_and_deleted(stats) + "\n")


def _terminal_width():
    import shutil

    return shutil.get_terminal_size((0, 0)).columns


def _status_json(stats, elapsed):
    """restic's restore status message (its fields' order, omitempty, and percent_done as Go
    writes a float64)."""
    from ..model import gojson

    percent = min(1.0, stats.bytes_restored / stats.bytes_total) if stats.bytes_total and not stats.planning else 0
    fields = ['"message_type":"status"']
    if int(elapsed):
        fields.append(f'"seconds_elapsed":{int(elapsed)}')
    fields.append('"percent_done":' + gojson.float_literal(percent))
    for key, value in _counts(stats):
        if value:  # omitempty
            fields.append(f'"{key}":{value}')
    return "{" + ",".join(fields) + "}"


def _counts(stats):
    return (("total_files", stats.files_total), ("files_restored", stats.files_restored),
            ("files_skipped", stats.files_skipped), ("files_deleted", stats.files_deleted),
            ("total_bytes", stats.bytes_total), ("bytes_restored", stats.bytes_restored),
            ("bytes_skipped", stats.bytes_skipped))


class _JSONPrinter(_StatusPrinter):
    def __init__(self, opts):
        super().__init__(opts)
        self.interval = None if opts.quiet else status_interval(JSON_INTERVAL)

    def _print(self, obj, stream=None):
        from ..model import gojson

        self._write_line(gojson.dumps(obj), stream)

    def _write_line(self, line, stream=None):
        with self._out_lock:
            write_text(line + "\n", stream or sys.stdout)

    def show_status(self, stats, elapsed):
        self._write_line(_status_json(stats, elapsed))

    def item(self, action, location, size):
        if self.opts.verbose < 2:
            return
        self._print({"message_type": "verbose_status", "action": _ACTIONS[action], "item": location, "size": size})

    def error(self, location, message):
        self._print({"message_type": "error", "error": {"message": message}, "during": "restore", "item": location},
                    sys.stderr)

    def finish(self, stats, seconds):
        out = {"message_type": "summary"}
        for key, value in (("seconds_elapsed", int(seconds)),) + _counts(stats):
            if value:  # omitempty
                out[key] = value
        self._print(out)
