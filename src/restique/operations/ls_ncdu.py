"""A snapshot listing in ncdu's JSON export format (`ls --ncdu`, read by `ncdu -f -`), laid
out as current restic writes it.

The export is `[1, 2, <snapshot>, [{"name":"/"}, <entry>, [<dir entry>, <entries>...], ...]]`:
a directory is an array whose first element describes it. Sizes are apparent sizes (asize)
and the same rounded up to 512-byte blocks (dsize); only regular files have a size.
Format: https://dev.yorhel.nl/ncdu/jsonfmt
"""
from typing import BinaryIO, Callable, List, Optional

from ..model import gojson
from ..model.node import Node
from ..model.snapshot import Snapshot
from .ls import LEAVE, LsOptions, OnError, ls_items

NCDU_MAJOR, NCDU_MINOR = 1, 2
BLOCK_SIZE = 512


def ncdu_entry(node: Node) -> str:
    """One entry's object, fields in restic's order."""
    size = node.size if node.type == "file" else 0
    mtime = max(0, node.mtime.unix_ns // 1_000_000_000)  # ncdu refuses negative times
    notreg = "false" if node.type in ("dir", "file") else "true"
    return ('{"name":%s,"asize":%d,"dsize":%d,"dev":%d,"ino":%d,"nlink":%d,"notreg":%s,'
            '"uid":%d,"gid":%d,"mode":%d,"mtime":%d}'
            % (gojson.string(node.name), size, -(-size // BLOCK_SIZE) * BLOCK_SIZE, node.device_id,
               node.inode, node.links, notreg, node.uid, node.gid, node.unix_mode, mtime))


def write_ncdu(repo, snapshot: Snapshot, tree_id: str, out: BinaryIO, options: Optional[LsOptions] = None,
               on_error: Optional[OnError] = None,
               loader: Optional[Callable[[str], List[Node]]] = None) -> None:
    """Write the export of tree_id (the snapshot's tree or a folder of it) to out.
    options.dirs and recursive select as for ls; sorting does not apply (ncdu sorts)."""
    options = options or LsOptions()
    header = snapshot.to_json(with_id=False)
    header["tree"] = tree_id
    parts = ['[%d, %d, %s, [{"name":"/"}' % (NCDU_MAJOR, NCDU_MINOR, gojson.dumps(header))]
    depth = 1
    for path, node, kind in ls_items(repo, tree_id, options, on_error, loader):
        if kind == LEAVE:
            depth -= 1
            parts.append("\n%s]" % ("  " * depth))
        elif node.type == "dir":
            parts.append(",\n%s[\n%s%s" % ("  " * depth, "  " * (depth + 1), ncdu_entry(node)))
            depth += 1
        else:
            parts.append(",\n%s%s" % ("  " * depth, ncdu_entry(node)))
        if len(parts) >= 4096:
            out.write("".join(parts).encode("utf-8"))
            parts.clear()
    parts.append("\n]\n]\n")
    out.write("".join(parts).encode("utf-8"))
