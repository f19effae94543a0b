"""restique unlock: remove stale locks (or all of them)."""
import click


@click.command()
@click.option("--remove-all", is_flag=True, help="remove all locks, even non-stale ones")
@click.pass_obj
def unlock(opts, remove_all):
    """Remove locks other processes created."""
    from ..repository.locks import remove_locks

    repo = opts.open_unlocked()
    remove_locks(repo, stale_only=not remove_all)
    if not opts.quiet:
        print("successfully removed locks")
