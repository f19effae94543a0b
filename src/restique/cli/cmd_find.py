"""restique find: files and directories matching patterns, or restic objects by id, in the
snapshots (text as restic 0.14 prints it; flags and --json as current restic)."""
import sys

import click

from ..model import gojson
from ..operations.find import FoundEntry
from ..operations.find_objects import FoundObject
from .fmt import file_mode_string, format_node
from .options import snapshot_filter_options


@click.command("find")
@click.argument("patterns", nargs=-1)
@click.option("-O", "--oldest", default="", metavar="string", help="oldest modification date/time")
@click.option("-N", "--newest", default="", metavar="string", help="newest modification date/time")
@click.option("-s", "--snapshot", "snapshots", multiple=True, metavar="id",
              help="snapshot id to search in (can be given multiple times)")
@click.option("--blob", is_flag=True, help="pattern is a blob-ID")
@click.option("--tree", is_flag=True, help="pattern is a tree-ID")
@click.option("--pack", is_flag=True, help="pattern is a pack-ID")
@click.option("--show-pack-id", is_flag=True, help="display the pack-ID the blobs belong to (with --blob or --tree)")
@click.option("-i", "--ignore-case", is_flag=True, help="ignore case for pattern")
@click.option("-R", "--reverse", is_flag=True, help="reverse sort order oldest to newest")
@click.option("-l", "--long", "long_", is_flag=True, help="use a long listing format showing size and mode")
@click.option("--human-readable", is_flag=True, help="print sizes in human readable format")
@snapshot_filter_options()
@click.pass_obj
def find(opts, patterns, oldest, newest, snapshots, blob, tree, pack, show_pack_id, ignore_case, reverse,
         long_, human_readable, snapshot_filter):
    """Find a file, a directory or restic IDs.

    The "find" command searches for files or directories in snapshots stored in the
    repository. It can also be used to search for restic blobs, trees or pack files for
    troubleshooting. IDs may be given whole or as prefixes.

    The default sort option for the snapshots is youngest to oldest. To sort the output
    from oldest to youngest specify --reverse.

    Exit status is 0 if the command was successful, 1 if there was any error (also when a
    tree could not be loaded: the other trees are still searched), 10 if the repository
    does not exist, 11 if it is locked, 12 if the password is incorrect.
    """
    from ..errors import RestiqueError, UsageError
    from ..operations.find import FindOptions, find as run_find
    from ..operations.find_time import parse_find_time

    if not patterns:
        raise UsageError("wrong number of arguments")
    if blob + tree + pack > 1:
        raise UsageError("cannot have several ID types")
    options = FindOptions(
        patterns=patterns, kind="blob" if blob else "tree" if tree else "pack" if pack else "path",
        ignore_case=ignore_case, oldest=parse_find_time(oldest) if oldest else None,
        newest=parse_find_time(newest) if newest else None, snapshots=snapshots,
        snapshot_filter=snapshot_filter.filter(), reverse=reverse, show_pack_id=show_pack_id)
    options.validate()

    repo = opts.open_for_reading()
    out = _JSONOutput() if opts.json else _TextOutput(long_, human_readable, opts.quiet)
    errors = []

    def on_error(sn, path, tree_id, exc):
        errors.append(path)
        out.flush()
        what = f"tree {tree_id}" if tree_id else "the tree"
        _write_err(f"Unable to load {what} at {path}: {exc}\n ... which belongs to snapshot {sn.id}\n")

    def warn(message):
        out.flush()
        _write_err(message + "\n")

    try:
        for item in run_find(repo, options, on_error, warn):
            out.add(item)
    except BaseException:
        out.flush()  # what was found so far, as restic would have printed it
        raise
    out.finish()
    if errors:
        raise RestiqueError(f"There were {len(errors)} errors")


def _write_err(text: str) -> None:
    sys.stdout.flush()
    sys.stderr.buffer.write(text.encode("utf-8", "surrogateescape"))
    sys.stderr.buffer.flush()


class _Buffered:
    """Output gathered and written in large pieces, names' raw bytes as they are."""

    def __init__(self):
        self._parts = []
        self._size = 0

    def write(self, text: str) -> None:
        self._parts.append(text)
        self._size += len(text)
        if self._size >= 1 << 16:
            self.flush()

    def flush(self) -> None:
        if self._parts:
            sys.stdout.buffer.write("".join(self._parts).encode("utf-8", "surrogateescape"))
            self._parts.clear()
            self._size = 0
        sys.stdout.buffer.flush()


class _TextOutput(_Buffered):
    """restic 0.14's text: a header per snapshot (not with -q), one line per entry."""

    def __init__(self, long_: bool, human: bool, quiet: bool):
        super().__init__()
        self.long = long_
        self.human = human
        self.quiet = quiet
        self.snapshot = None

    def add(self, item) -> None:
        if isinstance(item, FoundEntry):
            if item.snapshot is not self.snapshot:
                if not self.quiet:
                    sn = item.snapshot
                    self.write(("\n" if self.snapshot is not None else "")
                               + f"Found matching entries in snapshot {sn.short_id} from {sn.local_time_string()}\n")
                self.snapshot = item.snapshot
            self.write(format_node(item.path, item.node, self.long, self.human) + "\n")
        elif isinstance(item, FoundObject):
            sn = item.snapshot
            where = (f" ... in file {item.path}\n     (tree {item.parent_tree})\n" if item.kind == "blob"
                     else f" ... path {item.path}\n")
            self.write(f"Found {item.kind} {item.id}\n{where}"
                       f" ... in snapshot {sn.short_id} ({sn.local_time_string()})\n")
        else:
            self.write(_pack_text(item))

    def finish(self) -> None:
        self.flush()


def _pack_text(item) -> str:
    loc = item.location
    if loc is None:
        return f"Object {item.id[:8]} not found in the index\n"
    return (f"Object belongs to pack {loc.pack_id}\n ... Pack {loc.pack_id[:8]}: <Blob ({item.blob_type}) "
            f"{item.id[:8]}, offset {loc.offset}, length {loc.length}, "
            f"uncompressed length {loc.uncompressed_length}>\n")


# node fields find --json leaves out (current restic)
_HIDDEN = frozenset(("name", "extended_attributes", "generic_attributes", "device", "content", "subtree"))


def match_json(path: str, node) -> str:
    """One match object of --json: path, permissions, then the node's JSON fields but those
    in _HIDDEN. Built as text for the usual nodes (a search can match millions)."""
    if node.error or node.linktarget and not node.linktarget.isascii():
        obj = {"path": path, "permissions": file_mode_string(node.mode)}
        obj.update((k, v) for k, v in node.to_json().items() if k not in _HIDDEN)
        return gojson.dumps(obj)
    s = gojson.string
    parts = ['{"path":', s(path), ',"permissions":"', file_mode_string(node.mode), '","type":', s(node.type)]
    if node.mode:
        parts.append(',"mode":%d' % node.mode)
    parts.append(',"mtime":"%s","atime":"%s","ctime":"%s","uid":%d,"gid":%d'
                 % (node.mtime.rfc3339(), node.atime.rfc3339(), node.ctime.rfc3339(), node.uid, node.gid))
    if node.user:
        parts.append(',"user":' + s(node.user))
    if node.group:
        parts.append(',"group":' + s(node.group))
    for key, value in (("inode", node.inode), ("device_id", node.device_id), ("size", node.size),
                       ("links", node.links)):
        if value:
            parts.append(',"%s":%d' % (key, value))
    if node.linktarget:
        parts.append(',"linktarget":' + s(node.linktarget))
    parts.append("}")
    return "".join(parts)


class _JSONOutput(_Buffered):
    """One JSON array, written as the search goes: entries grouped by snapshot
    ({"matches": [...], "hits": n, "snapshot": id}), or one object per found blob or tree.
    --show-pack-id lines go to stderr, keeping stdout one JSON document."""

    def __init__(self):
        super().__init__()
        self.count = 0  # items written to the array
        self.snapshot = None
        self.hits = 0

    def add(self, item) -> None:
        if isinstance(item, FoundEntry):
            if item.snapshot is not self.snapshot:
                self._close_snapshot()
                self.write(("," if self.count else "[") + '{"matches":[')
                self.count += 1
                self.snapshot = item.snapshot
            self.write(("," if self.hits else "") + match_json(item.path, item.node))
            self.hits += 1
        elif isinstance(item, FoundObject):
            obj = {"object_type": item.kind, "id": item.id, "path": item.path}
            if item.parent_tree:
                obj["parent_tree"] = item.parent_tree
            obj["snapshot"] = item.snapshot.id
            obj["time"] = item.snapshot.time.rfc3339()
            self.write(("," if self.count else "[") + gojson.dumps(obj))
            self.count += 1
        else:
            self.flush()
            _write_err(_pack_text(item))

    def _close_snapshot(self) -> None:
        if self.snapshot is not None:
            self.write(f'],"hits":{self.hits},"snapshot":"{self.snapshot.id}"}}')
            self.hits = 0

    def finish(self) -> None:
        self._close_snapshot()
        self.write("]\n" if self.count else "[]\n")
        self.flush()
