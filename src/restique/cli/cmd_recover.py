"""restique recover: save a snapshot of the trees no snapshot references any more."""
import click

HELP = """Recover data from the repository not referenced by snapshots.

The "recover" command builds a new snapshot from all directories it can find in
the raw data of the repository which are not referenced in an existing snapshot.
It can be used if, for example, a snapshot has been removed by accident with "forget".

EXIT STATUS
===========

Exit status is 0 if the command was successful.
Exit status is 1 if there was any error.
Exit status is 10 if the repository does not exist.
Exit status is 11 if the repository is already locked.
Exit status is 12 if the password is incorrect.
"""


@click.command("recover", help=HELP, short_help="Recover data from the repository not referenced by snapshots")
@click.pass_obj
def recover(opts):
    from ..operations.recover import recover as recover_trees
    from .cmd_repair_index import TextReport

    repo = opts.open_for_appending()
    report = TextReport(opts)
    result = recover_trees(repo, report=report)
    print(f"\nfound {len(result.roots)} unreferenced roots")
    if result.snapshot is None:
        report.message("no snapshot to write.")
    else:
        print(f"saved new snapshot {result.snapshot.short_id}")
