"""Translation of patterns into regular expressions over the whole path string (the fast
path), and the test for components where Go's byte-wise matching can differ from it."""
from __future__ import annotations

import re

from .pattern_parse import ANY, STAR, has_special, is_surrogate, parse_component

_DSTAR_RX = "(?:/[^/]*)*"
_END_RX = r"(?=/|\Z)"


def _subtract(ranges: list[tuple[int, int]], lo: int, hi: int) -> list[tuple[int, int]]:
    out = []
    for a, b in ranges:
        if b < lo or a > hi:
            out.append((a, b))
            continue
        if a < lo:
            out.append((a, lo - 1))
        if b > hi:
            out.append((hi + 1, b))
    return out


def _class_regex(negated: bool, ranges: list[tuple[int, int]]) -> str:
    ranges = [(lo, hi) for lo, hi in ranges if lo <= hi]
    # Go decodes an undecodable byte of the name as U+FFFD; valid UTF-8 never yields a
    # surrogate, and '/' never occurs inside a component.
    has_fffd = any(lo <= 0xFFFD <= hi for lo, hi in ranges)
    ranges = _subtract(_subtract(ranges, 0xD800, 0xDFFF), 0x2F, 0x2F)
    if has_fffd:
        ranges.append((0xDC80, 0xDCFF))
    if negated:
        ranges.append((0x2F, 0x2F))
    elif not ranges:
        return "(?!)"
    items = "".join(
        f"\\U{lo:08x}" if lo == hi else f"\\U{lo:08x}-\\U{hi:08x}" for lo, hi in ranges
    )
    return f"[{'^' if negated else ''}{items}]"


def component_regex(part: str) -> str:
    """Regex for one (valid) component, not crossing a '/'."""
    if not has_special(part):
        return re.escape(part)
    out = []
    for tok in parse_component(part):
        if tok is STAR:
            out.append("[^/]*")
        elif tok is ANY:
            out.append("[^/]")
        elif tok[0] == "lit":
            out.append(re.escape(tok[1]))
        else:
            out.append(_class_regex(tok[1], tok[2]))
    return "".join(out)


def component_risky(part: str) -> bool:
    """Could Go's byte-wise matching of this component differ from the regex on non-ASCII?"""
    if any(is_surrogate(c) for c in part):
        return True
    if not has_special(part):
        return False
    toks = parse_component(part)
    return any(
        toks[i] is STAR and (toks[i + 1] is ANY or toks[i + 1][0] == "[")
        for i in range(len(toks) - 1)
    )


def match_body(comps: list, absolute: bool) -> tuple[str, bool]:
    """(regex body, matches everything) from component regexes, None standing for '**'.

    '**' is zero or more components. Matches need not reach the end of the path, so a
    trailing '**' (and a leading one of a relative pattern) is redundant.
    """
    toks: list = []
    for c in comps:
        if c is None and toks and toks[-1] is None:
            continue
        toks.append(c)
    while toks and toks[-1] is None:
        toks.pop()
    if absolute:
        return "".join(_DSTAR_RX if t is None else "/" + t for t in toks), False
    while toks and toks[0] is None:
        toks.pop(0)
    if not toks:
        return "", True  # '**'
    return toks[0] + "".join(_DSTAR_RX if t is None else "/" + t for t in toks[1:]), False


def child_body(comps: list) -> str:
    """childMatch of an absolute pattern: its components up to the first '**' must agree
    with the path's leading components, as far as both go."""
    prefix = []
    for c in comps:
        if c is None:
            break
        prefix.append(c)
    if not prefix:
        return ""
    rx = prefix[-1] + r"(?:/|\Z)"
    for c in reversed(prefix[:-1]):
        rx = c + r"(?:\Z|/" + rx + ")"
    return "/" + rx


def path_regex(pats: list, absolute_path: bool):
    """One regex searching for any of pats (None: none can match).

    An absolute pattern must match at the start of an absolute path; a relative one at
    any component, but not at the "/" that starts an absolute path.
    """
    if any(p.match_all for p in pats):
        return re.compile("")
    alts = []
    anchored = [p.body for p in pats if p.absolute]
    floating = [p.body for p in pats if not p.absolute]
    if anchored and absolute_path:
        alts.append("^(?:" + "|".join(anchored) + ")" + _END_RX)
    if floating:
        lead = "/" if absolute_path else "(?:^|/)"
        alts.append(lead + "(?:" + "|".join(floating) + ")" + _END_RX)
    return re.compile("|".join(alts)) if alts else None
