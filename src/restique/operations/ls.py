"""Listing a snapshot's tree as restic's `ls` does: optionally only below some directories,
optionally sorted.

restic's rules for directory arguments (absolute paths inside the snapshot): an entry is
listed when it lies inside one of them (the directory itself and its direct entries; with
recursive, everything below); the directories on the way to them are walked but not listed;
nothing else is loaded.

`ls()` yields the listed (path, node) pairs. `ls_items()` is the walk underneath, with the
directories on the way (PREFIX) and the end of every directory entered (LEAVE), which the
ncdu export needs to nest its output. A subtree that cannot be loaded is reported to
on_error(path, exc) and skipped; the rest is still listed.
"""
import re
from dataclasses import dataclass
from typing import Callable, Iterator, List, NamedTuple, Optional, Sequence, Tuple

from ..errors import IntegrityError, RestiqueError, UsageError
from ..model import gojson
from ..model.names import go_unquote
from ..model.node import Node, decode_tree_lazy
from ..model.paths import go_clean
from .walker import TreeLoader, walk, walk_events

SORT_MODES = ("name", "size", "time", "mtime", "atime", "ctime", "extension")

OnError = Callable[[str, Exception], None]


# kinds of LsItem
LISTED = 0  # an entry the listing shows
PREFIX = 1  # a directory on the way to a directory argument: walked, not listed
LEAVE = 2  # the end of a directory (LISTED or PREFIX) whose entries came before


class LsItem(NamedTuple):
    path: str
    node: Node
    kind: int = LISTED


@dataclass
class LsOptions:
    """dirs: absolute directories inside the snapshot to list (none: everything).
    recursive: list everything below dirs, not only their direct entries.
    sort: name (walk order) | size | time = mtime | atime | ctime | extension; ties in
    path order. reverse: the other way round."""

    dirs: Sequence[str] = ()
    recursive: bool = False
    sort: str = "name"
    reverse: bool = False

    def validate(self) -> None:
        if self.sort not in SORT_MODES:
            raise UsageError(f'invalid sort mode "{self.sort}", must be one of '
                             "(name|size|time=mtime|atime|ctime|extension)")
        if any(not d.startswith("/") for d in self.dirs):
            raise UsageError("All path filters must be absolute, starting with a forward slash '/'")

    @property
    def sorted(self) -> bool:
        return self.sort != "name" or self.reverse


def has_path_prefix(base: str, path: str) -> bool:
    """path is base or lies below it (both clean and absolute)."""
    return path == base or base == "/" or path.startswith(base + "/")


class _Selection:
    """Which entries a listing shows and which directories it enters."""

    def __init__(self, dirs: Sequence[str], recursive: bool):
        self.dirs = [go_clean(d) for d in dirs]
        self.recursive = recursive

    def listed(self, path: str) -> bool:
        return not self.dirs or any(has_path_prefix(d, path) for d in self.dirs)

    def on_the_way(self, path: str) -> bool:
        return not self.dirs or any(has_path_prefix(path, d) for d in self.dirs)


def tree_loader(repo, names_only: bool = False) -> Callable[[str], List[Node]]:
    """Loads the trees of one snapshot's walk. names_only: the entries decode their other
    fields on first use (LazyNode), which makes a listing of names about twice as fast;
    otherwise all at once, which is cheaper when every field is used. Nothing is cached:
    within one snapshot a tree recurs only where folders are identical (restic's ls also
    loads it again)."""
    if not names_only:
        return TreeLoader(repo, cache_bytes=0)

    def load(tree_id: str) -> List[Node]:
        raw = repo.load_blob("tree", tree_id)
        try:
            nodes = decode_tree_lazy(raw)
        except (ValueError, TypeError, AttributeError, KeyError) as exc:
            raise IntegrityError(f"tree {tree_id[:8]} is damaged: {exc}") from None
        nodes.sort(key=lambda node: node.name.encode("utf-8", "surrogateescape"))
        return nodes

    return load


def ls_items(repo, tree_id: str, options: Optional[LsOptions] = None, on_error: Optional[OnError] = None,
             loader: Optional[Callable[[str], List[Node]]] = None) -> Iterator[LsItem]:
    """The walk of a listing in tree order: LISTED entries, PREFIX directories, and a LEAVE
    after every directory of either kind (right after it when it is not entered or its
    subtree cannot be loaded). Without on_error a damaged subtree raises."""
    options = options or LsOptions()
    options.validate()
    select = _Selection(options.dirs, options.recursive) if options.dirs else None
    entering: dict = {}  # directory path -> whether its subtree is walked
    failed: List[str] = []  # paths whose trees could not be loaded, since the last item

    def descend(path: str, node: Node) -> bool:
        return entering.pop(path, False)

    def report(path: str, exc: Exception) -> None:
        failed.append(path)
        on_error(path, exc)

    events = walk_events(repo, tree_id, descend=descend if select else None,
                         on_error=report if on_error else None, loader=loader or tree_loader(repo))
    open_dir: Optional[LsItem] = None  # the directory yielded last, if it is to be entered
    for path, node, leaving in events:
        if failed:
            if open_dir is not None and failed[-1] == open_dir.path:
                yield open_dir._replace(kind=LEAVE)  # entered, but its subtree is missing
            failed.clear()
        open_dir = None
        if leaving:
            yield LsItem(path, node, LEAVE)
            continue
        if select is None:  # everything, without per-entry checks
            item = LsItem(path, node, LISTED)
            yield item
            if node.type == "dir":
                open_dir = item
            continue
        listed = select.listed(path)
        enter = listed and select.recursive or select.on_the_way(path)
        if not listed and not enter:
            continue
        item = LsItem(path, node, LISTED if listed else PREFIX)
        yield item
        if node.type == "dir":
            if enter:
                entering[path] = True
                open_dir = item
            else:
                yield LsItem(path, node, LEAVE)
    if failed and open_dir is not None and failed[-1] == open_dir.path:
        yield open_dir._replace(kind=LEAVE)


def ls(repo, tree_id: str, options: Optional[LsOptions] = None, on_error: Optional[OnError] = None,
       loader: Optional[Callable[[str], List[Node]]] = None) -> Iterator[Tuple[str, Node]]:
    """(path, node) of every entry the listing shows, in tree order, or sorted as options
    say (which collects them all first, as restic does)."""
    options = options or LsOptions()
    if options.dirs:
        entries = ((item.path, item.node) for item in ls_items(repo, tree_id, options, on_error, loader)
                   if item.kind == LISTED)
    else:  # everything: the plain walk, without ls_items' per-entry bookkeeping
        options.validate()
        entries = walk(repo, tree_id, on_error=on_error, loader=loader or tree_loader(repo))
    if not options.sorted:
        yield from entries
        return
    yield from sort_entries(list(entries), options.sort, options.reverse)


def _extension(path: str) -> str:
    """Go's filepath.Ext: from the last dot of the last element (".bashrc" included)."""
    name = path[path.rfind("/") + 1:]
    dot = name.rfind(".")
    return name[dot:] if dot >= 0 else ""


_SORT_KEYS = {
    "size": lambda node: node.size if node.type == "file" else 0,
    "mtime": lambda node: node.mtime.unix_ns,
    "time": lambda node: node.mtime.unix_ns,
    "atime": lambda node: node.atime.unix_ns,
    "ctime": lambda node: node.ctime.unix_ns,
}


def sort_entries(entries: List[Tuple[str, Node]], mode: str, reverse: bool = False) -> List[Tuple[str, Node]]:
    """restic's --sort/--reverse: by the mode's key, then by path (bytewise); `name` keeps
    the given (tree) order; reverse turns the result round."""
    def path_bytes(path: str) -> bytes:
        return path.encode("utf-8", "surrogateescape")

    if mode == "extension":
        entries = sorted(entries, key=lambda e: (path_bytes(_extension(e[0])), path_bytes(e[0])))
    elif mode != "name":
        key = _SORT_KEYS[mode]
        entries = sorted(entries, key=lambda e: (key(e[1]), path_bytes(e[0])))
    else:
        entries = list(entries)
    if reverse:
        entries.reverse()
    return entries


# --- the plain listing: every path in tree order, nothing else ---

_IS_ID = re.compile("[0-9a-f]{64}").fullmatch
Entry = Tuple[str, str, Optional[str]]  # name, type, subtree


def list_paths(repo, tree_id: str, on_error: Optional[OnError] = None) -> Iterator[str]:
    """The paths ls(repo, tree_id) lists with default options, from the trees' entries as
    (name, type, subtree) without nodes: `ls` without --long spends most of its time here.
    Errors as ls reports them."""
    root = _names_or_error(repo, "/", tree_id, on_error)
    if root is None:
        return
    stack = [("/", iter(root))]  # (path prefix, entries left)
    while stack:
        prefix, entries = stack[-1]
        for name, kind, subtree in entries:
            path = prefix + name
            yield path
            if kind == "dir":
                if not subtree:
                    exc = IntegrityError(f"directory {path} has no subtree")
                    if on_error is None:
                        raise exc
                    on_error(path, exc)
                    continue
                sub = _names_or_error(repo, path, subtree, on_error)
                if sub is not None:
                    stack.append((path + "/", iter(sub)))
                    break  # continue with the subtree; this level resumes afterwards
        else:
            stack.pop()


def _names_or_error(repo, path: str, tree_id: str, on_error: Optional[OnError]) -> Optional[List[Entry]]:
    try:
        return tree_names(repo, tree_id)
    except (RestiqueError, OSError, EOFError) as exc:
        if on_error is None:
            raise
        on_error(path, exc)
        return None


def tree_names(repo, tree_id: str) -> List[Entry]:
    """(name, type, subtree) of a tree's entries in walk order, as the nodes of
    tree_loader(repo, names_only=True) have them; the same error for a damaged tree (any
    entry out of the ordinary is left to that decoding, which finds the error)."""
    raw = repo.load_blob("tree", tree_id)
    entries: List[Entry] = []
    append = entries.append
    in_order = True
    previous = ""
    try:
        for obj in gojson.loads(raw).get("nodes") or []:
            get = obj.get
            name, kind, subtree = get("name", ""), get("type", ""), get("subtree")
            if type(name) is not str or type(kind) is not str or (
                    subtree is not None and not (type(subtree) is str and _IS_ID(subtree))):
                raise TypeError("unusual entry")
            if "\\" in name:
                name = go_unquote(name)
            if in_order and (name < previous or not name.isascii()):
                in_order = False  # not in order, or not sure: sorted bytewise below
            previous = name
            append((name, kind, subtree))
    except (ValueError, TypeError, AttributeError, KeyError):
        entries = [(node.name, node.type, node.subtree) for node in tree_loader(repo, True)(tree_id)]
        return entries  # no error there: tree_loader already sorted them
    if not in_order:
        entries.sort(key=lambda entry: entry[0].encode("utf-8", "surrogateescape"))
    return entries
