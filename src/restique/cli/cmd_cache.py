"""restique cache: list the local cache folders, or remove the old ones."""
import sys

import click


@click.command()
@click.option("--cleanup", is_flag=True, help="remove old cache directories")
@click.option("--max-age", "max_age", default="30", metavar="days",
              help="max age in days for cache directories to be considered old (default 30)")
@click.option("--no-size", is_flag=True, help="do not output the size of the cache directories")
@click.argument("args", nargs=-1)
@click.pass_obj
def cache(opts, cleanup, max_age, no_size, args):
    """Operate on local cache directories.

    The "cache" command allows listing and cleaning local cache directories.

    \b
    EXIT STATUS
    ===========
    Exit status is 0 if the command was successful, and non-zero if there was any error.
    """
    from ..backend.cache_dir import default_base
    from ..errors import UsageError
    from ..operations.cache import cache_folders, cleanup_old

    if args:
        raise UsageError("the cache command expects no arguments, only options - "
                         "please see `restic help cache` for usage and flags")
    if opts.no_cache:
        raise UsageError("Refusing to do anything, the cache is disabled")
    days = _max_age_days(max_age)
    base = opts.cache_dir or default_base()
    verbose = not opts.quiet

    if cleanup or opts.cleanup_cache:
        removed = cleanup_old(base, days, lambda message: print(message, file=sys.stderr))
        if verbose:
            print(f"remove {removed} old cache directories" if removed else "no old cache dirs found")
        return
    folders = cache_folders(base, days, sizes=not no_size)
    if not folders:
        print(f"no cache dirs found, basedir is {base}")
        return
    print(_listing(folders, base, no_size), end="")


def _listing(folders, base: str, no_size: bool) -> str:
    """restic's table: 10-digit repository ids, days unused, `yes` for old folders, sizes
    right-aligned in 11 columns."""
    from .fmt import format_bytes
    from .output import table

    header = ["Repo ID", "Last Used", "Old"] + ([] if no_size else ["Size"])
    rows = []
    for folder in folders:
        name = folder.name if folder.name.startswith("restic-check-cache-") else folder.name[:10]
        row = [name, f"{folder.days_unused} days ago", "yes" if folder.old else ""]
        if not no_size:
            row.append("%11s" % format_bytes(folder.size))
        rows.append(row)
    return table(header, rows, [f"{len(folders)} cache dirs in {base}"])


def _max_age_days(text: str) -> int:
    from ..errors import UsageError

    if not text.isdigit():
        raise UsageError(f'invalid argument "{text}" for "--max-age" flag: '
                         f'strconv.ParseUint: parsing "{text}": invalid syntax')
    return int(text)
