"""A faithful port of restic's filter.go matcher over bytes (Go strings are bytes): the
fallback where the regex reading differs, and the tests' reference."""
from __future__ import annotations

from .pattern_parse import has_special, split_path


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


def _encode(s: str) -> bytes:
    try:
        return s.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:
        return s.encode("utf-8", "surrogatepass")


def ref_parts(parts: list[str]) -> list:
    """Prepared parts ('' for '**') as filter.match takes them: (isSimple, bytes), None for '**'."""
    return [None if p == "" else (not has_special(p), _encode(p)) for p in parts]


def path_bytes(s: str) -> list[bytes]:
    return [p.encode("utf-8", "surrogateescape") for p in split_path(s)]


def _part_matches(part: tuple[bool, bytes], s: bytes) -> bool:
    simple, pat = part
    return pat == s if simple else _go_filepath_match(pat, s)


def ref_match(parts: list, strs: list[bytes]) -> bool:
    """filter.match: parts are (isSimple, bytes) tuples, None for '**'."""
    if None in parts:
        pos = parts.index(None)
        prefix, rest = parts[:pos], parts[pos + 1 :]
        for i in range(len(strs) - len(parts) + 2):
            if ref_match(prefix + [_WILD] * i + rest, strs):
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


def ref_child_match(parts: list, strs: list[bytes]) -> bool:
    """filter.childMatch."""
    if parts[0] != _ROOT:
        return True
    if None in parts:
        pos = parts.index(None)
        if len(strs) >= pos:
            strs = strs[:pos]
    return ref_match(parts[: min(len(strs), len(parts))], strs)
