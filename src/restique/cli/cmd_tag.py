"""restique tag: add, remove or set the tags of snapshots; restic 0.14's text, current
restic's --json lines (`changed` per snapshot, then a `summary`)."""
import sys

import click

from .options import snapshot_filter_options


def _warn(message: str) -> None:
    print(message, file=sys.stderr)


@click.command("tag")
@click.option("--set", "set_tags", multiple=True, metavar="tags",
              help="tags which will replace the existing tags in the format `tag[,tag,...]` (can be given multiple times)")
@click.option("--add", "add_tags", multiple=True, metavar="tags",
              help="tags which will be added to the existing tags in the format `tag[,tag,...]` (can be given multiple times)")
@click.option("--remove", "remove_tags", multiple=True, metavar="tags",
              help="tags which will be removed from the existing tags in the format `tag[,tag,...]` (can be given multiple times)")
@snapshot_filter_options()
@click.argument("snapshot_ids", nargs=-1)
@click.pass_obj
def tag(opts, set_tags, add_tags, remove_tags, snapshot_filter, snapshot_ids):
    """Modify tags on snapshots.

    You can either set/replace the entire set of tags on a snapshot, or add tags to/remove
    tags from the existing set. When no snapshot ID is given, all snapshots matching the
    host, tag and path filter criteria are modified.
    """
    from ..operations.snapshot_lookup import find_filtered_snapshots
    from ..operations.tag import TagOptions, tag_snapshots
    from .output import print_json

    options = TagOptions(set=list(set_tags), add=list(add_tags), remove=list(remove_tags))
    options.check()
    text = not (opts.json or opts.quiet)
    if text:
        print("create exclusive lock for repository", flush=True)
    repo = opts.open_exclusively()
    found = find_filtered_snapshots(repo, list(snapshot_ids), snapshot_filter.filter(), warn=_warn)
    changed = 0
    for change in tag_snapshots(repo, found, options, warn=_warn):
        changed += 1
        if opts.json:
            print_json({"message_type": "changed", "old_snapshot_id": change.old_id,
                        "new_snapshot_id": change.new_id})
        elif opts.verbose >= 1:
            print(f"old snapshot ID: {change.old_id} -> new snapshot ID: {change.new_id}")
    if opts.json:
        print_json({"message_type": "summary", "changed_snapshots": changed})
    elif text:
        print(f"modified tags on {changed} snapshots" if changed else "no snapshots were modified")
