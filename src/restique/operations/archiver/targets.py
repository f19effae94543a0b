"""What the snapshot's tree looks like for the paths given on the command line, as restic
builds it (its archiver's target tree):

- A target is cleaned lexically, then placed by its components; leading `..` components are
  dropped, so `../a.txt` is stored as `/a.txt` and `/srv/data` below `srv/data`.
- A target with no components left (`.`, `..`, `/`) stands for its entries: each becomes a
  target of its own, but not an explicit one, so excludes still apply to it.
- Directories on the way to a target keep their own metadata, read with stat: a symlinked
  directory in the middle of a target is followed. The target itself is taken as it is.
- Targets below different roots whose first component has the same name (`/x` and `x`)
  are stored as `x` and `x-1`.
- A target that contains another target (`dir` and `dir/sub`) is unrolled into its entries,
  so `dir/sub` stays an explicit target of its own (this matters for `-x`).

Explicit targets (named by the user) are never excluded, as in current restic (0.19+);
everything below them is filtered as usual.
"""
import os
import posixpath
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Tuple, Union

from ...errors import RestiqueError
from ...model.paths import go_clean


@dataclass
class TargetPath:
    """A path to save with everything below it."""

    fs_path: str  # absolute and cleaned
    explicit: bool = True  # named by the user: no exclude applies to it


@dataclass
class TargetDir:
    """A directory on the way to one or more targets; only those children are saved."""

    fs_path: Optional[str]  # None for the snapshot root
    children: Dict[str, Union["TargetDir", TargetPath]] = field(default_factory=dict)


def path_components(path: str) -> List[str]:
    """The components a target is stored under: relative paths lose their leading `..`."""
    return [c for c in go_clean("/" + path).split("/") if c]


def _root_directory(path: str) -> str:
    """The directory that holds the target's first stored component."""
    if path.startswith("/"):
        return "/"
    ups = [c for c in go_clean(path).split("/") if c == ".."]
    return "/".join(ups) if ups else "."


def resolve_targets(paths: List[str]) -> List[Tuple[str, bool]]:
    """(cleaned target, explicit) pairs: `.`-like targets are replaced by their entries."""
    resolved = []
    for path in paths:
        target = go_clean(path)
        if path_components(target):
            resolved.append((target, True))
            continue
        try:
            names = sorted(os.listdir(target))
        except OSError as exc:
            raise RestiqueError(f"unable to save snapshot: Readdirnames {target} failed: "
                                f"{(exc.strerror or str(exc)).lower()}") from None
        resolved.extend((posixpath.join(target, name) if target != "." else name, False) for name in names)
    return resolved


class _Node:
    __slots__ = ("root", "path", "explicit", "info_path", "children")

    def __init__(self, root: str = "", path: Optional[str] = None, explicit: bool = False):
        self.root = root
        self.path = path  # a target saved with all below it (a leaf, until unrolled)
        self.explicit = explicit
        self.info_path: Optional[str] = None  # where an intermediate directory's metadata is read
        self.children: Dict[str, "_Node"] = {}

    def add_below(self, target: str, root: str, parts: List[str], explicit: bool) -> None:
        name = parts[0]
        if len(parts) == 1:
            node = self.children.get(name)
            if node is None:
                self.children[name] = _Node(path=target, explicit=explicit)
            elif node.path is not None:
                raise RestiqueError(f"path is already set for target {target}")
            else:
                node.path, node.explicit = target, explicit
            return
        node = self.children.setdefault(name, _Node())
        node.info_path = posixpath.join(root, name)
        node.add_below(target, node.info_path, parts[1:], explicit)


def _add_top(root: _Node, target: str, explicit: bool) -> None:
    parts = path_components(target)
    base = _root_directory(target)
    name = parts[0]
    node = _Node(root=base)
    suffix = 0
    while name in root.children:
        suffix += 1
        if root.children[name].root == base:
            node = root.children[name]
            break
        name = f"{parts[0]}-{suffix}"
    if len(parts) > 1:
        node.info_path = posixpath.join(base, parts[0])
        node.add_below(target, node.info_path, parts[1:], explicit)
    else:
        node.path, node.explicit = target, explicit
    root.children[name] = node


def _unroll(node: _Node) -> None:
    """A target with targets below it becomes a directory of its entries."""
    if node.path is not None and node.children:
        try:
            names = os.listdir(node.path)
        except OSError as exc:
            raise RestiqueError(f"unable to save snapshot: Readdirnames {node.path} failed: "
                                f"{(exc.strerror or str(exc)).lower()}") from None
        for name in names:
            entry = posixpath.join(node.path, name)
            child = node.children.get(name)
            if child is None:
                node.children[name] = _Node(path=entry)
            elif child.path is None:
                child.path = entry
            elif child.path != entry:
                raise RestiqueError(f"tree unrollTree: collision on path {entry}")
        node.info_path = node.info_path or node.path
        node.path, node.explicit = None, False
    for child in node.children.values():
        _unroll(child)


def _convert(node: _Node) -> Union[TargetDir, TargetPath]:
    if node.path is not None:
        return TargetPath(os.path.abspath(node.path), node.explicit)
    return TargetDir(os.path.abspath(node.info_path),
                     {name: _convert(child) for name, child in node.children.items()})


def build_target_tree(paths: List[str]) -> TargetDir:
    root = _Node()
    seen = set()
    for target, explicit in resolve_targets(paths):
        if target in seen:
            continue
        seen.add(target)
        _add_top(root, target, explicit)
    for child in root.children.values():
        _unroll(child)
    return TargetDir(None, {name: _convert(child) for name, child in root.children.items()})


def absolute_paths(paths: List[str]) -> List[str]:
    """The snapshot's `paths`: absolute, cleaned, in the given order."""
    return [os.path.abspath(p) for p in paths]
