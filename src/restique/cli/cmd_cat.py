"""restique cat: print the internal objects of a repository."""
import click

from .output import print_json_indent, write_bytes

TYPES = ("config", "masterkey", "index", "snapshot", "key", "lock", "pack", "blob", "tree")
NEEDS_ID = ("index", "snapshot", "key", "lock", "pack", "blob", "tree")


@click.command()
@click.argument("args", nargs=-1)
@click.pass_obj
def cat(opts, args):
    """Print internal objects to stdout.

    Usage: cat [masterkey|config|pack ID|blob ID|snapshot ID|index ID|key ID|lock ID|tree snapshot:subfolder]
    """
    from ..errors import UsageError
    from ..model.ids import parse_id

    if not args or (args[0] in NEEDS_ID and len(args) < 2):
        raise UsageError("type or ID not specified")
    kind = args[0]
    if kind not in TYPES:
        raise UsageError(f"invalid type {kind!r}")
    arg = args[1] if len(args) > 1 else ""
    if kind in ("index", "key", "lock", "pack", "blob"):
        arg = parse_id(arg)
    repo = opts.open_for_reading()
    HANDLERS[kind](repo, arg)


def _config(repo, _):
    print_json_indent(repo.config.to_json())


def _masterkey(repo, _):
    print_json_indent(repo.key.to_json())


def _index(repo, index_id):
    write_bytes(repo.load_unpacked("index", index_id) + b"\n")


def _snapshot(repo, spec):
    from ..operations.snapshot_lookup import find_snapshot_id

    # the file as stored, not decoded into a Snapshot
    print_json_indent(repo.load_json("snapshot", find_snapshot_id(repo, spec)))


def _key(repo, key_id):
    from ..repository.keys import load_key

    print_json_indent(load_key(repo.backend, key_id).to_json())


def _lock(repo, lock_id):
    print_json_indent(repo.load_json("lock", lock_id))


def _pack(repo, pack_id):
    from ..errors import IntegrityError
    from ..model.ids import hash_id

    data = repo.load_pack(pack_id)
    write_bytes(data)
    if hash_id(data) != pack_id:
        raise IntegrityError(f"pack {pack_id[:8]}: content does not match its ID")


def _blob(repo, blob_id):
    from ..errors import NotFound

    repo.load_index()
    found = repo.index.find_any_type(blob_id)
    if found is None:
        raise NotFound("blob not found")
    blob_type, loc = found
    write_bytes(repo.blobs.load(blob_type, blob_id, loc))


def _tree(repo, spec):
    from ..operations.snapshot_lookup import find_snapshot

    _, tree_id = find_snapshot(repo, spec)
    write_bytes(repo.load_blob("tree", tree_id))


HANDLERS = {
    "config": _config,
    "masterkey": _masterkey,
    "index": _index,
    "snapshot": _snapshot,
    "key": _key,
    "lock": _lock,
    "pack": _pack,
    "blob": _blob,
    "tree": _tree,
}
