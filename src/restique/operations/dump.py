"""`dump`: one file's content, or a folder (or a whole snapshot) as a tar or zip stream,
written to a binary stream the caller gives (restic's cmd_dump.go and internal/dump).

The path is looked up as restic does: cleaned, then matched one name at a time from the
root; a file is written as it is, a folder as an archive of everything below it, named by
its path in the snapshot without the leading slash ("/" for the whole tree). Inside a
folder, restic's walker keeps only files, folders and symlinks; the folder's own direct
entries are all written, other kinds as empty regular files, as restic does.

Unlike restic, an entry whose name is not one plain path component (``..``, ``a/b``, empty)
or repeats the name before it is left out of an archive, with everything below it, and
reported (DumpResult.errors, DumpOptions.on_error): its member name could otherwise point
outside the folder the archive is unpacked into, or through a symlink of the same name.

    with open("docs.tar", "wb") as out:
        dump(repo, tree_id, "/srv/data/docs", out, DumpOptions(archive="tar"))
"""
import posixpath
from dataclasses import dataclass, field
from typing import Callable, Iterator, List, Optional, Tuple

from ..errors import RestiqueError
from ..model.names import child_name_problem, go_quote
from ..model.paths import go_clean
from .collector import fewer_collections
from .dump_blobs import PackBatchedReader
from .dump_nodes import ArchivedNode, ArchivedTreeLoader
from .walker import TreeLoader, join, walk

ARCHIVE_FORMATS = ("tar", "zip")
_ARCHIVED_TYPES = ("file", "dir", "symlink")


class DumpError(RestiqueError):
    """The path cannot be dumped (not found, wrong type) or the archive cannot be written;
    the message is restic's, without its `cannot dump file: ` prefix."""


@dataclass
class DumpOptions:
    archive: str = "tar"  # "tar" or "zip", for folders
    # called before an archive (not a single file) is written; may raise to refuse, e.g.
    # when the output is a terminal
    before_archive: Optional[Callable[[], None]] = None
    workers: int = 2  # threads reading and decrypting pack ranges
    # called with (folder path, message) for each entry left out of an archive
    on_error: Optional[Callable[[str, str], None]] = None

    def validate(self) -> None:
        if self.archive not in ARCHIVE_FORMATS:
            raise DumpError(f'unknown archive format "{self.archive}"')


@dataclass
class DumpResult:
    kind: str  # "file" or "archive"
    entries: int  # archive entries written (1 for a file)
    bytes: int  # bytes written to the stream
    errors: List[Tuple[str, str]] = field(default_factory=list)  # (folder path, message)


def quoted(path: str) -> str:
    return '"' + go_quote(path) + '"'


def path_components(path: str) -> List[str]:
    """restic's splitPath(path.Clean(p)): the names to follow from the root; [""] for "/"."""
    cleaned = go_clean(path)
    if cleaned == "/":
        return [""]
    return cleaned.lstrip("/").split("/")


def dump(repo, tree_id: str, path: str, out, options: Optional[DumpOptions] = None) -> DumpResult:
    """Write the file at path below tree_id to out (a binary stream), or the folder at path
    (or everything, for "/") as an archive. Raises DumpError for a path that cannot be
    dumped; damaged or missing data raises the repository's errors."""
    options = options or DumpOptions()
    options.validate()
    loader = ArchivedTreeLoader(repo, cache_bytes=0)
    target = _locate(loader, tree_id, path_components(path))
    reader = PackBatchedReader(repo, workers=options.workers)
    if isinstance(target, ArchivedNode):
        written = 0
        for _, chunks in reader.contents([target], lambda node: node.content):
            for chunk in chunks:
                out.write(chunk)
                written += len(chunk)
        return DumpResult("file", 1, written)
    if options.before_archive is not None:
        options.before_archive()
    subtree, base = target
    with fewer_collections():  # the entries planned ahead live on: young collections would walk them
        return _write_archive(repo, loader, reader, subtree, base, out, options)


def _locate(loader: TreeLoader, tree_id: str, names: List[str]):
    """The file node to write, or (tree id, path) of the folder to archive; restic's errors."""
    if names == [""]:
        return tree_id, "/"
    item = "/"
    for depth, name in enumerate(names):
        item = posixpath.normpath(join(item, name))
        last = depth == len(names) - 1
        node = next((n for n in loader(tree_id) if n.name == name), None)
        if node is None:
            raise DumpError(f"path {quoted(item)} not found in snapshot")
        if node.type == "dir":
            if not node.subtree:
                raise DumpError(f"directory {quoted(item)} has no subtree")
            if last:
                return node.subtree, item
            try:
                loader(node.subtree)
            except RestiqueError as exc:
                raise DumpError(f"cannot load subtree for {quoted(item)}: {exc}") from None
            tree_id = node.subtree
        elif not last:
            raise DumpError(f"{quoted(item)} should be a dir, but is a {quoted(node.type)}")
        elif node.type != "file":
            raise DumpError(f"{quoted(item)} should be a file, but is a {quoted(node.type)}")
        else:
            return node
    raise DumpError(f"path {quoted(item)} not found in snapshot")  # no names: not reached


def archive_entries(repo, loader: TreeLoader, tree_id: str, base: str,
                    on_error: Optional[Callable[[str, str], None]] = None) -> Iterator[Tuple[str, ArchivedNode]]:
    """(snapshot path, node) of every entry restic's dump archives below the folder base
    (tree tree_id): its direct entries whatever their type, files, folders and symlinks
    further down. Entries with names unsafe as paths are passed to on_error(folder, message)
    instead, and not entered."""
    base_depth = base.rstrip("/").count("/")
    previous: List[str] = []  # per depth below base: the name of the last entry seen there
    refused = False

    def descend(path: str, node: ArchivedNode) -> bool:
        return not refused

    for path, node in walk(repo, tree_id, base, descend, loader=loader):
        prefix = path[:len(path) - len(node.name)]
        depth = prefix.count("/") - base_depth - 1  # safe: only safe names are entered
        del previous[depth + 1:]
        problem = child_name_problem(node.name, previous[depth] if len(previous) > depth else None)
        previous[depth:] = [node.name]
        refused = problem is not None
        if refused:
            if on_error is not None:
                on_error(prefix.rstrip("/") or "/", problem)
        elif node.type in _ARCHIVED_TYPES or depth == 0:
            yield path, node


def _write_archive(repo, loader, reader, tree_id: str, base: str, out, options: DumpOptions) -> DumpResult:
    if options.archive == "zip":
        from .dump_zip import ZipWriter as Writer
    else:
        from .dump_tar import TarWriter as Writer
    writer = Writer(out)
    errors: List[Tuple[str, str]] = []

    def left_out(folder: str, message: str) -> None:
        errors.append((folder, message))
        if options.on_error is not None:
            options.on_error(folder, message)

    entries = archive_entries(repo, loader, tree_id, base, left_out)
    for (path, node), chunks in reader.contents(entries, _archived_content):
        writer.add(path[1:].encode("utf-8", "surrogateescape"), node, chunks)
    writer.close()
    return DumpResult("archive", writer.entries, writer.bytes, errors)


def _archived_content(entry: Tuple[str, ArchivedNode]) -> Optional[List[str]]:
    path, node = entry
    return node.content if node.type == "file" else None
