"""restic's traverseTree: which entries of the snapshot a restore walk visits, and when.

The plan walk goes through it; the finish step replays what the plan walk recorded of it
(recording.py), in the same order, without loading the trees again.
"""
from typing import Callable, Dict, List, Optional

from ...errors import RestiqueError
from ...model.names import child_name_problem
from ..restore_selection import Selection
from ..walker import join, walk_events
from .entries import RestoreTreeLoader
from .report import RestoreReport

# enter_dir(node, target, location); visit_node(node, target, location, parent_target);
# leave_dir(node or None for the root, target, location, names or None, selected=True)
EnterDir = Callable[..., None]
VisitNode = Callable[..., None]
LeaveDir = Callable[..., None]


class _Frame:
    """A directory on the walk's current path."""

    __slots__ = ("location", "node", "target", "selected", "restored", "names")

    def __init__(self, location, node, target, selected):
        self.location = location
        self.node = node
        self.target = target
        self.selected = selected
        self.restored = False
        self.names: List[str] = []


class TreeTraversal:
    """Walks tree_id below target: selected directories are entered (enter_dir), selected
    other entries visited (visit_node), and a directory is left (leave_dir, with the names
    the snapshot has in it) if it was selected or anything below it was restored. Errors of
    the callbacks and of loading trees are reported per entry and the walk goes on."""

    def __init__(self, repo, tree_id: str, target: str, select: Selection, report: RestoreReport):
        self.repo = repo
        self.tree_id = tree_id
        self.target = target
        self.select = select
        self.report = report
        # one walk (the finish step replays it): a small cache for subtrees a snapshot repeats;
        # entries with only what a restore reads
        self.loader = RestoreTreeLoader(repo, cache_bytes=1024 * 1024)
        # False once an entry has an impossible name: something is off with the snapshot,
        # and deleting (--delete, replacing directories) could hit the wrong files
        self.names_valid = True

    def walk(self, enter_dir: Optional[EnterDir], visit_node: Optional[VisitNode],
             leave_dir: Optional[LeaveDir], load_error: Optional[Callable] = None) -> None:
        """load_error(location, exc): also told of each tree that could not be loaded."""
        frames = [_Frame("/", None, self.target, False)]
        descend: Dict[str, bool] = {}

        def on_error(location: str, exc: Exception) -> None:
            self.report.error(location, exc)
            if load_error:
                load_error(location, exc)
            if len(frames) > 1 and frames[-1].location == location:
                frame = frames.pop()  # never entered: no leaving event comes
                if frame.selected and leave_dir:
                    self.guard(location, leave_dir, frame.node, frame.target, location, None)

        events = walk_events(self.repo, self.tree_id, "/", lambda p, n: descend.pop(p, False),
                             on_error, self.loader)
        for location, node, leaving in events:
            if leaving:
                frame = frames.pop()
                if frame.restored:
                    frames[-1].restored = True
                if (frame.selected or frame.restored) and leave_dir:
                    self.guard(location, leave_dir, node, frame.target, location, frame.names,
                                frame.selected)
            elif self._entry(frames, location, node, enter_dir, visit_node, leave_dir):
                descend[location] = True
        root = frames[0]
        if root.restored and leave_dir:
            self.guard("/", leave_dir, None, self.target, "/", root.names, True)

    def _entry(self, frames: List[_Frame], location: str, node, enter_dir, visit_node, leave_dir) -> bool:
        """Handle one entry of the directory frames[-1]; True: walk into it (a frame is pushed)."""
        parent = frames[-1]
        problem = child_name_problem(node.name, parent.names[-1] if parent.names else None)
        parent.names.append(node.name)
        if problem:
            self.report.error(parent.location, problem)
            self.names_valid = False
            return False
        if node.type == "socket":
            return False  # sockets cannot be restored
        target = join(parent.target, node.name)  # a checked name: one plain component
        is_dir = node.type == "dir"
        selected, child_may = self.select(location, is_dir)
        if selected:
            parent.restored = True
        if not is_dir:
            if selected:
                self.guard(location, visit_node, node, target, location, parent.target)
            return False
        if selected and enter_dir:
            self.guard(location, enter_dir, node, target, location)
        if child_may:
            frames.append(_Frame(location, node, target, selected))
            return True
        if selected and leave_dir:
            self.guard(location, leave_dir, node, target, location, None, True)
        return False

    def guard(self, location: str, fn: Callable, *args) -> None:
        try:
            fn(*args)
        except (OSError, RestiqueError) as exc:
            self.report.error(location, exc)
