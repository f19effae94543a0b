"""Where a key was written in a TOML text: tomllib gives values without positions, so the
table headers (`[profile.home.backup]`) and `key =` lines are scanned here. Good enough for
messages: a key that cannot be found is reported at the line of its nearest table."""
import re
from typing import Dict, Tuple

_HEADER = re.compile(r"^\s*\[\s*([^\[\]]+?)\s*\]\s*(#.*)?$")
_KEY = re.compile(r"""^\s*((?:[A-Za-z0-9_-]+|"[^"]*"|'[^']*')(?:\s*\.\s*(?:[A-Za-z0-9_-]+|"[^"]*"|'[^']*'))*)\s*=""")
_PART = re.compile(r"""\s*([A-Za-z0-9_-]+|"[^"]*"|'[^']*')\s*(?:\.|$)""")


def _parts(dotted: str) -> Tuple[str, ...]:
    return tuple(part.strip("\"'") for part in _PART.findall(dotted))


class KeyLines:
    """line(*path): the line number (1-based) where the dotted path was first written."""

    def __init__(self, text: str):
        self.lines: Dict[Tuple[str, ...], int] = {}
        table: Tuple[str, ...] = ()
        depth = 0  # inside a multi-line array or string, keys are not keys
        for number, line in enumerate(text.splitlines(), start=1):
            if depth == 0:
                header = _HEADER.match(line)
                if header:
                    table = _parts(header.group(1))
                    self._record(table, number)
                    continue
                key = _KEY.match(line)
                if key:
                    self._record(table + _parts(key.group(1)), number)
            depth = max(0, depth + _nesting(line))

    def _record(self, path: Tuple[str, ...], number: int) -> None:
        for end in range(1, len(path) + 1):  # dotted keys define their tables too
            self.lines.setdefault(path[:end], number)

    def line(self, *path: str) -> int:
        path = tuple(path)
        while path:
            if path in self.lines:
                return self.lines[path]
            path = path[:-1]
        return 1


def _nesting(line: str) -> int:
    """How many brackets a line leaves open, ignoring quoted text and comments (a rough
    count: enough to skip the lines of a multi-line array)."""
    text = re.sub(r'"(?:[^"\\]|\\.)*"|\'[^\']*\'', "", line.split("#", 1)[0] if '"' not in line else line)
    text = text.split("#", 1)[0]
    return text.count("[") - text.count("]") + text.count("{") - text.count("}")
