"""restique repair packs ID...: salvage the intact blobs of damaged pack files."""
import re

import click

HELP = """Salvage damaged pack files.

The "repair packs" command extracts intact blobs from the specified pack files, rebuilds
the index to remove the damaged pack files and removes the pack files from the repository.
A copy of each pack file is saved as pack-<ID> in the current folder first.

EXIT STATUS
===========

Exit status is 0 if the command was successful.
Exit status is 1 if there was any error.
Exit status is 10 if the repository does not exist.
Exit status is 11 if the repository is already locked.
Exit status is 12 if the password is incorrect.
"""

_FULL_ID = re.compile(r"^[0-9a-f]{64}$")


def _parse_ids(args):
    from ..errors import UsageError

    for arg in args:
        if len(arg) != 64:
            raise UsageError(f"invalid ID {arg!r}: invalid length for ID")
        if not _FULL_ID.match(arg):
            raise UsageError(f"invalid ID {arg!r}: not a hexadecimal ID")
    if not args:
        raise UsageError("no ids specified")
    return list(dict.fromkeys(args))


@click.command("packs", help=HELP, short_help="Salvage damaged pack files")
@click.argument("pack_ids", nargs=-1)
@click.pass_obj
def packs(opts, pack_ids):
    import sys

    from ..operations.repair_packs import RepairPacksOptions, repair_packs
    from .cmd_repair_index import TextReport

    ids = _parse_ids(pack_ids)
    repo = opts.open_exclusively()
    report = TextReport(opts)
    result = repair_packs(repo, ids, RepairPacksOptions(backup_dir="."), report)
    if result.lost:
        report.warning(f"{len(result.lost)} blobs could not be salvaged")
    sys.stdout.flush()
    print("\nUse `restique repair snapshots --forget` to remove the corrupted data blobs from all snapshots",
          file=sys.stderr)
