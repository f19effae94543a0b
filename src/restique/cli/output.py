"""Text tables and JSON as restic prints them."""
import sys
from typing import List, Sequence

from ..model import gojson


def print_json(obj) -> None:
    sys.stdout.write(gojson.dumps(obj) + "\n")


def print_json_indent(obj) -> None:
    sys.stdout.write(gojson.dumps_indent(obj) + "\n")


def write_bytes(data) -> None:
    sys.stdout.flush()
    sys.stdout.buffer.write(data)
    sys.stdout.buffer.flush()


def table(header: Sequence[str], rows: List[Sequence[str]], footer: Sequence[str] = ()) -> str:
    """restic's table: columns padded to the widest cell, two spaces apart, ruled above
    and below the rows."""
    widths = [max([len(h)] + [len(r[i]) for r in rows]) for i, h in enumerate(header)]

    def line(cells):
        padded = [c.ljust(w) for c, w in zip(cells[:-1], widths[:-1])] + [cells[-1]]
        return "  ".join(padded)

    rule = "-" * (sum(widths) + 2 * (len(widths) - 1))
    out = [line(header), rule] + [line(r) for r in rows] + [rule]
    out += list(footer)
    return "\n".join(out) + "\n"
