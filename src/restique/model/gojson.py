"""JSON exactly as Go's encoding/json writes it.

Tree blobs are content-addressed, so byte equality with restic matters: compact separators,
HTML-safe escaping of < > &, escaped U+2028/U+2029, and invalid UTF-8 replaced by U+FFFD.
Callers build dicts in Go's struct field order and leave out omitempty fields themselves.
"""
import json
import re

_GO_ESCAPES = {"<": "\\u003c", ">": "\\u003e", "&": "\\u0026", "\u2028": "\\u2028", "\u2029": "\\u2029"}
_NEEDS_ESCAPE = re.compile("[<>&\u2028\u2029]")
_SURROGATE = re.compile("[\ud800-\udfff]")


def _go_escape(text: str) -> str:
    # These characters can only occur inside JSON strings, so replacing them in the whole
    # document is safe. Plain `in` tests are much cheaper than a regex scan.
    if "<" in text or ">" in text or "&" in text or "\u2028" in text or "\u2029" in text:
        text = _NEEDS_ESCAPE.sub(lambda m: _GO_ESCAPES[m.group()], text)
    if not text.isascii() and _SURROGATE.search(text):
        text = _SURROGATE.sub(lambda m: "\\ufffd", text)
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


def loads(data):
    """Parse JSON keeping key order (dicts keep insertion order)."""
    if isinstance(data, (bytes, bytearray, memoryview)):
        data = bytes(data).decode("utf-8", errors="replace")
    return json.loads(data)


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
