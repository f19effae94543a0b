"""restique dump: print a backed-up file, or a folder as a tar or zip archive."""
import click

from .options import snapshot_filter_options
from .output import print_warning


@click.command()
@click.argument("args", nargs=-1)
@click.option("-a", "--archive", default="tar", metavar="format", help='set archive format as "tar" or "zip" (default "tar")')
@click.option("-t", "--target", default="", metavar="path", help="write the output to target path")
@snapshot_filter_options(single=True)
@click.pass_obj
def dump(opts, args, archive, target, snapshot_filter):
    """Print backed-up files or folders to stdout.

    The "dump" command extracts files from a snapshot from the repository. If a single file
    is selected, it prints its contents to stdout. Folders are output as a tar (default) or
    zip file containing the contents of the specified folder. Pass "/" as file name to dump
    the whole snapshot as an archive file.

    The special snapshotID "latest" can be used to use the latest snapshot in the
    repository.

    To include the folder content at the root of the archive, you can use the
    "snapshotID:subfolder" syntax, where "subfolder" is a path within the snapshot tree as
    shown by "restique ls".

    Exit status is 0 if the command was successful, and 1 if there was any error.
    """
    import sys

    from ..errors import RestiqueError
    from ..operations.dump import DumpError, DumpOptions, dump as dump_path

    if len(args) != 2:
        raise RestiqueError("no file and no snapshot ID specified")
    options = DumpOptions(archive=archive, on_error=_report_left_out)
    try:
        options.validate()
    except DumpError as exc:  # restic prints this one without "Fatal: "
        _fail(str(exc))

    repo = opts.open_for_reading()
    tree_id = _find_tree(repo, args[0], snapshot_filter)
    out = _open_output(target)
    if not target:
        options.before_archive = _refuse_terminal
    try:
        result = dump_path(repo, tree_id, args[1], out, options)
        out.flush()
    except RestiqueError as exc:
        raise RestiqueError(f"cannot dump file: {exc}") from None
    except BrokenPipeError:
        raise
    except OSError as exc:
        raise RestiqueError(f"cannot dump file: write {target or '/dev/stdout'}: {_go_error(exc)}") from None
    finally:
        if target:
            out.close()
    sys.stdout.flush()
    if result.errors:  # entries left out of the archive: not a complete dump
        raise RestiqueError(f"There were {len(result.errors)} errors\n")


def _report_left_out(folder: str, message: str) -> None:
    """An entry the archive leaves out, reported as restore reports its errors."""
    print_warning(f"ignoring error for {folder}: {message}")


def _fail(message: str):
    """A one-line error without "Fatal: ", exit 1."""
    import sys

    print_warning(message)
    sys.exit(1)


def _go_error(exc: OSError) -> str:
    text = exc.strerror or str(exc)
    return text[:1].lower() + text[1:]


def _find_tree(repo, spec: str, snapshot_filter) -> str:
    """Tree id of `ID[:subfolder]` or `latest[:subfolder]`; restic 0.14's messages when no
    snapshot matches."""
    from ..operations.snapshot_lookup import SnapshotNotFound, find_snapshot

    try:
        return find_snapshot(repo, spec, snapshot_filter.filter())[1]
    except SnapshotNotFound as exc:
        name = spec.partition(":")[0]
        if name == "latest":
            _fail(f"latest snapshot for criteria not found: {exc.reason} "
                  f"Paths:[{' '.join(snapshot_filter.paths)}] Hosts:[{' '.join(snapshot_filter.hosts)}]")
        _fail(f'invalid id "{name}": {exc.reason}')


def _open_output(target: str):
    """The --target file (created or truncated, as restic does) or stdout, written in
    gathered pieces (operations/dump_output.py)."""
    import os
    import sys

    from ..operations.dump_output import GATHER_BYTES, GatheredOutput

    gathered = hasattr(os, "writev")  # elsewhere (Windows) a buffered file
    if not target:
        sys.stdout.flush()
        if gathered:
            return GatheredOutput(sys.stdout.fileno())
        return open(sys.stdout.fileno(), "wb", buffering=GATHER_BYTES, closefd=False)
    try:
        if not gathered:
            return open(target, "wb", buffering=GATHER_BYTES)
        fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | getattr(os, "O_CLOEXEC", 0), 0o666)
    except OSError as exc:
        _fail(f"cannot dump to file: open {target}: {_go_error(exc)}")
    return GatheredOutput(fd, close_fd=True)


def _refuse_terminal() -> None:
    import sys

    from ..operations.dump import DumpError

    if sys.stdout.isatty():
        raise DumpError("stdout is the terminal, please redirect output")
