"""Which snapshot paths a restore selects: restic's --include/--exclude filter."""
from typing import Tuple

from ..model.patterns import PatternList


class Selection:
    """Which snapshot paths to restore: restic's SelectFilter for --include or --exclude.

    include/exclude: pattern strings, or matchers with matches()/child_may_match() (e.g.
    model.patterns.PatternList, one per case sensitivity); only one of the two, as
    RestoreOptions.validate() checks. Calling it with a snapshot path returns (selected, may a
    child of this directory be selected)."""

    def __init__(self, include=None, exclude=None):
        self.include = _matchers(include)
        self.exclude = _matchers(exclude)

    def __call__(self, location: str, is_dir: bool) -> Tuple[bool, bool]:
        if self.exclude:
            selected = not any(m.matches(location) for m in self.exclude)
            return selected, selected and is_dir
        if self.include:
            selected = any(m.matches(location) for m in self.include)
            child = is_dir and any(m.child_may_match(location) for m in self.include)
            return selected, child
        return True, True


def _matchers(spec) -> list:
    if not spec:
        return []
    if hasattr(spec, "matches"):
        return [spec]
    items = list(spec)
    strings = [s for s in items if isinstance(s, str)]
    matchers = [m for m in items if not isinstance(m, str)]
    if strings:
        matchers.append(PatternList(strings))
    return matchers
