"""restique diff: the differences between two snapshots, or between a folder of each."""
import click


@click.command()
@click.argument("args", nargs=-1, metavar="snapshotID snapshotID")
@click.option("--metadata", is_flag=True, help="print changes in metadata")
@click.pass_obj
def diff(opts, args, metadata):
    """Show differences between two snapshots.

    The "diff" command shows differences from the first to the second snapshot. The
    first characters in each line display what has happened to a particular file or
    directory:

    \b
    * +  The item was added
    * -  The item was removed
    * U  The metadata (access mode, timestamps, ...) for the item was updated
    * M  The file's content was modified
    * T  The type was changed, e.g. a file was made a symlink
    * ?  Bitrot detected: The file's content has changed but all metadata is the same

    \b
    Metadata comparison will likely not work if a backup was made with
    --ignore-inode or --ignore-ctime.

    To only compare files in specific subfolders, you can use the
    "snapshotID:subfolder" syntax, where "subfolder" is a path within the
    snapshot tree as shown by "restique ls". The snapshotID may be "latest".

    Exit status is 0 if the command was successful, and 1 if there was any error
    (including a folder that could not be read: the rest is still compared).
    """
    import sys

    from ..errors import RestiqueError
    from ..operations.diff import DiffOptions, diff_trees
    from .output import print_warning, write_text

    if len(args) != 2:
        raise RestiqueError("specify two snapshot IDs")
    repo = opts.open_for_reading()
    (snapshot_a, root_a), (snapshot_b, root_b) = (_find_snapshot(repo, spec) for spec in args)
    if not opts.json and not opts.quiet:
        write_text(f"comparing snapshot {snapshot_a.short_id} to {snapshot_b.short_id}:\n\n")
    tree_a, tree_b = _subfolder(repo, root_a, args[0]), _subfolder(repo, root_b, args[1])

    out = sys.stdout.buffer
    print_change = _json_change if opts.json else _text_change
    on_change = None if opts.quiet else (lambda change: out.write(print_change(change)))

    def warn(message):
        out.flush()
        print_warning(message)

    stats = diff_trees(repo, tree_a, tree_b, DiffOptions(metadata=metadata), on_change, warn)
    out.flush()
    if opts.json:
        _print_json_statistics(args, stats)
    else:
        _print_text_statistics(stats)
    if stats.errors:
        raise RestiqueError(f"There were {stats.errors} errors")


def _find_snapshot(repo, spec):
    """(snapshot, root tree id) for `ID`, `latest` or either with `:subfolder` (the folder is
    looked up after the heading, as restic does). restic's message for an unknown name."""
    from ..errors import NotFound
    from ..operations.snapshot_lookup import SnapshotNotFound, find_snapshot

    try:
        return find_snapshot(repo, spec.partition(":")[0])
    except SnapshotNotFound as exc:
        raise NotFound(exc.reason) from None


def _subfolder(repo, root, spec):
    """The tree of `:subfolder` in spec below root (restic's `path x: not found` ...)."""
    from ..operations.walker import find_tree_directory

    subfolder = spec.partition(":")[2]
    return find_tree_directory(repo, root, subfolder) if subfolder else root


def _text_change(change) -> bytes:
    return ("%-5s%s\n" % (change.modifier, change.path)).encode("utf-8", "surrogateescape")


def _json_change(change) -> bytes:
    from ..model import gojson

    return ('{"message_type":"change","path":%s,"modifier":%s}\n'
            % (gojson.string(change.path), gojson.string(change.modifier))).encode()


def _print_text_statistics(stats):
    from .fmt import format_bytes
    from .output import write_text

    added, removed = stats.added, stats.removed
    write_text(
        "\n"
        f"Files:       {added.files:5d} new, {removed.files:5d} removed, {stats.changed_files:5d} changed\n"
        f"Dirs:        {added.dirs:5d} new, {removed.dirs:5d} removed\n"
        f"Others:      {added.others:5d} new, {removed.others:5d} removed\n"
        f"Data Blobs:  {added.data_blobs:5d} new, {removed.data_blobs:5d} removed\n"
        f"Tree Blobs:  {added.tree_blobs:5d} new, {removed.tree_blobs:5d} removed\n"
        f"  Added:   {format_bytes(added.bytes):<5s}\n"
        f"  Removed: {format_bytes(removed.bytes):<5s}\n"
    )


def _print_json_statistics(args, stats):
    from .output import print_json

    def diff_stat(s):
        return {"files": s.files, "dirs": s.dirs, "others": s.others,
                "data_blobs": s.data_blobs, "tree_blobs": s.tree_blobs, "bytes": s.bytes}

    print_json({"message_type": "statistics", "source_snapshot": args[0], "target_snapshot": args[1],
                "changed_files": stats.changed_files,
                "added": diff_stat(stats.added), "removed": diff_stat(stats.removed)})
