"""Paths of the snapshot filesystem in URLs and on pages.

Filesystem paths are str with surrogate escapes for names that are not UTF-8 (as os.fsdecode
makes them); in a URL they are the raw bytes, percent-encoded; on a page they are shown with
U+FFFD for the bytes that are not UTF-8."""
import posixpath
from typing import List, Optional, Tuple
from urllib.parse import quote

from ..errors import NotFound

_MAX_LINKS = 8  # virtual symlinks followed in one lookup ("latest" and the like)


def to_url(path: str) -> str:
    return quote(path.encode("utf-8", "surrogateescape"), safe="/")


def from_wsgi(path_info: str) -> str:
    """PATH_INFO (bytes as latin-1, per PEP 3333) as a filesystem path."""
    return path_info.encode("latin-1").decode("utf-8", "surrogateescape")


def display(name: str) -> str:
    return name.encode("utf-8", "surrogateescape").decode("utf-8", "replace")


def clean(path: str) -> str:
    path = posixpath.normpath("/" + path.strip("/"))
    return "/" if path in ("/", "//") else path


def components(path: str) -> List[str]:
    return [part for part in path.split("/") if part]


def resolve(fs, path: str):
    """The entry at path, following the filesystem's own symlinks (those without a tree node,
    such as snapshots/latest) on the way; symlinks stored in a snapshot are not followed, since
    they point into the machine the backup came from. Raises NotFound."""
    path = clean(path)
    try:
        entry = fs.lookup(path)
    except NotFound:
        entry = None
    if entry is not None and not _is_virtual_link(entry):
        return entry
    current = "/"
    links = 0
    pending = components(path)
    entry = fs.lookup("/")
    while pending:
        current = posixpath.join(current, pending.pop(0))
        entry = fs.lookup(current)
        if _is_virtual_link(entry):
            links += 1
            if links > _MAX_LINKS:
                raise NotFound(f"too many levels of symbolic links: {path}")
            target = posixpath.normpath(posixpath.join(posixpath.dirname(current), entry.target))
            pending = components(target) + pending
            current = "/"
            entry = fs.lookup("/")
    return entry


def _is_virtual_link(entry) -> bool:
    return entry.kind == "symlink" and entry.node is None and bool(entry.target)


def snapshot_root(fs, path: str) -> Optional[Tuple[object, str]]:
    """(snapshot, path inside it) for a path at or below a snapshot's root folder: the
    shortest prefix whose entry belongs to a snapshot is that root."""
    parts = components(clean(path))
    for depth in range(1, len(parts) + 1):
        entry = resolve(fs, "/" + "/".join(parts[:depth]))
        if entry.snapshot is not None and entry.kind == "dir":
            return entry.snapshot, "/" + "/".join(parts[depth:])
    return None
