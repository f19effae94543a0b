"""Text tables and JSON as restic prints them."""
from __future__ import annotations

import sys
from typing import List, Optional, Sequence

from ..model import gojson


def print_json(obj) -> None:
    sys.stdout.write(gojson.dumps(obj) + "\n")


def print_json_indent(obj) -> None:
    sys.stdout.write(gojson.dumps_indent(obj) + "\n")


def write_bytes(data) -> None:
    sys.stdout.flush()
    sys.stdout.buffer.write(data)
    sys.stdout.buffer.flush()


def write_text(text: str, stream=None) -> None:
    """Write text with file names' raw bytes (surrogate escapes) as they are."""
    stream = stream or sys.stdout
    stream.flush()
    stream.buffer.write(text.encode("utf-8", "surrogateescape"))
    stream.buffer.flush()


def print_warning(message: str) -> None:
    """One line on stderr, file names' raw bytes as they are (for warnings a command reports
    while it runs)."""
    write_text(message + "\n", sys.stderr)


# --- restic's text table (internal/ui/table) -------------------------------------------------

def _width(text: str) -> int:
    # Go pads by len(), which counts bytes
    return len(text.encode("utf-8", "surrogatepass"))


def table_lines(header: Sequence[str], cells: Sequence[Sequence[str]], sep: str = "  "):
    """(header lines, separator, [lines of each row]) of restic's table: columns padded to
    their widest line, cells may span several lines, every line right-trimmed."""
    widths = [_width(h) for h in header]
    for row in cells:
        for i, cell in enumerate(row):
            for line in cell.split("\n"):
                widths[i] = max(widths[i], _width(line))

    def render(row) -> List[str]:
        parts = [cell.split("\n") for cell in row]
        out = []
        for n in range(max(len(p) for p in parts)):
            text = ""
            for i, lines in enumerate(parts):
                value = lines[n] if n < len(lines) else ""
                value += " " * max(0, widths[i] - _width(value))
                text += (sep if i else "") + value
            out.append(text.rstrip(" "))
        return out

    rule = "-" * (sum(widths) + len(sep) * (len(widths) - 1))
    return render(header), rule, [render(row) for row in cells]


def format_snapshots_table(snapshots, compact: bool = False, reasons: Optional[Sequence[Sequence[str]]] = None) -> str:
    """restic 0.14's PrintSnapshots: the table of snapshots sorted by time (oldest first),
    with `N snapshots` below. reasons (forget's keep reasons) are matched to snapshots by
    position in the given list."""
    from ..model.snapshot import sort_by_time

    reason_of = {}
    if reasons:
        reason_of = {sn.id: list(r) for sn, r in zip(snapshots, reasons)}
    snapshots = sort_by_time(list(snapshots))
    if compact:
        header = ["ID", "Time", "Host", "Tags  "]
    else:
        header = ["ID", "Time", "Host      ", "Tags      "]
        if reasons:
            header.append("Reasons")
        header.append("Paths")
    rows = []
    multiline = False
    for sn in snapshots:
        tags = sn.tags or []
        row = [sn.short_id, sn.local_time_string(), sn.hostname]
        if compact:
            row.append("\n".join(tags))
        else:
            row.append(",".join(tags))
            if reasons:
                row.append("\n".join(reason_of.get(sn.id, [])))
            row.append("\n".join(sn.paths or []))
            if len(sn.paths or []) > 1:
                multiline = True
        rows.append(row)
    head, rule, body = table_lines(header, rows)
    out = head + [rule]
    for i, lines in enumerate(body):
        if multiline and i > 0:
            out.append("")
        out.extend(lines)
    out += [rule, f"{len(snapshots)} snapshots"]
    return "\n".join(out) + "\n"




def table(header: Sequence[str], rows: List[Sequence[str]], footer: Sequence[str] = ()) -> str:
    """restic's table as one text: header, rule, rows, rule, then the footer lines."""
    head, rule, body = table_lines(header, rows)
    out = head + [rule] + [line for lines in body for line in lines] + [rule] + list(footer)
    return "\n".join(out) + "\n"
