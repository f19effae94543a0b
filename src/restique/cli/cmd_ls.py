"""restique ls: list the entries of a snapshot (text as restic 0.14 prints it; --json,
--ncdu, --sort and --reverse as current restic)."""
import sys

import click

from ..model.gojson import string as json_string
from .fmt import file_mode_string
from .options import snapshot_filter_options
from .output import print_warning

_SORT_HELP = "sort output by (name|size|time=mtime|atime|ctime|extension)"


def _sort_mode(ctx, param, value: str) -> str:
    from ..operations.ls import SORT_MODES

    if value not in SORT_MODES:  # restic refuses it while parsing flags, in the flag parser's words
        raise click.UsageError(f'invalid argument "{value}" for "-s, --sort" flag: invalid sort mode "{value}", '
                               "must be one of (name|size|time=mtime|atime|ctime|extension)")
    return value


@click.command("ls", options_metavar="[flags]")
@click.argument("args", nargs=-1, metavar="snapshotID [dir...]")
@snapshot_filter_options(single=True)
@click.option("-l", "--long", "long_", is_flag=True, help="use a long listing format showing size and mode")
@click.option("--recursive", is_flag=True, help="include files in subfolders of the listed directories")
@click.option("--human-readable", is_flag=True, help="print sizes in human readable format")
@click.option("--ncdu", is_flag=True, help="output NCDU export format (pipe into 'ncdu -f -')")
@click.option("-s", "--sort", default="name", metavar="mode", callback=_sort_mode, help=_SORT_HELP)
@click.option("--reverse", is_flag=True, help="reverse sorted output")
@click.pass_obj
def ls(opts, args, snapshot_filter, long_, recursive, human_readable, ncdu, sort, reverse):
    """List files in a snapshot.

    The special snapshot ID "latest" can be used to list files and directories of the latest
    snapshot in the repository. The --host flag can be used in conjunction to select the
    latest snapshot originating from a certain host only. "ID:subfolder" lists a folder of
    the snapshot.

    File listings can optionally be filtered by directories. Any positional arguments after
    the snapshot ID are interpreted as absolute directory paths, and only files inside those
    directories will be listed. If the --recursive flag is used, then the filter will allow
    traversing into matching directories' subfolders. Any directory paths specified must be
    absolute (starting with a path separator); paths use the forward slash '/' as separator.

    File listings can be sorted by specifying --sort followed by one of the sort specifiers
    '(name|size|time=mtime|atime|ctime|extension)'. The sorting can be reversed by
    specifying --reverse.

    Exit status is 0 if the command was successful, 1 if there was any error (also when a
    damaged folder could not be listed), 10 if the repository does not exist, 11 if it is
    locked, 12 if the password is incorrect.
    """
    from ..errors import RestiqueError, UsageError
    from ..operations.ls import LsOptions

    if not args:
        raise UsageError("no snapshot ID specified, specify snapshot ID or use special ID 'latest'")
    if ncdu and opts.json:
        raise UsageError("only either '--json' or '--ncdu' can be specified")
    if ncdu and sort != "name":
        raise UsageError("--sort and --ncdu are mutually exclusive")
    if ncdu and reverse:
        raise UsageError("--reverse and --ncdu are mutually exclusive")
    options = LsOptions(dirs=args[1:], recursive=recursive, sort=sort, reverse=reverse)
    options.validate()

    repo = opts.open_for_reading()
    snapshot, tree_id = _find_snapshot(repo, args[0], snapshot_filter.filter())
    errors = []

    def on_error(path, exc):
        errors.append(path)
        print_warning(f"ignoring error for {path}: {exc}")

    if ncdu:
        from ..operations.ls_ncdu import write_ncdu

        sys.stdout.flush()
        write_ncdu(repo, snapshot, tree_id, sys.stdout.buffer, options, on_error)
    elif opts.json:
        _print_json(repo, snapshot, tree_id, options, on_error)
    else:
        _print_text(repo, snapshot, tree_id, options, on_error, long_, human_readable, quiet=opts.quiet)
    if errors:
        raise RestiqueError(f"There were {len(errors)} errors")


def _find_snapshot(repo, spec, snapshot_filter):
    """(snapshot, tree id) for `ID[:subfolder]` or `latest[:subfolder]`. A name that matches no
    snapshot is reported in restic 0.14's words (`Ignoring "X": ...`), and ends the command
    with exit code 1 as current restic does. The filter only narrows down `latest`; with an
    ID it is ignored silently, as current restic does (0.14 warned)."""
    from ..operations.snapshot_lookup import SnapshotNotFound, find_snapshot

    name = spec.partition(":")[0]
    try:
        return find_snapshot(repo, spec, snapshot_filter)
    except SnapshotNotFound as exc:
        if name == "latest" and exc.reason == "no snapshot found":
            message = f'Ignoring "latest", no snapshot matched given filter ({snapshot_filter.describe()})'
        else:
            message = f'Ignoring "{name}": {exc.reason}'
        print_warning(message)
        sys.exit(1)


class _Lines:
    """Lines gathered and written to stdout in large pieces: listings can be long."""

    def __init__(self):
        self.lines = []

    def add(self, line: str) -> None:
        self.lines.append(line)
        if len(self.lines) >= 2048:
            self.flush()

    def add_all(self, lines) -> None:
        """Every line of an iterable, in pieces of the same size as add() writes."""
        pending = self.lines
        for line in lines:
            pending.append(line)
            if len(pending) >= 2048:
                self.flush()

    def flush(self) -> None:
        if self.lines:
            self.lines.append("")
            sys.stdout.buffer.write("\n".join(self.lines).encode("utf-8", "surrogateescape"))
            self.lines.clear()
        sys.stdout.buffer.flush()


def _print_text(repo, snapshot, tree_id, options, on_error, long_, human, quiet):
    from ..operations.ls import list_paths, ls, tree_loader
    from .fmt import format_node

    out = _Lines()
    if not quiet:
        paths = " ".join(snapshot.paths or [])
        out.add(f"snapshot {snapshot.short_id} of [{paths}] filtered by [{' '.join(options.dirs)}] "
                f"at {snapshot.time.go_string()}):")
        out.flush()
    if long_:
        for path, node in ls(repo, tree_id, options, on_error):
            out.add(format_node(path, node, long=True, human=human))
    elif not options.dirs and not options.sorted:
        out.add_all(list_paths(repo, tree_id, on_error))
    else:
        names_only = options.sort == "name"
        for path, _ in ls(repo, tree_id, options, on_error, tree_loader(repo, names_only)):
            out.add(path)
    out.flush()


def _print_json(repo, snapshot, tree_id, options, on_error):
    from ..model import gojson
    from ..operations.ls import ls

    out = _Lines()
    header = snapshot.to_json(with_id=True)
    header["tree"] = tree_id  # the listed folder's tree, as current restic shows it
    header["message_type"] = "snapshot"
    header["struct_type"] = "snapshot"
    out.add(gojson.dumps(header))
    out.flush()
    for path, node in ls(repo, tree_id, options, on_error):
        out.add(json_node(path, node))
    out.flush()


def json_node(path: str, node) -> str:
    """One node line of `ls --json` (current restic's fields and order), built directly:
    listings can have millions of lines."""
    s = json_string
    parts = ['{"name":', s(node.name), ',"type":', s(node.type), ',"path":', s(path),
             ',"uid":%d,"gid":%d' % (node.uid, node.gid)]
    if node.type == "file":
        parts.append(',"size":%d' % node.size)
    if node.mode:
        parts.append(',"mode":%d' % node.mode)
    parts.append(',"permissions":"%s","mtime":"%s","atime":"%s","ctime":"%s"' % (
        file_mode_string(node.mode), node.mtime.rfc3339(), node.atime.rfc3339(), node.ctime.rfc3339()))
    if node.inode:
        parts.append(',"inode":%d' % node.inode)
    parts.append(',"message_type":"node","struct_type":"node"}')
    return "".join(parts)
