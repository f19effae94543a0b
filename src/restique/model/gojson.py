"""JSON exactly as Go's encoding/json writes it.

Tree blobs are content-addressed, so byte equality with restic matters: compact separators,
HTML-safe escaping of < > &, escaped U+2028/U+2029, and invalid UTF-8 replaced by U+FFFD.
Callers build dicts in Go's struct field order and leave out omitempty fields themselves.
"""
import json
import re

import orjson

_GO_ESCAPES = {"<": "\\u003c", ">": "\\u003e", "&": "\\u0026", "\u2028": "\\u2028", "\u2029": "\\u2029"}
# patterns compiled on first use (re caches them): most documents need neither, and every
# command that prints or reads JSON loads this module
_NEEDS_ESCAPE = "[<>&\u2028\u2029]"
_SURROGATE = "[\ud800-\udfff]"


def _go_escape(text: str) -> str:
    # These characters can only occur inside JSON strings, so replacing them in the whole
    # document is safe. Plain `in` tests are much cheaper than a regex scan.
    if "<" in text or ">" in text or "&" in text or "\u2028" in text or "\u2029" in text:
        text = re.sub(_NEEDS_ESCAPE, lambda m: _GO_ESCAPES[m.group()], text)
    if not text.isascii() and re.search(_SURROGATE, text):
        text = re.sub(_SURROGATE, lambda m: "\\ufffd", text)
    return text


def string(text: str) -> str:
    """One JSON string literal, as Go writes it."""
    if text.isascii() and text.isprintable() and '"' not in text and "\\" not in text \
            and "<" not in text and ">" not in text and "&" not in text:
        return '"' + text + '"'
    return _go_escape(json.dumps(text, ensure_ascii=False))


def dumps(obj) -> str:
    """json.Marshal: compact."""
    return _go_escape(json.dumps(obj, ensure_ascii=False, separators=(",", ":")))


def dumps_indent(obj) -> str:
    """json.MarshalIndent(obj, "", "  ")."""
    return _go_escape(json.dumps(obj, ensure_ascii=False, indent=2, separators=(",", ": ")))


def encode(obj) -> bytes:
    return dumps(obj).encode("utf-8")


# What turning untrusted JSON into typed fields can raise (int() of a list or of infinity, a
# missing key, a list where an object belongs ...): parsers of repository files catch these and
# raise IntegrityError naming the file.
DECODING_ERRORS = (ValueError, TypeError, KeyError, IndexError, AttributeError, OverflowError)


def loads(data):
    """Parse JSON keeping key order (dicts keep insertion order); ValueError for anything that
    is not JSON, nesting too deep for the parser included. Bytes go to orjson first (trees and
    indexes are decoded millions of times; it is 2-3x faster than json); what it refuses (bytes
    that are not UTF-8, unpaired surrogate escapes, nesting deeper than 1024) takes the path
    that reads them as Go does."""
    if isinstance(data, (bytes, bytearray, memoryview)):
        try:
            return orjson.loads(data)
        except orjson.JSONDecodeError:
            data = bytes(data).decode("utf-8", errors="replace")
    try:
        obj = json.loads(data)
    except RecursionError:
        raise ValueError("JSON nested too deeply") from None
    if "\\ud" in data or "\\uD" in data:  # Go never writes these escapes; another writer might
        obj = _replace_lone_surrogates(obj)
    return obj


def _replace_lone_surrogates(obj):
    """obj with each unpaired surrogate in its strings replaced by U+FFFD, as Go decodes
    them (Python keeps them, and they cannot be encoded as a file name later)."""
    def fix(value):
        if isinstance(value, str) and re.search(_SURROGATE, value):
            return value.encode("utf-16-le", "surrogatepass").decode("utf-16-le", "replace")
        return value

    root = [obj]
    pending = [root]
    while pending:  # iterative: the document may be nested as deep as the parser allows
        container = pending.pop()
        if isinstance(container, dict):
            items = [(fix(k), v) for k, v in container.items()]
            container.clear()
            container.update(items)
        for key, value in (container.items() if isinstance(container, dict) else enumerate(container)):
            if isinstance(value, (dict, list)):
                pending.append(value)
            else:
                container[key] = fix(value)
    return root[0]


def float_literal(value: float) -> str:
    """A float64 as encoding/json writes it: the shortest digits that read back the same,
    without an exponent from 1e-6 up to 1e21 (100.0 is `100`, 1e-05 is `0.00001`), with a
    short exponent outside that range (`1e-7`, `1e+21`)."""
    from decimal import Decimal

    if value == 0:
        return "0"
    text = repr(float(value))
    if 1e-6 <= abs(value) < 1e21:
        text = format(Decimal(text), "f")
        return text.rstrip("0").rstrip(".") if "." in text else text
    return text.replace("e-0", "e-")  # Go writes e-7 where Python writes e-07
