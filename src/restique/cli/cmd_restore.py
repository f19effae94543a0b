"""restique restore: extract a snapshot (or one of its folders) into a directory."""
import click

from .fmt import format_bytes, format_duration, format_go_duration
from .options import exclude_options, include_options, snapshot_filter_options
from .output import write_text


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
    import sys
    import time

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

    printer = _JSONPrinter(opts) if opts.json else _TextPrinter(opts)
    if not opts.json and not opts.quiet:
        write_text(f"restoring {snapshot} to {target}\n")
    t0 = time.monotonic()
    restorer = Restorer(repo, tree_id, options, printer)
    stats = restorer.restore()
    printer.finish(stats, time.monotonic() - t0)
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
    import sys

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


class _TextPrinter:
    def __init__(self, opts):
        self.opts = opts

    def item(self, action, location, size):
        if self.opts.quiet or self.opts.verbose < 2:
            return
        word = _ACTIONS[action]
        if action in ("dir restored", "other restored", "deleted"):
            write_text("%-9s %s\n" % (word, location))
        else:
            write_text("%-9s %s with size %s\n" % (word, location, format_bytes(size)))

    def error(self, location, message):
        import sys

        write_text(f"ignoring error for {location}: {message}\n", sys.stderr)

    def finish(self, stats, seconds):
        if self.opts.quiet:
            return
        took = format_duration(seconds)
        if stats.complete:
            line = f"Summary: Restored {stats.files_total} files/dirs ({format_bytes(stats.bytes_total)}) in {took}"
        else:
            line = (f"Summary: Restored {stats.files_restored} / {stats.files_total} files/dirs "
                    f"({format_bytes(stats.bytes_restored)} / {format_bytes(stats.bytes_total)}) in {took}")
        if stats.files_skipped:
            line += f", skipped {stats.files_skipped} files/dirs {format_bytes(stats.bytes_skipped)}"
        if stats.files_deleted:
            line += f", deleted {stats.files_deleted} files/dirs"
        write_text(line + "\n")


class _JSONPrinter:
    def __init__(self, opts):
        self.opts = opts

    def _print(self, obj, stream=None):
        import sys

        from ..model import gojson

        write_text(gojson.dumps(obj) + "\n", stream or sys.stdout)

    def item(self, action, location, size):
        if self.opts.verbose < 2:
            return
        self._print({"message_type": "verbose_status", "action": _ACTIONS[action], "item": location, "size": size})

    def error(self, location, message):
        import sys

        self._print({"message_type": "error", "error": {"message": message}, "during": "restore", "item": location},
                    sys.stderr)

    def finish(self, stats, seconds):
        out = {"message_type": "summary"}
        for key, value in (("seconds_elapsed", int(seconds)), ("total_files", stats.files_total),
                           ("files_restored", stats.files_restored), ("files_skipped", stats.files_skipped),
                           ("files_deleted", stats.files_deleted), ("total_bytes", stats.bytes_total),
                           ("bytes_restored", stats.bytes_restored), ("bytes_skipped", stats.bytes_skipped)):
            if value:  # omitempty
                out[key] = value
        self._print(out)
