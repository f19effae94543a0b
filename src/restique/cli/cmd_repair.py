"""restique repair index|packs|snapshots: repair a damaged repository. The subcommands are
imported only when they run, like the top-level commands."""
import importlib

import click

SUBCOMMANDS = {
    "index": ("cmd_repair_index", "index"),
    "packs": ("cmd_repair_packs", "packs"),
    "snapshots": ("cmd_repair_snapshots", "snapshots"),
}

HELP = """Repair the repository.

The "repair" command repairs damaged repositories. It provides subcommands to
rebuild the index, salvage damaged pack files, and repair broken snapshots.
"""


class LazySubcommands(click.Group):
    def list_commands(self, ctx):
        return sorted(SUBCOMMANDS)

    def get_command(self, ctx, name):
        if name not in SUBCOMMANDS:
            return None
        module, attr = SUBCOMMANDS[name]
        try:
            loaded = importlib.import_module(f"{__package__}.{module}")
        except ModuleNotFoundError as exc:
            if exc.name != f"{__package__}.{module}":
                raise
            return None  # a subcommand not written yet is an unknown command
        return getattr(loaded, attr)


@click.group("repair", cls=LazySubcommands, help=HELP, short_help="Repair the repository",
             invoke_without_command=True)
@click.pass_context
def repair(ctx):
    if ctx.invoked_subcommand is None:  # `repair` alone prints its help, as restic does
        click.echo(ctx.get_help())
