"""restique restore: extract a snapshot (or one of its folders) into a directory."""
import click


@click.command()
@click.argument("args", nargs=-1)
@click.option("-t", "--target", default="", help="directory to extract data to")
@click.option("-e", "--exclude", multiple=True, metavar="pattern", help="exclude a pattern (can be specified multiple times)")
@click.option("--iexclude", multiple=True, metavar="pattern", help="same as --exclude pattern but ignores the casing of filenames")
@click.option("--exclude-file", multiple=True, metavar="file", help="read exclude patterns from a file (can be specified multiple times)")
@click.option("--iexclude-file", multiple=True, metavar="file", help="same as --exclude-file but ignores casing of filenames in patterns")
@click.option("-i", "--include", multiple=True, metavar="pattern", help="include a pattern (can be specified multiple times)")
@click.option("--iinclude", multiple=True, metavar="pattern", help="same as --include pattern but ignores the casing of filenames")
@click.option("--include-file", multiple=True, metavar="file", help="read include patterns from a file (can be specified multiple times)")
@click.option("--iinclude-file", multiple=True, metavar="file", help="same as --include-file but ignores casing of filenames in patterns")
@click.option("-H", "--host", multiple=True, help='only consider snapshots for this host, when snapshot ID "latest" is given (can be specified multiple times)')
@click.option("--tag", multiple=True, metavar="taglist", help='only consider snapshots including tag[,tag,...], when snapshot ID "latest" is given (can be specified multiple times)')
@click.option("--path", "paths", multiple=True, metavar="path", help='only consider snapshots including this (absolute) path, when snapshot ID "latest" is given (can be specified multiple times)')
@click.option("--dry-run", is_flag=True, help="do not write any data, just show what would be done")
@click.option("--sparse", is_flag=True, help="restore files as sparse")
@click.option("--verify", is_flag=True, help="verify restored files content")
@click.option("--overwrite", default="always", metavar="behavior", help="overwrite behavior, one of (always|if-changed|if-newer|never) (default: always)")
@click.option("--delete", is_flag=True, help="delete files from target directory if they do not exist in snapshot. Use '--dry-run -vv' to check what would be deleted")
@click.option("--ownership-by-name", is_flag=True, help="restore file ownership by user name and group name (except POSIX ACLs)")
@click.pass_obj
def restore(opts, args, target, exclude, iexclude, exclude_file, iexclude_file, include, iinclude,
            include_file, iinclude_file, host, tag, paths, dry_run, sparse, verify, overwrite, delete,
            ownership_by_name):
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

    excludes = _matchers("exclude", exclude, iexclude, exclude_file, iexclude_file)
    includes = _matchers("include", include, iinclude, include_file, iinclude_file)
    if not args:
        raise UsageError("no snapshot ID specified")
    if len(args) > 1:
        raise UsageError(f"more than one snapshot ID specified: [{' '.join(args)}]")
    options = RestoreOptions(target=target, includes=includes, excludes=excludes, overwrite=overwrite,
                             delete=delete, dry_run=dry_run, sparse=sparse, verify=verify,
                             ownership_by_name=ownership_by_name)
    options.validate()  # before opening the repository, as restic checks its flags first

    repo = opts.open(lock=False)
    snapshot, tree_id = _find_snapshot(repo, args[0], host, tag, paths)

    printer = _JSONPrinter(opts) if opts.json else _TextPrinter(opts)
    if not opts.json and not opts.quiet:
        _out(f"restoring {snapshot} to {target}\n")
    t0 = time.monotonic()
    restorer = Restorer(repo, tree_id, options, printer)
    stats = restorer.restore()
    printer.finish(stats, time.monotonic() - t0)
    if stats.errors:
        raise RestiqueError(f"There were {len(stats.errors)} errors\n")
    if verify:
        if not opts.json and not opts.quiet:
            _out(f"verifying files in {target}\n")
        t1 = time.monotonic()
        count = restorer.verify()
        if stats.errors:
            raise RestiqueError(f"There were {len(stats.errors)} errors\n")
        if not opts.json and not opts.quiet:
            _out(f"finished verifying {count} files in {target} (took {_go_duration(time.monotonic() - t1)})\n")
    sys.stdout.flush()


def _matchers(kind, patterns, ipatterns, files, ifiles):
    """The pattern lists of --KIND, --iKIND, --KIND-file and --iKIND-file: one per case
    sensitivity, as restic keeps one filter function for each; restic's messages for
    unreadable files and malformed patterns."""
    from ..errors import UsageError
    from ..model.patterns import InvalidPatternError, PatternList, read_pattern_file

    def check(option, pats):
        try:
            return PatternList(pats)
        except InvalidPatternError as exc:
            raise UsageError(f"{option}: {exc}") from None

    def read(option, names):
        out = []
        for name in names:
            try:
                out += read_pattern_file(name)
            except UsageError as exc:
                raise UsageError(f'failed to read patterns from file "{name}": {exc}') from None
        if out:
            check(option, out)
        return out

    patterns = list(patterns) + read(f"--{kind}-file", files)
    ipatterns = list(ipatterns) + read(f"--i{kind}-file", ifiles)
    out = []
    if ipatterns:
        check(f"--i{kind}", ipatterns)
        out.append(PatternList(ipatterns, case_insensitive=True))
    if patterns:
        out.append(check(f"--{kind}", patterns))
    return out


def _find_snapshot(repo, spec, hosts, tags, paths):
    """(snapshot, tree id) for `ID[:subfolder]` or `latest[:subfolder]`. A name that matches
    no snapshot ends the command as in restic: `invalid id "X": <reason>`, without "Fatal: "."""
    import sys

    from ..model.snapshot_filter import SnapshotFilter
    from ..operations.snapshot_lookup import SnapshotNotFound, find_snapshot

    try:
        return find_snapshot(repo, spec, SnapshotFilter.from_options(hosts, tags, paths))
    except SnapshotNotFound as exc:
        _out(f'invalid id "{spec.partition(":")[0]}": {exc.reason}\n', sys.stderr)
        sys.exit(1)


def _go_duration(seconds: float) -> str:
    """Go's time.Duration.String() after Round(time.Millisecond)."""
    ms = int(round(seconds * 1000))
    if ms == 0:
        return "0s"
    if ms < 1000:
        return f"{ms}ms"
    h, rest = divmod(ms, 3_600_000)
    m, rest = divmod(rest, 60_000)
    s = ("%d.%03d" % divmod(rest, 1000)).rstrip("0").rstrip(".")
    if h:
        return f"{h}h{m}m{s}s"
    if m:
        return f"{m}m{s}s"
    return f"{s}s"


def _format_bytes(n: int) -> str:
    for shift, unit in ((40, "TiB"), (30, "GiB"), (20, "MiB"), (10, "KiB")):
        if n >= 1 << shift:
            return "%.3f %s" % (n / (1 << shift), unit)
    return f"{n} B"


def _format_seconds(seconds: float) -> str:
    s = int(seconds)
    h, rest = divmod(s, 3600)
    m, s = divmod(rest, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


def _out(text: str, stream=None) -> None:
    """Write text with file names' raw bytes (surrogate escapes) as they are."""
    import sys

    stream = stream or sys.stdout
    stream.flush()
    stream.buffer.write(text.encode("utf-8", "surrogateescape"))
    stream.buffer.flush()


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
            _out("%-9s %s\n" % (word, location))
        else:
            _out("%-9s %s with size %s\n" % (word, location, _format_bytes(size)))

    def error(self, location, message):
        import sys

        _out(f"ignoring error for {location}: {message}\n", sys.stderr)

    def finish(self, stats, seconds):
        if self.opts.quiet:
            return
        took = _format_seconds(seconds)
        if stats.complete:
            line = f"Summary: Restored {stats.files_total} files/dirs ({_format_bytes(stats.bytes_total)}) in {took}"
        else:
            line = (f"Summary: Restored {stats.files_restored} / {stats.files_total} files/dirs "
                    f"({_format_bytes(stats.bytes_restored)} / {_format_bytes(stats.bytes_total)}) in {took}")
        if stats.files_skipped:
            line += f", skipped {stats.files_skipped} files/dirs {_format_bytes(stats.bytes_skipped)}"
        if stats.files_deleted:
            line += f", deleted {stats.files_deleted} files/dirs"
        _out(line + "\n")


class _JSONPrinter:
    def __init__(self, opts):
        self.opts = opts

    def _print(self, obj, stream=None):
        import sys

        from ..model import gojson

        _out(gojson.dumps(obj) + "\n", stream or sys.stdout)

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
