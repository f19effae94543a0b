"""restique repair snapshots: new snapshots without the data the index no longer has;
current restic's flags and messages (restic 0.14 has no repair). The `repair` group loads
this command lazily."""
import click

from .cmd_rewrite import print_result, print_total
from .options import snapshot_filter_options


@click.command("snapshots")
@click.option("-n", "--dry-run", is_flag=True, help="do not do anything, just print what would be done")
@click.option("--forget", is_flag=True, help="remove original snapshots after creating new ones")
@snapshot_filter_options()
@click.argument("snapshot_ids", nargs=-1)
@click.pass_obj
def snapshots(opts, dry_run, forget, snapshot_filter, snapshot_ids):
    """Repair snapshots.

    Scans the given snapshots and generates new ones with damaged directories and file
    contents removed. It depends on a correct index: run "repair index" first. Repairing
    and removing broken snapshots loses data; if the files still exist, running "backup"
    again is the better way to heal them.
    """
    from ..model.names import go_quote
    from ..operations import repair_snapshots as repair
    from ..operations.rewrite import UnreadableSnapshot, select_snapshots

    talk = not opts.quiet
    repo = opts.open_exclusively(dry_run)
    selected = select_snapshots(repo, list(snapshot_ids), snapshot_filter.filter())

    def on_snapshot(sn):
        if talk:
            print(flush=True)
            print(sn, flush=True)

    def on_node(event):
        if not talk:
            return
        path = f'"{go_quote(event.path)}"'
        print({
            repair.INVALID_TYPE: f'  file {path}: removed node with invalid type "{go_quote(event.detail)}"',
            repair.MISSING_CONTENT: f"  file {path}: removed missing content",
            repair.INCORRECT_SIZE: f"  file {path}: fixed incorrect size",
            repair.ROOT_UNREADABLE: f"  dir {path}: not readable",
            repair.EMPTIED_DIRECTORY: f"  dir {path}: replaced with empty directory",
        }[event.kind], flush=True)

    changed = 0
    options = repair.RepairOptions(forget=forget, dry_run=dry_run)
    for result in repair.repair_snapshots(repo, selected, options, on_snapshot=on_snapshot, on_node=on_node):
        if isinstance(result, UnreadableSnapshot):
            changed += 1
            if talk:
                verb = "would remove" if dry_run else "removed"
                print(f"{verb} unreadable snapshot {result.id}", flush=True)
            continue
        changed += result.changed
        if talk:
            print_result(result, dry_run)
    if talk:
        print_total(changed, dry_run)
