"""restic's path patterns (its internal/filter package), for --exclude/--iexclude/--include.

Semantics, as restic 0.14 implements them:

* A pattern is cleaned like Go's ``filepath.Clean`` (so a trailing ``/``, ``//`` and ``.``
  components vanish, ``..`` is resolved) and split at ``/``; a leading ``/`` makes it
  absolute. A leading ``!`` (stripped before cleaning) negates it.
* Each component is a Go ``filepath.Match`` pattern (``*``, ``?``, ``[...]``/``[^...]``,
  ``\\`` escapes) matched against one path component; ``**`` alone is a component that
  matches any number (also zero) of components.
* An absolute pattern must match the path's first components, a relative one any run of
  consecutive components. Neither has to reach the end of the path: ``/a`` and ``a`` both
  match ``/a/b/c`` (everything below a matched directory is matched too).
* In a list the last matching pattern wins: a plain one matches, a negated one un-matches.
* Case insensitive lists lower-case patterns and paths with Go's ``strings.ToLower``.

Matching is compiled once into regular expressions over the whole path string
(pattern_regex). Two rare cases where Go's algorithm differs from the natural regex reading
fall back to a faithful port of restic's code (pattern_port, also the tests' reference):

* Patterns with two or more ``**``: restic bounds each expansion so that every later ``**``
  keeps a component of slack (``/a/**/b/**`` does not match ``/a/x/b`` but matches
  ``/a/x/b/c``). The regex is used as a pre-filter, the port decides.
* Go's ``*`` backtracks byte-wise, so a ``?``/``[...]`` following a ``*`` can start inside a
  multi-byte UTF-8 character (``*??`` matches ``€``), and a pattern holding undecodable bytes
  can match parts of a valid character. Such patterns use the port for non-ASCII paths.
"""
from __future__ import annotations

import re

from restique.errors import UsageError

from .pattern_file import _go_expand, read_pattern_file  # noqa: F401 (_go_expand: tested directly)
from .pattern_parse import component_valid, prepare
from .pattern_port import path_bytes, ref_child_match, ref_match, ref_parts
from .pattern_regex import child_body, component_regex, component_risky, match_body, path_regex

__all__ = ["PatternList", "read_pattern_file", "InvalidPatternError", "option_patterns"]


class InvalidPatternError(UsageError):
    """Raised by PatternList for malformed patterns.

    ``str(err)`` is restic's text without the option name::

        invalid pattern(s) provided:
        <pattern>
        ...

    restic prefixes it with the option it checked (``--exclude: ``, ``--iexclude: ``,
    ``--exclude-file: ``, ``--include: ``, ...): callers re-raise
    ``UsageError(f"--exclude: {err}")``. Like restic 0.14 a pattern is listed once per
    malformed component (``[/[`` appears twice).
    """

    def __init__(self, patterns: list[str]):
        self.patterns = list(patterns)
        super().__init__("invalid pattern(s) provided:\n" + "\n".join(self.patterns))


_UNDECODABLE = re.compile("[\udc80-\udcff]")


def _go_lower(s: str) -> str:
    """Go's strings.ToLower: simple case mapping; undecodable bytes become U+FFFD."""
    if s.isascii():
        return s.lower()
    s = _UNDECODABLE.sub("\ufffd", s)
    # str.lower() uses full case mapping: U+0130 would become two characters and a final
    # capital sigma 'ς'; Go maps them to 'i' and 'σ'.
    return s.replace("\u0130", "i").replace("\u03a3", "\u03c3").lower()


class _Pattern:
    """One pattern: its regexes (fast path) and its parts for the port (fallback)."""

    __slots__ = (
        "original", "negated", "absolute", "body", "match_all", "child_body",
        "exact", "risky", "ref_parts", "rx_abs", "rx_rel", "child_rx",
    )

    def __init__(self, original: str, pattern: str):
        self.original = original
        self.negated, parts = prepare(pattern)
        self.absolute = parts[0] == "/"
        body = parts[1:] if self.absolute else parts
        comps = [None if p == "" else component_regex(p) for p in body]
        # With two or more '**' restic's expansion is more restrictive than the regex.
        self.exact = body.count("") < 2
        self.risky = any(component_risky(p) for p in body if p)
        self.ref_parts = ref_parts(parts)
        self.body, self.match_all = match_body(comps, self.absolute)
        self.child_body = child_body(comps) if self.absolute else None
        self.rx_abs = path_regex([self], True)
        self.rx_rel = path_regex([self], False)
        self.child_rx = None if self.child_body is None else re.compile(self.child_body)

    def ref_match(self, s: str) -> bool:
        return ref_match(self.ref_parts, path_bytes(s))

    def ref_child(self, s: str) -> bool:
        return ref_child_match(self.ref_parts, path_bytes(s))


class _Group:
    """Consecutive patterns of the same sign: one combined regex plus special cases."""

    __slots__ = ("negated", "rx_abs", "rx_rel", "special", "child_always", "child_rx", "child_special")

    def __init__(self, pats: list[_Pattern]):
        self.negated = pats[0].negated
        plain = [p for p in pats if p.exact and not p.risky]
        self.special = [p for p in pats if not (p.exact and not p.risky)]
        self.rx_abs = path_regex(plain, True)
        self.rx_rel = path_regex(plain, False)
        self.child_always = any(not p.absolute for p in pats)
        absolute = [p for p in pats if p.absolute]
        bodies = [p.child_body for p in absolute if not p.risky]
        self.child_rx = re.compile("|".join(f"(?:{b})" for b in bodies)) if bodies else None
        self.child_special = [p for p in absolute if p.risky]

    def search(self, s: str, absolute: bool) -> bool:
        rx = self.rx_abs if absolute else self.rx_rel
        if rx is not None and rx.search(s):
            return True
        if self.special:
            ascii_only = s.isascii()
            for p in self.special:
                if p.risky and not ascii_only:
                    if p.ref_match(s):
                        return True
                    continue
                prx = p.rx_abs if absolute else p.rx_rel
                if prx is None or not prx.search(s):
                    continue
                if p.exact or p.ref_match(s):
                    return True
        return False

    def child(self, s: str, absolute: bool) -> bool:
        if self.child_always:
            return True
        if not absolute:
            return False  # an absolute pattern's "/" never equals a relative first component
        if self.child_rx is not None and self.child_rx.match(s):
            return True
        if self.child_special:
            ascii_only = s.isascii()
            for p in self.child_special:
                if p.child_rx.match(s) if ascii_only else p.ref_child(s):
                    return True
        return False


class PatternList:
    """A list of restic filter patterns (filter.List / filter.ListWithChild)."""

    def __init__(self, patterns: list[str], case_insensitive: bool = False):
        self.patterns = list(patterns)
        self.case_insensitive = case_insensitive
        invalid = []
        for pat in self.patterns:
            if pat == "":
                continue
            _, parts = prepare(pat)
            # restic 0.14's ValidatePatterns lists a pattern once per malformed component
            invalid.extend(pat for part in parts if not component_valid(part))
        if invalid:
            raise InvalidPatternError(invalid)

        compiled = []
        for pat in self.patterns:
            if pat == "":
                continue  # ignored by restic (but still counts for __bool__)
            compiled.append(_Pattern(pat, _go_lower(pat) if case_insensitive else pat))
        groups: list[_Group] = []
        start = 0
        for i in range(1, len(compiled) + 1):
            if i == len(compiled) or compiled[i].negated != compiled[start].negated:
                groups.append(_Group(compiled[start:i]))
                start = i
        self._groups_reversed = groups[::-1]

    def __bool__(self) -> bool:
        """Were any patterns given? Like restic this counts empty patterns, which never match."""
        return bool(self.patterns)

    def __repr__(self) -> str:
        ci = ", case_insensitive=True" if self.case_insensitive else ""
        return f"PatternList({self.patterns!r}{ci})"

    def matches(self, path: str) -> bool:
        """filter.List: does the last pattern matching ``path`` exist and is it not negated?"""
        if not path:
            return False  # restic warns "filter.Match: string is empty" and does not match
        if self.case_insensitive:
            path = _go_lower(path)
        absolute = path[0] == "/"
        for group in self._groups_reversed:
            if group.search(path, absolute):
                return not group.negated
        return False

    def child_may_match(self, path: str) -> bool:
        """childMayMatch of filter.ListWithChild: may a path below ``path`` match?

        Relative patterns may always match further down; an absolute one only when its
        leading components fit ``path``. A later negated pattern matching ``path`` itself
        cancels that.
        """
        if not path:
            return False
        if self.case_insensitive:
            path = _go_lower(path)
        absolute = path[0] == "/"
        for group in self._groups_reversed:
            if group.negated:
                if group.search(path, absolute):
                    return False
            elif group.child(path, absolute):
                return True
        return False


def option_patterns(option: str, patterns: list[str], case_insensitive: bool = False) -> PatternList:
    """The patterns an option gave, compiled; a malformed one is refused in restic's words,
    named by the option (`--exclude: invalid pattern(s) provided: ...`)."""
    try:
        return PatternList(patterns, case_insensitive=case_insensitive)
    except InvalidPatternError as exc:
        raise UsageError(f"{option}: {exc}") from None
