"""restique snapshots: list the snapshots of a repository, as restic 0.14 prints them (JSON as
current restic prints it)."""
import re
import sys
from typing import List, Optional, Sequence

import click


# --- restic's text table (internal/ui/table), reusable by forget -----------------------------

def _width(text: str) -> int:
    # Go pads by len(), which counts bytes
    return len(text.encode("utf-8", "surrogatepass"))


def _table_lines(header: Sequence[str], cells: Sequence[Sequence[str]], sep: str = "  "):
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
    head, rule, body = _table_lines(header, rows)
    out = head + [rule]
    for i, lines in enumerate(body):
        if multiline and i > 0:
            out.append("")
        out.extend(lines)
    out += [rule, f"{len(snapshots)} snapshots"]
    return "\n".join(out) + "\n"


def _warn(message: str) -> None:
    print(message, file=sys.stderr)


def _parse_go_int(flag: str, text: str) -> int:
    """pflag's IntVar (strconv.ParseInt(s, 0, 64)) with its error texts."""
    def fail(why):
        return click.UsageError(
            f'invalid argument "{text}" for "{flag}" flag: strconv.ParseInt: parsing "{text}": {why}')

    if text != text.strip() or not text:
        raise fail("invalid syntax")
    try:
        octal = re.match(r"^([+-]?)0_?([0-7][0-7_]*)$", text)  # Go: a leading 0 means octal
        value = int(octal.group(1) + octal.group(2), 8) if octal else int(text, 0)
    except ValueError:
        raise fail("invalid syntax") from None
    if not -(1 << 63) <= value < (1 << 63):
        raise fail("value out of range")
    return value


@click.command("snapshots")
@click.option("-H", "--host", "hosts", multiple=True, metavar="host",
              help="only consider snapshots for this host (can be specified multiple times)")
@click.option("--tag", "tags", multiple=True, metavar="taglist",
              help="only consider snapshots which include this taglist in the format `tag[,tag,...]` (can be specified multiple times)")
@click.option("--path", "paths", multiple=True, metavar="path",
              help="only consider snapshots for this path (can be specified multiple times)")
@click.option("-c", "--compact", is_flag=True, help="use compact output format")
@click.option("--last", is_flag=True, hidden=True, help="only show the last snapshot for each host and path")
@click.option("--latest", default="0", metavar="n", help="only show the last n snapshots for each host and path")
@click.option("-g", "--group-by", default="", metavar="group",
              help="group snapshots by host, paths and/or tags, separated by comma")
@click.argument("snapshot_ids", nargs=-1)
@click.pass_obj
def snapshots(opts, hosts, tags, paths, compact, last, latest, group_by, snapshot_ids):
    """List all snapshots."""
    from ..model.snapshot import sort_by_time
    from ..model.snapshot_filter import SnapshotFilter
    from ..model.snapshot_group import GroupBy, filter_latest_snapshots, group_snapshots
    from ..operations.snapshot_lookup import find_filtered_snapshots
    from .output import print_json

    if last:
        print("Flag --last has been deprecated, use --latest 1", file=sys.stderr)
    limit = 1 if last else _parse_go_int("--latest", latest)

    repo = opts.open(lock=False)
    filt = SnapshotFilter.from_options(hosts, tags, paths)
    found = find_filtered_snapshots(repo, list(snapshot_ids), filt, warn=_warn)
    groups, grouped = group_snapshots(found, GroupBy.parse(group_by))

    listed = []
    for key, members in groups:
        if limit > 0:
            members = filter_latest_snapshots(members, limit)
        listed.append((key, sort_by_time(members)))

    if opts.json:
        if grouped:
            print_json([{"group_key": key.to_json(), "snapshots": [sn.to_json() for sn in members]}
                        for key, members in listed])
        else:
            print_json([sn.to_json() for _, members in listed for sn in members])
        return

    out = []
    for key, members in listed:
        if grouped:
            header = key.header()
            if header is not None:
                out.append(header + "\n")
        out.append(format_snapshots_table(members, compact))
    sys.stdout.write("".join(out))
