"""restique migrate: list the migrations a repository can take, or apply them by name, with
current restic's messages (it gives the reason a migration cannot be applied and names
unknown migrations, where 0.14 said "check failed" and nothing)."""
import sys

import click


def _err(text: str) -> None:
    print(text, file=sys.stderr)


def _check_repository(opts):
    """The repository check restic runs before a migration that needs an intact repository:
    `restique check`'s own text, on the repository migrate already holds locked."""
    from ..errors import RestiqueError
    from ..operations.check import CheckOptions, check
    from .cmd_check import _Printer, _TextReport, _print_ending, _temporary_cache

    def run(repo) -> None:
        import shutil

        printer = _Printer(opts)
        cache_dir = _temporary_cache(opts, False, printer)
        try:
            summary = check(repo, CheckOptions(), _TextReport(printer))
            _print_ending(printer, summary)
            if summary.errors_found:
                raise RestiqueError("repository contains errors")
            printer.out("no errors were found")
        finally:
            if cache_dir:
                shutil.rmtree(cache_dir, ignore_errors=True)

    return run


@click.command("migrate")
@click.option("-f", "--force", is_flag=True, help="apply a migration a second time")
@click.argument("names", nargs=-1, metavar="[migration name] [...]")
@click.pass_obj
def migrate(opts, force, names):
    """Apply migrations.

    The "migrate" command checks which migrations can be applied for a repository
    and prints a list with available migration names. If one or more migration
    names are specified, these migrations are applied.

    Exit status is 0 if the command was successful, 1 if there was any error, 10 if the
    repository does not exist, 11 if it is already locked, 12 if the password is incorrect.
    """
    from ..operations.migrate import MigrateOptions, available_migrations, migrate as run_migrations

    repo = opts.open_exclusively()
    say = (lambda text: None) if opts.quiet else print  # restic ignores --json here
    if not names:
        say("available migrations:")
        found = available_migrations(repo)
        for migration in found:
            say(f"  {migration.name}\t{migration.description}")
        if not found:
            say("no migrations found")
        return
    options = MigrateOptions(names=names, force=force, check_repository=_check_repository(opts))
    for event in run_migrations(repo, options):
        if event.kind == "unknown":
            _err(f"unknown migration {event.name}")
        elif event.kind == "refused":
            _err(f"migration {event.name} cannot be applied: {event.reason}\n"
                 "If you want to apply this migration anyway, re-run with option --force")
        elif event.kind == "forced":
            _err(f"check for migration {event.name} failed, continuing anyway")
        elif event.kind == "checking":
            say("checking repository integrity...")
        elif event.kind == "applying":
            say(f"applying migration {event.name}...")
        elif event.kind == "applied":
            say(f"migration {event.name}: success")
        elif event.kind == "failed":
            _err(f"migration {event.name} failed: {event.error}")
