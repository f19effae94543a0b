"""Pattern syntax: restic's preparePattern (filepath.Clean, split at ``/``, ``!`` negation)
and the tokens of one component in Go's filepath.Match syntax."""
from __future__ import annotations

from .paths import go_clean

STAR = ("*",)
ANY = ("?",)
SPECIAL_CHARS = frozenset("\\[]*?")


class BadPattern(Exception):
    """A component filepath.Match would reject (ErrBadPattern)."""


def has_special(part: str) -> bool:
    """Does the component hold a wildcard or escape (else it matches literally)?"""
    return bool(SPECIAL_CHARS & set(part))


def is_surrogate(ch: str) -> bool:
    return "\ud800" <= ch <= "\udfff"


def split_path(s: str) -> list[str]:
    """filter.splitPath: components, with "/" as the first one of an absolute path."""
    parts = s.split("/")
    if parts[0] == "":
        parts[0] = "/"
    return parts


def prepare(pattern: str) -> tuple[bool, list[str]]:
    """filter.preparePattern: (negated, parts) with '' standing for '**' (as in restic)."""
    negated = pattern[0] == "!"
    if negated:
        pattern = pattern[1:]
    parts = split_path(go_clean(pattern))
    return negated, ["" if p == "**" else p for p in parts]


def _get_esc(p: str, i: int) -> tuple[int, int]:
    """filepath.getEsc: one (possibly escaped) class character -> (code point, next index)."""
    n = len(p)
    if i >= n or p[i] == "-" or p[i] == "]":
        raise BadPattern
    if p[i] == "\\":
        i += 1
        if i >= n:
            raise BadPattern
    if is_surrogate(p[i]):  # an invalid UTF-8 byte inside a class
        raise BadPattern
    i += 1
    if i >= n:
        raise BadPattern
    return ord(p[i - 1]), i


def _parse_class(p: str, i: int) -> tuple[tuple, int]:
    """A ``[...]`` class starting after its ``[`` -> (token, next index)."""
    n = len(p)
    negated = i < n and p[i] == "^"
    if negated:
        i += 1
    ranges: list[tuple[int, int]] = []
    while True:
        if i < n and p[i] == "]" and ranges:
            return ("[", negated, ranges), i + 1
        lo, i = _get_esc(p, i)
        hi = lo
        if p[i] == "-":
            hi, i = _get_esc(p, i + 1)
        ranges.append((lo, hi))


def parse_component(p: str) -> list[tuple]:
    """Tokens of one pattern component; raises BadPattern where filepath.Match would.

    Tokens: STAR (runs of ``*`` collapse), ANY, ``("lit", ch)`` and
    ``("[", negated, [(lo, hi), ...])``.
    """
    toks: list[tuple] = []
    i = 0
    n = len(p)
    while i < n:
        c = p[i]
        if c == "*":
            if not toks or toks[-1] is not STAR:
                toks.append(STAR)
            i += 1
        elif c == "?":
            toks.append(ANY)
            i += 1
        elif c == "\\":
            if i + 1 >= n:
                raise BadPattern
            toks.append(("lit", p[i + 1]))
            i += 2
        elif c == "[":
            tok, i = _parse_class(p, i + 1)
            toks.append(tok)
        else:
            toks.append(("lit", c))
            i += 1
    return toks


def component_valid(part: str) -> bool:
    try:
        parse_component(part)
    except BadPattern:
        return False
    return True
