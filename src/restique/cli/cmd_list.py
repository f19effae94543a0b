"""restique list: list the files or blobs of a repository."""
import click

KINDS = ("blobs", "packs", "index", "snapshots", "keys", "locks")


@click.command("list")
@click.argument("kind", required=False)
@click.pass_obj
def list_(opts, kind):
    """List objects in the repository: blobs, packs, index, snapshots, keys or locks."""
    from ..errors import UsageError

    if not kind:
        raise UsageError("type not specified, usage: list [flags] [blobs|packs|index|snapshots|keys|locks]")
    if kind not in KINDS:
        raise UsageError("invalid type")
    repo = opts.open_unlocked() if kind == "locks" else opts.open_for_reading()
    if kind == "blobs":
        for index_id in repo.list_ids("index"):
            index = repo.load_index_file(index_id)
            lines = [f"{e.type} {e.id}" for entries in index.packs.values() for e in entries]
            if lines:
                print("\n".join(lines))
        return
    ids = repo.list_ids(kind)
    if ids:
        print("\n".join(ids))
