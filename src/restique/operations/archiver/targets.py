"""What the snapshot's tree looks like for the paths given on the command line.

restic keeps each path as given: `/srv/data` is stored below `srv/data` (the parents are
real directories with their own metadata), `docs` directly below the root, and `.` puts
the directory's content at the root.
"""
import os
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Tuple, Union


@dataclass
class TargetPath:
    """A path to save with everything below it."""

    fs_path: str


@dataclass
class TargetDir:
    """A directory on the way to one or more targets; only those children are saved."""

    fs_path: Optional[str]  # None for the snapshot root
    children: Dict[str, Union["TargetDir", TargetPath]] = field(default_factory=dict)
    content_of: Optional[str] = None  # `.`-style target: also save all entries of this directory


def _components(path: str) -> Tuple[str, List[str]]:
    """(fs path of the first component's parent, components of the cleaned path)."""
    cleaned = os.path.normpath(path)
    if cleaned.startswith(".."):
        cleaned = os.path.abspath(cleaned)  # outside the current directory: use the full path
    if cleaned.startswith("/"):
        return "/", [c for c in cleaned.split("/") if c]
    if cleaned == ".":
        return ".", []
    return "", cleaned.split("/")


def build_target_tree(paths: List[str]) -> TargetDir:
    root = TargetDir(None)
    for path in paths:
        base, parts = _components(path)
        if not parts:
            root.content_of = os.path.abspath(path)
            continue
        node = root
        fs = os.path.abspath(base or ".")
        for i, part in enumerate(parts):
            fs = os.path.join(fs, part)
            existing = node.children.get(part)
            if i == len(parts) - 1:
                node.children[part] = TargetPath(fs)  # a target covers any deeper target
            elif isinstance(existing, TargetPath):
                break  # already saved in full
            else:
                if existing is None:
                    existing = node.children[part] = TargetDir(fs)
                node = existing
    return root


def absolute_paths(paths: List[str]) -> List[str]:
    """The snapshot's `paths`: absolute, cleaned, in the given order."""
    return [os.path.abspath(p) for p in paths]
