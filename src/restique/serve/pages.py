"""The web page: server-rendered HTML, no script needed. Every name from a snapshot is
escaped (and shown with U+FFFD where it is not UTF-8); every link carries the raw bytes."""
import stat
import time
from html import escape
from typing import Iterable, List, Optional, Sequence

from .fs_paths import components, display, to_url

_STYLE = """
body{font-family:system-ui,sans-serif;margin:0;color:#1d2330;background:#f6f7f9}
header{background:#1d3557;color:#fff;padding:.7em 1.2em;display:flex;gap:1.5em;align-items:center}
header a{color:#fff;text-decoration:none;font-weight:600}
header form{margin-left:auto}
main{padding:1em 1.2em}
table{border-collapse:collapse;width:100%;background:#fff}
th,td{text-align:left;padding:.35em .7em;border-bottom:1px solid #e3e6ea;vertical-align:top}
th{background:#eef1f5;font-weight:600}
td.num{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
td.time{white-space:nowrap}
a{color:#1d4ed8}
.crumbs{margin:.2em 0 .8em;font-size:1.05em}
.actions a{margin-right:1em}
.tag{background:#e0e7ff;border-radius:.3em;padding:0 .35em;margin-right:.25em}
.muted{color:#6b7280}
code{font-size:.95em}
"""


def human_size(size: Optional[int]) -> str:
    if size is None:
        return ""
    if size < 1024:
        return f"{size} B"
    value = float(size)
    for unit in ("KiB", "MiB", "GiB", "TiB", "PiB"):
        value /= 1024
        if value < 1024 or unit == "PiB":
            return f"{value:.1f} {unit}" if value < 100 else f"{value:.0f} {unit}"
    return f"{size} B"


def local_time(ns: int) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(ns / 1e9))


def _text(value: str) -> str:
    return escape(display(value))


def _href(prefix: str, path: str, query: str = "") -> str:
    return escape(prefix + to_url(path) + query, quote=True)


def layout(title: str, body: str, query: str = "") -> bytes:
    page = f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{_text(title)} - restique</title><style>{_STYLE}</style></head>
<body><header><a href="/">restique</a><a href="/browse/">Browse</a>
<form action="/search" method="get"><input name="q" value="{escape(query, quote=True)}"
 placeholder="find files (*.txt)" aria-label="find files"> <button>Find</button></form></header>
<main>{body}</main></body></html>
"""
    return page.encode("utf-8")


def snapshots_page(snapshots: Sequence) -> bytes:
    rows = []
    for sn in sorted(snapshots, key=lambda s: (s.time, s.id), reverse=True):
        size = (sn.summary or {}).get("total_bytes_processed")
        tags = "".join(f'<span class="tag">{_text(t)}</span>' for t in sn.tags or [])
        paths = "<br>".join(_text(p) for p in sn.paths or [])
        rows.append(
            f'<tr><td><a href="{_href("/browse", f"/ids/{sn.id}/")}"><code>{sn.id[:8]}</code></a></td>'
            f'<td class="time">{escape(sn.local_time_string())}</td><td>{_text(sn.hostname)}</td>'
            f'<td>{tags}</td><td>{paths}</td><td class="num">{human_size(size)}</td></tr>')
    body = ("<h1>Snapshots</h1><table><thead><tr><th>ID</th><th>Time</th><th>Host</th><th>Tags</th>"
            "<th>Paths</th><th>Size</th></tr></thead><tbody>" + "\n".join(rows) + "</tbody></table>")
    if not rows:
        body += '<p class="muted">No snapshots.</p>'
    return layout("Snapshots", body)


def _crumbs(path: str) -> str:
    parts = components(path)
    links = ['<a href="/browse/">/</a>']
    for depth, name in enumerate(parts):
        target = "/" + "/".join(parts[:depth + 1]) + "/"
        links.append(f'<a href="{_href("/browse", target)}">{_text(name)}</a>')
    return '<div class="crumbs">' + " / ".join(links) + "</div>"


def _kind_text(entry) -> str:
    if entry.kind == "symlink":
        return "→ " + _text(entry.target or "")
    if entry.kind in ("file", "dir"):
        return ""
    return entry.kind


def _entry_row(folder: str, entry) -> str:
    path = folder.rstrip("/") + "/" + entry.name
    if entry.kind == "dir" or (entry.kind == "symlink" and entry.node is None):
        link = f'<a href="{_href("/browse", path + "/")}">{_text(entry.name)}/</a>'
        size = ""
    elif entry.kind == "file":
        link = f'<a href="{_href("/download", path)}">{_text(entry.name)}</a>'
        size = human_size(entry.size)
    else:
        link = _text(entry.name)
        size = ""
    return (f"<tr><td>{link}</td><td class=\"num\">{size}</td>"
            f'<td class="time">{local_time(entry.mtime_ns)}</td>'
            f"<td><code>{stat.filemode(entry.mode)}</code></td><td>{_kind_text(entry)}</td></tr>")


def folder_page(path: str, entries: Iterable, archives: bool) -> bytes:
    """A folder's entries; archives: the folder is inside a snapshot, so it can be
    downloaded as a tar or zip."""
    rows = [_entry_row(path, entry) for entry in entries]
    actions = ""
    if archives:
        actions = ('<p class="actions">Download this folder: '
                   f'<a href="{_href("/download", path, "?archive=tar")}">.tar</a>'
                   f'<a href="{_href("/download", path, "?archive=zip")}">.zip</a></p>')
    body = (f"{_crumbs(path)}{actions}<table><thead><tr><th>Name</th><th>Size</th><th>Modified</th>"
            "<th>Mode</th><th></th></tr></thead><tbody>" + "\n".join(rows) + "</tbody></table>")
    if not rows:
        body += '<p class="muted">This folder is empty.</p>'
    return layout(path, body)


def search_page(query: str, results: List, truncated: bool, error: str = "") -> bytes:
    """results: (snapshot, path, node) tuples."""
    if error:
        return layout("Find", f"<h1>Find</h1><p>{escape(error)}</p>", query)
    rows = []
    for sn, path, node in results:
        fs_path = f"/ids/{sn.id}{path}"
        prefix = "/browse" if node.type == "dir" else "/download"
        target = fs_path + "/" if node.type == "dir" else fs_path
        size = human_size(node.size) if node.type == "file" else ""
        rows.append(f'<tr><td><a href="{_href(prefix, target)}">{_text(path)}</a></td>'
                    f'<td><code>{sn.id[:8]}</code> {escape(sn.local_time_string())}</td>'
                    f'<td class="num">{size}</td></tr>')
    note = f'<p class="muted">Only the first {len(rows)} matches are shown.</p>' if truncated else ""
    body = (f"<h1>Find {escape(query)}</h1>{note}<table><thead><tr><th>Path</th><th>Snapshot</th>"
            "<th>Size</th></tr></thead><tbody>" + "\n".join(rows) + "</tbody></table>")
    if not rows:
        body += '<p class="muted">Nothing found.</p>'
    return layout("Find", body, query)


def error_page(status: str, message: str) -> bytes:
    return layout(status, f"<h1>{escape(status)}</h1><p>{escape(message)}</p>")
