"""restique rewrite: new snapshots without excluded files (or with only included ones), or
with a new host or time; current restic's flags and messages (restic 0.14 has no rewrite)."""
import sys
import time

import click

from ..errors import UsageError
from .options import exclude_options, include_options, snapshot_filter_options


def _say(message: str = "") -> None:
    print(message, flush=True)


def parse_new_time(text: str):
    """--new-time in restic's format, local time."""
    from ..model.gotime import GoTime

    try:
        parsed = time.strptime(text, "%Y-%m-%d %H:%M:%S")
    except ValueError:
        raise UsageError(f'error in time option: parsing time "{text}" as "2006-01-02 15:04:05": '
                         "cannot parse") from None
    seconds = int(time.mktime(parsed))
    return GoTime(seconds * 1_000_000_000, time.localtime(seconds).tm_gmtoff)


def print_result(result, dry_run: bool) -> None:
    """The lines restic prints after rewriting or repairing one snapshot."""
    short = result.original.short_id
    if result.removed_empty:
        _say("would delete empty snapshot" if dry_run else f"removed empty snapshot {short}")
        return
    if result.new is None:
        return
    if dry_run:
        _say("would save new snapshot")
        if result.forgot:
            _say("would remove old snapshot")
        if result.new_time is not None:
            _say(f"would set time to {result.new_time.go_string()}")
        if result.new_host:
            _say(f"would set hostname to {result.new_host}")
        return
    if result.new_time is not None:
        _say(f"setting time to {result.new_time.go_string()}")
    if result.new_host:
        _say(f"setting host to {result.new_host}")
    _say(f"saved new snapshot {result.new.short_id}")
    if result.forgot:
        _say(f"removed old snapshot {short}")


def print_total(changed: int, dry_run: bool) -> None:
    _say()
    if changed == 0:
        _say("no snapshots would be modified" if dry_run else "no snapshots were modified")
    else:
        _say(f"would modify {changed} snapshots" if dry_run else f"modified {changed} snapshots")


@click.command("rewrite")
@click.option("--forget", is_flag=True, help="remove original snapshots after creating new ones")
@click.option("-n", "--dry-run", is_flag=True, help="do not do anything, just print what would be done")
@click.option("--new-host", default="", help="replace hostname")
@click.option("--new-time", default="", help="replace time of the backup")
@click.option("-s", "--snapshot-summary", is_flag=True, help="create snapshot summary record if it does not exist")
@snapshot_filter_options()
@exclude_options
@include_options
@click.argument("snapshot_ids", nargs=-1)
@click.pass_obj
def rewrite(opts, forget, dry_run, new_host, new_time, snapshot_summary, snapshot_filter, excludes,
            includes, snapshot_ids):
    """Rewrite snapshots to exclude files or change metadata.

    The new snapshots are tagged `rewrite` unless --forget removes the originals. Without
    snapshot IDs or filters, every snapshot is rewritten.
    """
    from ..operations.rewrite import RewriteOptions, rewrite_snapshots, select_snapshots

    options = RewriteOptions(excludes=excludes.pattern_lists(), includes=includes.pattern_lists(),
                             forget=forget, dry_run=dry_run, new_host=new_host,
                             new_time=parse_new_time(new_time) if new_time else None,
                             snapshot_summary=snapshot_summary)
    options.check()
    talk = not opts.quiet
    if forget:
        if talk:
            _say("create exclusive lock for repository")
        repo = opts.open_exclusively(dry_run)
    else:
        repo = opts.open_for_appending(dry_run)
    selected = select_snapshots(repo, list(snapshot_ids), snapshot_filter.filter())

    def on_snapshot(sn):
        if talk:
            _say()
            _say(str(sn))

    def on_node(event):
        if opts.verbose >= 2:
            from ..model.names import go_quote

            verb = {"excluded": "excluding", "included": "including",
                    "included directory": "including directory"}[event.kind]
            _say(f'{verb} "{go_quote(event.path)}"')

    changed = 0
    for result in rewrite_snapshots(repo, selected, options, on_snapshot=on_snapshot, on_node=on_node):
        changed += result.changed
        if talk:
            print_result(result, dry_run)
    if talk:
        print_total(changed, dry_run)
    if not talk:
        sys.stdout.flush()
