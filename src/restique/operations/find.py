"""`find`: entries matching patterns, or restic objects by id, in the snapshots of a
repository.

Patterns are matched as restic matches them (its filter.Match): against the entry's whole
path in the snapshot, so that a pattern of one name (`*.txt`, `docs`) matches that name in
any position, including a directory on the way (everything below `docs` matches `docs`), a
relative path pattern (`docs/*.txt`) matches consecutive names anywhere, and an absolute
one (`/srv/docs`) the path's beginning; `**` spans directories. A leading `!` is dropped,
the empty pattern matches everything, and ignore_case lower-cases patterns and paths.
Directories no pattern can match below are not entered.

Snapshots are searched newest first (oldest first with reverse). A tree met again, in the
same place (for name-only patterns and id searches: anywhere), after a walk found nothing
below it is not walked again: its result would be the same. Results never depend on the
order of the snapshots, and every tree is loaded through one cache.
"""
import posixpath
from dataclasses import dataclass
from functools import partial
from typing import Callable, Iterator, List, Optional, Sequence, Union

from ..errors import IntegrityError, NotFound, UsageError
from ..model.gotime import GoTime
from ..model.node import Node
from ..model.snapshot import Snapshot
from ..model.snapshot_filter import SnapshotFilter
from .find_objects import FoundObject, IdSet, ObjectPack, ObjectSearch, object_packs, objects_of_packs, parse_ids
from .snapshot_lookup import SnapshotNotFound, find_filtered_snapshots, find_snapshot_id
from .walker import LazyTreeLoader, TreeLoader, walk_events

KINDS = ("path", "blob", "tree", "pack")
_TREE_CACHE_BYTES = 2 << 20
# hits (and references to remembered subtrees) remembered for replay, across a search: each
# holds a node, about a kilobyte
MEMO_ITEMS = 32768

# on_error(snapshot, path, tree id or None, exception): a tree that could not be loaded
OnError = Callable[[Snapshot, str, Optional[str], Exception], None]
Warn = Callable[[str], None]


@dataclass
class FindOptions:
    """patterns: path patterns, or with kind "blob"/"tree"/"pack" ids or id prefixes.
    oldest/newest: only entries modified in that span (path patterns). snapshots: ids,
    prefixes or "latest" to search (default: all matching snapshot_filter). reverse: oldest
    snapshot first. show_pack_id: after the walk, where the index puts the searched objects."""

    patterns: Sequence[str] = ()
    kind: str = "path"
    ignore_case: bool = False
    oldest: Optional[GoTime] = None
    newest: Optional[GoTime] = None
    snapshots: Sequence[str] = ()
    snapshot_filter: Optional[SnapshotFilter] = None
    reverse: bool = False
    show_pack_id: bool = False

    def validate(self) -> None:
        """restic's checks, before the repository is opened; patterns and ids are checked
        for their syntax too (restic only fails on a bad pattern once it uses it)."""
        if not self.patterns:
            raise UsageError("wrong number of arguments")
        if self.kind not in KINDS:
            raise UsageError(f"unknown kind of search {self.kind!r}")
        if self.oldest is not None and self.newest is not None and self.oldest.unix_ns > self.newest.unix_ns:
            raise UsageError("--oldest must specify a time before --newest")
        if self.kind == "path":
            PathPatterns(self.patterns, self.ignore_case)
        else:
            parse_ids(self.patterns)


@dataclass(frozen=True)
class FoundEntry:
    """An entry matching the patterns: its path in the snapshot and its node."""

    snapshot: Snapshot
    path: str
    node: Node


Found = Union[FoundEntry, FoundObject, ObjectPack]


class PathPatterns:
    """The patterns as restic's find applies them: an entry matches when any pattern does."""

    def __init__(self, patterns: Sequence[str], ignore_case: bool = False):
        from ..model.patterns import InvalidPatternError, PatternList

        self.match_all = "" in patterns
        converted = {_plain_pattern(p): p for p in patterns if p != ""}
        try:
            self._list = PatternList(list(converted), case_insensitive=ignore_case) if converted else None
        except InvalidPatternError as exc:
            raise InvalidPatternError([converted.get(p, p) for p in exc.patterns]) from None
        # a name pattern matches a path when it matches any of its names: what it finds
        # below a directory whose own path it does not match does not depend on that path
        self.names_only = not self.match_all and all("/" not in posixpath.normpath(p) for p in converted)

    def matches(self, path: str) -> bool:
        return self.match_all or self._list.matches(path)

    def may_match_below(self, path: str) -> bool:
        return self.match_all or self._list.child_may_match(path)


def _plain_pattern(pattern: str) -> str:
    """The pattern for a PatternList meaning what filter.Match makes of it: its leading `!`
    is dropped, not a negation (a second one is kept as a literal `!`)."""
    if not pattern.startswith("!"):
        return pattern
    rest = pattern[1:]
    if rest == "":
        return "."  # restic cleans the empty rest to ".", which no path component equals
    return "\\" + rest if rest.startswith("!") else rest


def select_snapshots(repo, ids: Sequence[str], snapshot_filter: Optional[SnapshotFilter],
                     reverse: bool = False, warn: Optional[Warn] = None) -> List[Snapshot]:
    """The snapshots to search, newest first (oldest first with reverse). Every id must name
    a snapshot (NotFound otherwise, as current restic); "latest" honours the filter."""
    filt = snapshot_filter or SnapshotFilter()
    for spec in ids:
        if ":" in spec:
            raise UsageError("<snapshot>:<subfolder> syntax not allowed")
        try:
            find_snapshot_id(repo, spec, filt)
        except SnapshotNotFound as exc:
            if spec == "latest" and exc.reason == "no snapshot found":
                raise NotFound(f"no snapshot matched given filter ({filt.describe()})") from None
            raise NotFound(exc.reason) from None
    snapshots = find_filtered_snapshots(repo, ids, filt, warn=warn or (lambda message: None))
    snapshots.sort(key=lambda sn: (sn.time.unix_ns, sn.id), reverse=not reverse)
    return snapshots


def find(repo, options: FindOptions, on_error: Optional[OnError] = None,
         warn: Optional[Warn] = None) -> Iterator[Found]:
    """Everything the search finds, snapshot by snapshot in walk order: FoundEntry for path
    patterns, FoundObject for ids; then, with show_pack_id, an ObjectPack per object.

    A tree that cannot be loaded goes to on_error and the search goes on without it (without
    on_error the exception is raised). warn gets restic's warnings (a damaged snapshot file,
    filters ignored beside ids, pack files missing)."""
    options.validate()
    warn = warn or (lambda message: None)
    repo.load_index()
    search = None
    if options.kind != "path":
        ids = parse_ids(options.patterns)
        if options.kind == "pack":
            search = ObjectSearch(*objects_of_packs(repo, ids, warn))
        elif options.kind == "blob":
            search = ObjectSearch(IdSet(ids), IdSet())
        else:
            search = ObjectSearch(IdSet(), IdSet(ids))
    patterns = PathPatterns(options.patterns, options.ignore_case) if search is None else None
    snapshots = select_snapshots(repo, options.snapshots, options.snapshot_filter, options.reverse, warn)
    # A search by name looks closely only at the entries it finds: the rest decode lazily.
    # Trees with nothing found are not walked again (the memo), so the cache serves the trees
    # on the way to what is found; it keeps the first trees loaded (the top of the first
    # snapshot, met again in every other), small because decoded trees weigh several times
    # their size and a bigger cache was measured to bring nothing but memory use.
    loader = (LazyTreeLoader if search is None else TreeLoader)(repo, cache_bytes=_TREE_CACHE_BYTES, evict=False)
    walker = _SnapshotWalker(repo, on_error, loader)
    for sn in snapshots:
        if search is not None:
            yield from walker.search_objects(sn, search)
        else:
            yield from walker.search_paths(sn, patterns, options.oldest, options.newest)
    if search is not None and options.show_pack_id:
        yield from object_packs(repo, search)


class _SnapshotWalker:
    """Walks the snapshots of one search through one tree cache, remembering what was found
    below each subtree walked (by tree id, or by tree id and path where the patterns look at
    more than names): a subtree met again is not walked, its hits are replayed."""

    def __init__(self, repo, on_error: Optional[OnError], loader: TreeLoader):
        self.repo = repo
        self.on_error = on_error
        self.loader = loader
        self.empty: set = set()  # memo keys of subtrees with nothing found below
        self.found: dict = {}  # memo key -> what was found below (see _replay)
        self._recording_left = MEMO_ITEMS

    def search_paths(self, sn: Snapshot, patterns: PathPatterns, oldest: Optional[GoTime],
                     newest: Optional[GoTime]) -> Iterator[FoundEntry]:
        lowest = oldest.unix_ns if oldest is not None else None
        highest = newest.unix_ns if newest is not None else None
        last_dir = [False, False]  # the directory visited last: matched, to be entered

        def visit(path: str, node: Node, parent_tree: str):
            matched = patterns.matches(path)
            is_dir = node.type == "dir"
            if is_dir:
                last_dir[0], last_dir[1] = matched, False
            hit = False
            if matched:  # reading mtime decodes the whole entry: a damaged one fails here
                mtime = node.mtime.unix_ns
                hit = (lowest is None or mtime >= lowest) and (highest is None or mtime <= highest)
            if is_dir:  # restic enters it if it is a hit or a child may match
                last_dir[1] = hit or patterns.may_match_below(path)
            return [FoundEntry(sn, path, node)] if hit else None

        def entry_key(path: str, node: Node):
            if not last_dir[1]:
                return False, None
            if patterns.names_only:  # below a matched directory everything matches
                return True, None if last_dir[0] else node.subtree
            return True, (node.subtree, path)

        root_key = sn.tree if patterns.names_only else (sn.tree, "/")
        yield from self._walk(sn, visit, entry_key, root_key, replay=True)

    def search_objects(self, sn: Snapshot, search: ObjectSearch) -> Iterator[FoundObject]:
        if sn.tree:
            yield from search.root(sn, sn.tree)

        def visit(path: str, node: Node, parent_tree: str):
            return search.visit(sn, path, node, parent_tree)

        yield from self._walk(sn, visit, lambda path, node: (True, node.subtree), sn.tree, replay=False)

    def _walk(self, sn: Snapshot, visit, entry_key, root_key, replay: bool) -> Iterator:
        """visit(path, node, parent tree id) -> hits or None for every entry walked;
        entry_key(path, node) -> (enter?, memo key or None) for every directory. With replay
        (FoundEntry hits only), a subtree whose hits are remembered yields them again at
        its path instead of being walked."""
        known = self._known_root(sn, root_key, replay)
        if known is not None:
            yield from known
            return
        # one frame per tree entered, see _Frame
        stack = [_Frame(sn.tree, "/", root_key, [] if replay and self._recording_left > 0 else None)]
        replays: list = []  # (path, remembered hits) of directories not entered, to yield next
        descend = partial(self._descend, entry_key, replay, stack, replays)
        failed = partial(self._failed, sn, stack)
        for path, node, leaving in walk_events(self.repo, sn.tree, "/", descend, failed, self.loader):
            if replays:
                yield from self._replayed(sn, stack, replays)
            if leaving:
                self._leave(stack)
                continue
            frame = stack[-1]
            try:
                hits = visit(path, node, frame.tree_id)
            except IntegrityError as exc:  # an entry whose fields cannot be decoded
                frame.errors = True
                self._report(sn, path, frame.tree_id, exc)
                continue
            if hits:
                self._record(stack, hits)
                yield from hits
        if replays:
            yield from self._replayed(sn, stack, replays)
        root = stack[0]
        if not root.errors:
            self._remember(root)

    def _known_root(self, sn: Snapshot, root_key, replay: bool) -> Optional[Iterator]:
        """What the snapshot yields when its root tree need not be walked (None: walk it)."""
        if not sn.tree:
            self._report(sn, "/", None, NotFound(f"snapshot {sn.short_id} has no tree"))
            return iter(())
        if root_key in self.empty:
            return iter(())
        if replay and root_key in self.found:
            return _replay(sn, "/", self.found[root_key])
        return None

    def _descend(self, entry_key, replay: bool, stack: List["_Frame"], replays: list, path: str, node: Node) -> bool:
        """walk_events' descend: whether to enter the directory; its remembered hits, when
        it is not entered for them, go to replays."""
        enter, key = entry_key(path, node)
        if not enter:
            return False
        if key is not None:
            if key in self.empty:
                return False
            if replay:
                remembered = self.found.get(key)
                if remembered is not None:
                    replays.append((path, remembered))
                    return False
        parent = stack[-1]
        stack.append(_Frame(node.subtree, path, key, [] if parent.recorded is not None else None))
        return True

    def _failed(self, sn: Snapshot, stack: List["_Frame"], path: str, exc: Exception) -> None:
        """walk_events' failed: a tree that could not be loaded."""
        tree_id = stack[-1].tree_id
        if len(stack) > 1 and stack[-1].path == path:
            stack.pop()
        stack[-1].errors = True  # a damaged tree inside: never remembered
        self._report(sn, path, tree_id, exc)

    def _record(self, stack: List["_Frame"], hits: list) -> None:
        """Counts the hits of an entry of the innermost tree, and records them for replay."""
        frame = stack[-1]
        frame.hits += len(hits)
        if frame.recorded is not None:
            cut = len(frame.prefix)
            frame.recorded.extend((hit.path[cut:], hit.node, None) for hit in hits)
            self._count_recorded(stack, len(hits))

    def _replayed(self, sn: Snapshot, stack: List["_Frame"], replays: list) -> Iterator[FoundEntry]:
        """The remembered hits of the directories in replays, entries of the innermost tree."""
        frame = stack[-1]
        for path, remembered in replays:
            frame.hits += 1
            if frame.recorded is not None:
                frame.recorded.append((path[len(frame.prefix):], None, remembered))
                self._count_recorded(stack, 1)
            yield from _replay(sn, path + "/", remembered)
        replays.clear()

    def _leave(self, stack: List["_Frame"]) -> None:
        frame = stack.pop()
        parent = stack[-1]
        if frame.errors:
            parent.errors = True
            return
        self._remember(frame)
        parent.hits += frame.hits
        if parent.recorded is not None:
            if frame.recorded is None:
                parent.recorded = None  # what was found below is not known in full
            elif frame.hits:
                parent.recorded.append((frame.path[len(parent.prefix):], None, frame.remembered))
                self._count_recorded(stack, 1)

    def _remember(self, frame: "_Frame") -> None:
        if frame.key is None:
            frame.remembered = tuple(frame.recorded) if frame.recorded is not None else None
        elif not frame.hits:
            self.empty.add(frame.key)
        elif frame.recorded is not None:
            frame.remembered = self.found[frame.key] = tuple(frame.recorded)

    def _count_recorded(self, stack: List["_Frame"], items: int) -> None:
        """Stops recording (in every frame) once the memory set aside for it is used up."""
        self._recording_left -= items
        if self._recording_left <= 0:
            for frame in stack:
                frame.recorded = None

    def _report(self, sn: Snapshot, path: str, tree_id: Optional[str], exc: Exception) -> None:
        if self.on_error is None:
            raise exc
        self.on_error(sn, path, tree_id, exc)


class _Frame:
    """A tree being walked: its id and directory path, its memo key (None: not remembered),
    the hits below it so far, whether an error was met below it, and what was found below
    it so far for replay (None when it is not recorded)."""

    __slots__ = ("tree_id", "path", "prefix", "key", "hits", "errors", "recorded", "remembered")

    def __init__(self, tree_id: str, path: str, key, recorded: Optional[list]):
        self.tree_id = tree_id
        self.path = path
        self.prefix = path if path.endswith("/") else path + "/"
        self.key = key
        self.hits = 0
        self.errors = False
        self.recorded = recorded
        self.remembered: Optional[tuple] = None


def _replay(sn: Snapshot, prefix: str, remembered: tuple) -> Iterator[FoundEntry]:
    """FoundEntry for each remembered hit below the directory whose path is prefix (ending
    in "/"). remembered holds (path below prefix, node, None) for a hit and (path below
    prefix, None, remembered) for a directory whose own hits were remembered."""
    stack = [(prefix, iter(remembered))]
    while stack:
        prefix, items = stack[-1]
        for relative, node, below in items:
            if below is None:
                yield FoundEntry(sn, prefix + relative, node)
            else:
                stack.append((prefix + relative + "/", iter(below)))
                break
        else:
            stack.pop()
