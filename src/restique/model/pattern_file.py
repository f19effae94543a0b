"""Reading --exclude-file/--include-file pattern files as restic does, with Go's
strings.TrimSpace and os.Expand."""
from __future__ import annotations

import os

from restique.errors import UsageError

_MAX_LINE = 64 * 1024  # bufio.MaxScanTokenSize
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
