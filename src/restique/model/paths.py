"""Slash-separated paths as Go's path.Clean leaves them (snapshot paths, targets, patterns)."""
import posixpath


def go_clean(path: str) -> str:
    """Go's path.Clean: lexical; "" is "."; unlike POSIX, `//x` is `/x`."""
    cleaned = posixpath.normpath(path) if path else "."
    if cleaned.startswith("//"):
        cleaned = "/" + cleaned.lstrip("/")
    return cleaned
