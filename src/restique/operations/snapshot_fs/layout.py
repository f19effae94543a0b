"""The virtual directories above the snapshots: `ids/`, `snapshots/`, `hosts/<host>/`,
`tags/<tag>/` (or the user's --path-template list), with `latest` links.

Each template names one path per snapshot (`%i` short id, `%I` long id, `%u` user, `%h`
host, `%t` each tag, `%T` time in --time-template). A template ending in `%T` gets a
`latest` link to its newest snapshot, and snapshots sharing the same name get `-1`, `-2`...
suffixes in time order (then by id), as restic numbers them.
"""
import posixpath
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence, Tuple

from ...model.snapshot import Snapshot
from .timefmt import format_go_time

DEFAULT_PATH_TEMPLATES = ("ids/%i", "snapshots/%T", "hosts/%h/%T", "tags/%t/%T")
DEFAULT_TIME_TEMPLATE = "2006-01-02T15:04:05Z07:00"
_VERBS = "iIuhtT"


@dataclass
class VirtualDir:
    """One virtual path: a directory of virtual names, a snapshot's root (snapshot set), or
    a `latest` link (snapshot and link_target set)."""
    names: Optional[Dict[str, "VirtualDir"]] = None
    snapshot: Optional[Snapshot] = None
    link_target: str = ""
    hidden: Dict[str, "VirtualDir"] = field(default_factory=dict)  # found by lookup, not listed


def tag_file_name(tag: str) -> str:
    """A tag as one path component: restic's replacements for "", ".", ".." and "/"."""
    if tag in ("", "."):
        return "_"
    if tag == "..":
        return "__"
    return tag.replace("/", "_")


def paths_from_snapshot(template: str, time_template: str, sn: Snapshot) -> Tuple[List[str], str]:
    """(paths, time suffix): the paths template gives for sn, one per tag for `%t` (none for
    a snapshot without tags); a `%T` at the end is left off the paths and returned apart."""
    when = format_go_time(sn.time.unix_ns, sn.time.offset, time_template)
    outs = [""]
    i = 0
    while i < len(template):
        c = template[i]
        if c != "%" or i + 1 >= len(template):
            outs = [o + c for o in outs]
            i += 1
            continue
        verb = template[i + 1]
        i += 2
        if verb == "T":
            if i == len(template):
                return outs, when
            outs = [o + when for o in outs]
        elif verb == "t":
            tags = sn.tags or []
            if not tags:
                return [], ""
            names = [tags[0]] if len(tags) == 1 else [tag_file_name(t) for t in tags]
            outs = [o + name for name in names for o in outs]
        else:
            value = {"i": sn.id[:8], "I": sn.id, "u": sn.username, "h": sn.hostname}.get(verb, verb)
            outs = [o + value for o in outs]
    return outs, ""


def static_prefix(template: str) -> str:
    """The directories of template before its first verb (shown even with no snapshots)."""
    i = 0
    while i < len(template) - 1:
        if template[i] == "%" and template[i + 1] in _VERBS:
            head = template[:i]
            return head[:head.rfind("/")] if "/" in head else ""
        i += 2 if template[i] == "%" else 1
    return ""


def _clean(path: str) -> str:
    return posixpath.normpath("/" + path) if path else "/"


class _Builder:
    def __init__(self):
        self.entries: Dict[str, VirtualDir] = {"/": VirtualDir(names={})}

    def directory(self, path: str) -> VirtualDir:
        entry = self.entries.get(path)
        if entry is None:
            parent, name = posixpath.split(path)
            entry = self.entries[path] = VirtualDir(names={})
            self.directory(parent).names.setdefault(name, entry)
        elif entry.names is None:
            entry.names = {}
        return entry

    def leaf(self, path: str, leaf: VirtualDir, hidden: bool = False) -> None:
        parent, name = posixpath.split(path)
        if hidden:
            self.directory(parent).hidden.setdefault(name, leaf)
            return
        self.entries[path] = leaf
        self.directory(parent).names[name] = leaf

    def unique(self, path: str) -> str:
        candidate, n = path, 0
        while candidate in self.entries:
            n += 1
            candidate = f"{path}-{n}"
        return candidate


def build_layout(snapshots: Sequence[Snapshot], path_templates: Optional[Sequence[str]] = None,
                 time_template: Optional[str] = None) -> Dict[str, VirtualDir]:
    """Every virtual path ("/", "/ids", "/ids/1a2b3c4d", ...) of the snapshots, in restic's
    arrangement. A `%i` template also lets the long id be looked up (not listed)."""
    templates = list(path_templates or DEFAULT_PATH_TEMPLATES)
    layout = time_template or DEFAULT_TIME_TEMPLATE
    ordered = sorted(snapshots, key=lambda sn: (sn.time.unix_ns, sn.id))
    b = _Builder()
    for template in templates:
        prefix = static_prefix(template)
        if prefix:
            b.directory(_clean(prefix))
    newest: Dict[str, int] = {}
    for sn in ordered:
        for template in templates:
            paths, suffix = paths_from_snapshot(template, layout, sn)
            for p in paths:
                base = _clean(p + suffix)
                if base == "/":
                    continue
                name = b.unique(base)
                b.leaf(name, VirtualDir(snapshot=sn))
                if "%i" in template and not suffix:
                    long_paths, _ = paths_from_snapshot(template.replace("%i", "%I"), layout, sn)
                    for lp in long_paths:
                        b.leaf(_clean(lp), VirtualDir(snapshot=sn), hidden=True)
                if suffix and newest.get(p, -1) <= sn.time.unix_ns:
                    newest[p] = sn.time.unix_ns
                    link = VirtualDir(snapshot=sn, link_target=posixpath.basename(name))
                    b.leaf(_clean(p + "/latest"), link)
    return b.entries
