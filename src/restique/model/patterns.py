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

Matching is compiled once into regular expressions over the whole path string. Two rare
cases where Go's algorithm differs from the natural regex reading fall back to a faithful
port of restic's code (kept below, also used by the tests as the reference):

* Patterns with two or more ``**``: restic bounds each expansion so that every later ``**``
  keeps a component of slack (``/a/**/b/**`` does not match ``/a/x/b`` but matches
  ``/a/x/b/c``). The regex is used as a pre-filter, the port decides.
* Go's ``*`` backtracks byte-wise, so a ``?``/``[...]`` following a ``*`` can start inside a
  multi-byte UTF-8 character (``*??`` matches ``€``), and a pattern holding undecodable bytes
  can match parts of a valid character. Such patterns use the port for non-ASCII paths.
"""
from __future__ import annotations

import os
import re

from restique.errors import UsageError

__all__ = ["PatternList", "read_pattern_file", "InvalidPatternError"]


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


class _BadPattern(Exception):
    pass


# ---------------------------------------------------------------------------------------
# Go helpers: filepath.Clean, strings.ToLower, unicode.IsSpace, os.Expand


def _go_clean(path: str) -> str:
    """path/filepath.Clean on Unix."""
    if path == "":
        return "."
    rooted = path[0] == "/"
    out: list[str] = []
    for comp in path.split("/"):
        if comp == "" or comp == ".":
            continue
        if comp == "..":
            if out and out[-1] != "..":
                out.pop()
            elif not rooted:
                out.append("..")
            continue
        out.append(comp)
    cleaned = "/".join(out)
    if rooted:
        return "/" + cleaned
    return cleaned or "."


_UNDECODABLE = re.compile("[\udc80-\udcff]")


def _go_lower(s: str) -> str:
    """Go's strings.ToLower: simple case mapping; undecodable bytes become U+FFFD."""
    if s.isascii():
        return s.lower()
    s = _UNDECODABLE.sub("\ufffd", s)
    # str.lower() uses full case mapping: U+0130 would become two characters and a final
    # capital sigma 'ς'; Go maps them to 'i' and 'σ'.
    return s.replace("\u0130", "i").replace("\u03a3", "\u03c3").lower()


# unicode.IsSpace (strings.TrimSpace); str.strip() would also strip \x1c-\x1f.
_GO_SPACE = "\t\n\v\f\r \x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008\u2009\u200a\u2028\u2029\u202f\u205f\u3000"
_SHELL_SPECIAL = frozenset("*#$@!?-0123456789")
_ALNUM = frozenset("_0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")


def _getenv_or_dollar(name: str) -> str:
    if name == "$":
        return "$"
    return os.environ.get(name, "")


def _go_expand(s: str, mapping=_getenv_or_dollar) -> str:
    """os.Expand (Go >= 1.16: ``${}`` and ``${`` are eaten, ``$`` before a non-name stays)."""
    if "$" not in s:
        return s
    buf: list[str] = []
    i = 0
    j = 0
    n = len(s)
    while j < n:
        if s[j] == "$" and j + 1 < n:
            buf.append(s[i:j])
            name, w = _shell_name(s, j + 1)
            if name == "" and w > 0:
                pass  # invalid syntax: the characters are eaten
            elif name == "":
                buf.append("$")
            else:
                buf.append(mapping(name))
            j += w
            i = j + 1
        j += 1
    buf.append(s[i:])
    return "".join(buf)


def _shell_name(s: str, k: int) -> tuple[str, int]:
    """os.getShellName(s[k:]) -> (name, width)."""
    n = len(s)
    if s[k] == "{":
        if n - k > 2 and s[k + 1] in _SHELL_SPECIAL and s[k + 2] == "}":
            return s[k + 1], 3
        end = s.find("}", k + 1)
        if end == -1:
            return "", 1  # bad syntax: eat "${"
        if end == k + 1:
            return "", 2  # bad syntax: eat "${}"
        return s[k + 1 : end], end - k + 1
    if s[k] in _SHELL_SPECIAL:
        return s[k], 1
    e = k
    while e < n and s[e] in _ALNUM:
        e += 1
    return s[k:e], e - k


# ---------------------------------------------------------------------------------------
# exclude / include files

_MAX_LINE = 64 * 1024  # bufio.MaxScanTokenSize


def _os_error_message(op: str, path: str, err: OSError) -> str:
    text = err.strerror or str(err)
    return f"{op} {path}: {text[:1].lower()}{text[1:]}"


def read_pattern_file(path: str) -> list[str]:
    """Patterns from an --exclude-file/--include-file, read as restic does.

    A UTF-8 BOM is dropped and UTF-16 (with BOM) converted; each line is stripped of
    leading/trailing white space; blank lines and lines starting with ``#`` are skipped;
    ``$VAR``/``${VAR}`` are expanded (unset variables become empty, ``$$`` is a ``$``).
    Raises UsageError with restic's message (``open <file>: no such file or directory``,
    ``read <dir>: is a directory``, ``bufio.Scanner: token too long``); note that restic
    prints these without a ``Fatal:`` prefix.
    """
    try:
        with open(path, "rb") as f:
            data = f.read()
    except IsADirectoryError as err:  # Go opens directories and fails reading them
        raise UsageError(_os_error_message("read", path, err)) from None
    except OSError as err:
        raise UsageError(_os_error_message("open", path, err)) from None

    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    elif data.startswith((b"\xfe\xff", b"\xff\xfe")):
        data = data.decode("utf-16", "replace").encode("utf-8", "surrogatepass")

    lines = data.split(b"\n")
    if lines and lines[-1] == b"":
        lines.pop()
    patterns: list[str] = []
    for raw in lines:
        if len(raw) >= _MAX_LINE:
            raise UsageError("bufio.Scanner: token too long")
        if raw.endswith(b"\r"):
            raw = raw[:-1]
        line = raw.decode("utf-8", "surrogateescape").strip(_GO_SPACE)
        if not line or line.startswith("#"):
            continue
        patterns.append(_go_expand(line))
    return patterns


# ---------------------------------------------------------------------------------------
# pattern components: parsing (Go's filepath.Match syntax) and translation to regex

_STAR = ("*",)
_ANY = ("?",)
_SPECIAL_CHARS = frozenset("\\[]*?")


def _is_surrogate(ch: str) -> bool:
    return "\ud800" <= ch <= "\udfff"


def _get_esc(p: str, i: int) -> tuple[int, int]:
    """filepath.getEsc: one (possibly escaped) class character -> (code point, next index)."""
    n = len(p)
    if i >= n or p[i] == "-" or p[i] == "]":
        raise _BadPattern
    if p[i] == "\\":
        i += 1
        if i >= n:
            raise _BadPattern
    if _is_surrogate(p[i]):  # an invalid UTF-8 byte inside a class
        raise _BadPattern
    i += 1
    if i >= n:
        raise _BadPattern
    return ord(p[i - 1]), i


def _parse_component(p: str) -> list[tuple]:
    """Tokens of one pattern component; raises _BadPattern where filepath.Match would."""
    toks: list[tuple] = []
    i = 0
    n = len(p)
    while i < n:
        c = p[i]
        if c == "*":
            if not toks or toks[-1] is not _STAR:
                toks.append(_STAR)
            i += 1
        elif c == "?":
            toks.append(_ANY)
            i += 1
        elif c == "\\":
            if i + 1 >= n:
                raise _BadPattern
            toks.append(("lit", p[i + 1]))
            i += 2
        elif c == "[":
            i += 1
            negated = i < n and p[i] == "^"
            if negated:
                i += 1
            ranges: list[tuple[int, int]] = []
            while True:
                if i < n and p[i] == "]" and ranges:
                    i += 1
                    break
                lo, i = _get_esc(p, i)
                hi = lo
                if p[i] == "-":
                    hi, i = _get_esc(p, i + 1)
                ranges.append((lo, hi))
            toks.append(("[", negated, ranges))
        else:
            toks.append(("lit", c))
            i += 1
    return toks


def _component_valid(part: str) -> bool:
    try:
        _parse_component(part)
    except _BadPattern:
        return False
    return True


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


def _component_regex(part: str) -> str:
    if not (_SPECIAL_CHARS & set(part)):
        return re.escape(part)
    out = []
    for tok in _parse_component(part):
        if tok is _STAR:
            out.append("[^/]*")
        elif tok is _ANY:
            out.append("[^/]")
        elif tok[0] == "lit":
            out.append(re.escape(tok[1]))
        else:
            out.append(_class_regex(tok[1], tok[2]))
    return "".join(out)


def _component_risky(part: str) -> bool:
    """Could Go's byte-wise matching of this component differ from the regex on non-ASCII?"""
    if any(_is_surrogate(c) for c in part):
        return True
    if not (_SPECIAL_CHARS & set(part)):
        return False
    toks = _parse_component(part)
    return any(
        toks[i] is _STAR and (toks[i + 1] is _ANY or toks[i + 1][0] == "[")
        for i in range(len(toks) - 1)
    )


# ---------------------------------------------------------------------------------------
# faithful port of restic's filter.go over bytes (Go strings are bytes)


def _decode_rune(b: bytes, i: int) -> tuple[int, int]:
    """utf8.DecodeRune(b[i:]) -> (rune, width); invalid input gives (0xFFFD, 1)."""
    c = b[i]
    if c < 0x80:
        return c, 1
    width = 2 if 0xC2 <= c <= 0xDF else 3 if 0xE0 <= c <= 0xEF else 4 if 0xF0 <= c <= 0xF4 else 0
    if width:
        try:
            return ord(b[i : i + width].decode("utf-8")), width
        except UnicodeDecodeError:
            pass
    return 0xFFFD, 1


def _go_get_esc(chunk: bytes, i: int) -> tuple[int, int]:
    if chunk[i] == 0x5C:
        i += 1
    r, w = _decode_rune(chunk, i)
    return r, i + w


def _go_match_chunk(chunk: bytes, s: bytes):
    """filepath.matchChunk for a valid chunk: the rest of s, or None."""
    i = 0
    n = len(chunk)
    while i < n:
        if not s:
            return None
        c = chunk[i]
        if c == 0x5B:  # '['
            r, w = _decode_rune(s, 0)
            s = s[w:]
            i += 1
            negated = i < n and chunk[i] == 0x5E
            if negated:
                i += 1
            matched = False
            nrange = 0
            while True:
                if i < n and chunk[i] == 0x5D and nrange > 0:
                    i += 1
                    break
                lo, i = _go_get_esc(chunk, i)
                hi = lo
                if chunk[i] == 0x2D:
                    hi, i = _go_get_esc(chunk, i + 1)
                if lo <= r <= hi:
                    matched = True
                nrange += 1
            if matched == negated:
                return None
        elif c == 0x3F:  # '?'
            if s[0] == 0x2F:
                return None
            _, w = _decode_rune(s, 0)
            s = s[w:]
            i += 1
        else:
            if c == 0x5C:
                i += 1
                c = chunk[i]
            if c != s[0]:
                return None
            s = s[1:]
            i += 1
    return s


def _go_scan_chunk(pattern: bytes) -> tuple[bool, bytes, bytes]:
    star = False
    while pattern[:1] == b"*":
        pattern = pattern[1:]
        star = True
    inrange = False
    i = 0
    n = len(pattern)
    while i < n:
        c = pattern[i]
        if c == 0x5C:
            if i + 1 < n:
                i += 1
        elif c == 0x5B:
            inrange = True
        elif c == 0x5D:
            inrange = False
        elif c == 0x2A and not inrange:
            break
        i += 1
    return star, pattern[:i], pattern[i:]


def _go_filepath_match(pattern: bytes, name: bytes) -> bool:
    """filepath.Match for a valid pattern, on byte strings."""
    while pattern:
        star, chunk, pattern = _go_scan_chunk(pattern)
        if star and not chunk:
            return b"/" not in name
        t = _go_match_chunk(chunk, name)
        if t is not None and (not t or pattern):
            name = t
            continue
        if star:
            found = False
            for i in range(len(name)):
                if name[i] == 0x2F:
                    break
                t = _go_match_chunk(chunk, name[i + 1 :])
                if t is not None:
                    if not pattern and t:
                        continue
                    name = t
                    found = True
                    break
            if found:
                continue
        return False
    return not name


_ROOT = (True, b"/")
_WILD = (False, b"*")


def _part_matches(part: tuple[bool, bytes], s: bytes) -> bool:
    simple, pat = part
    return pat == s if simple else _go_filepath_match(pat, s)


def _ref_match(parts: list, strs: list[bytes]) -> bool:
    """filter.match: parts are (isSimple, bytes) tuples, None for '**'."""
    if None in parts:
        pos = parts.index(None)
        prefix, rest = parts[:pos], parts[pos + 1 :]
        for i in range(len(strs) - len(parts) + 2):
            if _ref_match(prefix + [_WILD] * i + rest, strs):
                return True
        return False
    m = len(parts)
    n = len(strs)
    if m == 0 or m > n:
        return m == 0 and n == 0
    lo, hi = 0, n - m
    if parts[0] == _ROOT:
        hi = 0
    elif strs[0] == b"/":
        lo = 1
    for offset in range(hi, lo - 1, -1):
        if all(_part_matches(parts[i], strs[offset + i]) for i in range(m - 1, -1, -1)):
            return True
    return False


def _ref_child_match(parts: list, strs: list[bytes]) -> bool:
    """filter.childMatch."""
    if parts[0] != _ROOT:
        return True
    if None in parts:
        pos = parts.index(None)
        if len(strs) >= pos:
            strs = strs[:pos]
    return _ref_match(parts[: min(len(strs), len(parts))], strs)


def _split_path(s: str) -> list[str]:
    parts = s.split("/")
    if parts[0] == "":
        parts[0] = "/"
    return parts


def _path_bytes(s: str) -> list[bytes]:
    return [p.encode("utf-8", "surrogateescape") for p in _split_path(s)]


# ---------------------------------------------------------------------------------------
# compiled patterns


def _prepare(pattern: str) -> tuple[bool, list[str]]:
    """filter.preparePattern: (negated, parts) with '' standing for '**' (as in restic)."""
    negated = pattern[0] == "!"
    if negated:
        pattern = pattern[1:]
    parts = _split_path(_go_clean(pattern))
    return negated, ["" if p == "**" else p for p in parts]


def _encode(s: str) -> bytes:
    try:
        return s.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:
        return s.encode("utf-8", "surrogatepass")


_DSTAR_RX = "(?:/[^/]*)*"
_END_RX = r"(?=/|\Z)"


def _path_regex(pats: list["_Pattern"], absolute_path: bool):
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


class _Pattern:
    __slots__ = (
        "original", "negated", "absolute", "body", "match_all", "child_body",
        "exact", "risky", "ref_parts", "rx_abs", "rx_rel", "child_rx",
    )

    def __init__(self, original: str, pattern: str):
        self.original = original
        self.negated, parts = _prepare(pattern)
        self.absolute = parts[0] == "/"
        body = parts[1:] if self.absolute else parts
        comps = [None if p == "" else _component_regex(p) for p in body]
        # With two or more '**' restic's expansion is more restrictive than the regex.
        self.exact = body.count("") < 2
        self.risky = any(_component_risky(p) for p in body if p)
        self.ref_parts = [
            None if p == "" else (not (_SPECIAL_CHARS & set(p)), _encode(p)) for p in parts
        ]

        # match: '**' is zero or more components. Matches need not reach the end of the
        # path, so a trailing '**' (and a leading one of a relative pattern) is redundant.
        toks: list = []
        for c in comps:
            if c is None and toks and toks[-1] is None:
                continue
            toks.append(c)
        while toks and toks[-1] is None:
            toks.pop()
        self.match_all = False
        if self.absolute:
            self.body = "".join(_DSTAR_RX if t is None else "/" + t for t in toks)
        else:
            while toks and toks[0] is None:
                toks.pop(0)
            self.match_all = not toks  # '**'
            self.body = "" if not toks else toks[0] + "".join(
                _DSTAR_RX if t is None else "/" + t for t in toks[1:]
            )

        # childMatch: an absolute pattern's components up to its first '**' must agree with
        # the path's leading components, as far as both go.
        self.child_body = None
        if self.absolute:
            prefix = []
            for c in comps:
                if c is None:
                    break
                prefix.append(c)
            rx = ""
            if prefix:
                rx = prefix[-1] + r"(?:/|\Z)"
                for c in reversed(prefix[:-1]):
                    rx = c + r"(?:\Z|/" + rx + ")"
                rx = "/" + rx
            self.child_body = rx
        self.rx_abs = _path_regex([self], True)
        self.rx_rel = _path_regex([self], False)
        self.child_rx = None if self.child_body is None else re.compile(self.child_body)

    def ref_match(self, s: str) -> bool:
        return _ref_match(self.ref_parts, _path_bytes(s))

    def ref_child(self, s: str) -> bool:
        return _ref_child_match(self.ref_parts, _path_bytes(s))


class _Group:
    """Consecutive patterns of the same sign: one combined regex plus special cases."""

    __slots__ = ("negated", "rx_abs", "rx_rel", "special", "child_always", "child_rx", "child_special")

    def __init__(self, pats: list[_Pattern]):
        self.negated = pats[0].negated
        plain = [p for p in pats if p.exact and not p.risky]
        self.special = [p for p in pats if not (p.exact and not p.risky)]
        self.rx_abs = _path_regex(plain, True)
        self.rx_rel = _path_regex(plain, False)
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
            _, parts = _prepare(pat)
            # restic 0.14's ValidatePatterns lists a pattern once per malformed component
            invalid.extend(pat for part in parts if not _component_valid(part))
        if invalid:
            raise InvalidPatternError(invalid)

        compiled = []
        for pat in self.patterns:
            if pat == "":
                continue  # ignored by restic (but still counts for __bool__)
            compiled.append(_Pattern(pat, _go_lower(pat) if case_insensitive else pat))
        self._compiled = compiled
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
