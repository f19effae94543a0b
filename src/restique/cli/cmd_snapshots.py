"""restique snapshots: list the snapshots of a repository, as restic 0.14 prints them (JSON as
current restic prints it)."""
import re
import sys

import click

from .options import snapshot_filter_options


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
@snapshot_filter_options()
@click.option("-c", "--compact", is_flag=True, help="use compact output format")
@click.option("--last", is_flag=True, hidden=True, help="only show the last snapshot for each host and path")
@click.option("--latest", default="0", metavar="n", help="only show the last n snapshots for each host and path")
@click.option("-g", "--group-by", default="", metavar="group",
              help="group snapshots by host, paths and/or tags, separated by comma")
@click.argument("snapshot_ids", nargs=-1)
@click.pass_obj
def snapshots(opts, snapshot_filter, compact, last, latest, group_by, snapshot_ids):
    """List all snapshots."""
    from ..model.snapshot import sort_by_time
    from ..model.snapshot_group import GroupBy, filter_latest_snapshots, group_snapshots
    from ..operations.snapshot_lookup import find_filtered_snapshots
    from .output import format_snapshots_table, print_json

    if last:
        print("Flag --last has been deprecated, use --latest 1", file=sys.stderr)
    limit = 1 if last else _parse_go_int("--latest", latest)

    repo = opts.open_for_reading()
    found = find_filtered_snapshots(repo, list(snapshot_ids), snapshot_filter.filter(), warn=_warn)
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
