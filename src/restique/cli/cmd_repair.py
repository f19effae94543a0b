"""restique repair index|packs|snapshots: repair a damaged repository. The subcommands are
imported only when they run, and listed without importing them, like the top-level commands."""
import click

from .root import LazyGroup

# as main.COMMANDS: each subcommand's module, its name there, and its help as the listing shows it
SUBCOMMANDS = {
    "index": ("cmd_repair_index", "index", {"short_help": "Build a new index"}),
    "packs": ("cmd_repair_packs", "packs", {"short_help": "Salvage damaged pack files"}),
    "snapshots": ("cmd_repair_snapshots", "snapshots", {"help": "Repair snapshots."}),
}

HELP = """Repair the repository.

The "repair" command repairs damaged repositories. It provides subcommands to
rebuild the index, salvage damaged pack files, and repair broken snapshots.
"""


@click.group("repair", cls=LazyGroup, commands=SUBCOMMANDS, help=HELP, short_help="Repair the repository",
             invoke_without_command=True)
@click.pass_context
def repair(ctx):
    if ctx.invoked_subcommand is None:  # `repair` alone prints its help, as restic does
        click.echo(ctx.get_help())
