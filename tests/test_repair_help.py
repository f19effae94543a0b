"""`restique repair --help` lists its subcommands from cmd_repair's table (root.LazyGroup, as
the top-level help does), without importing them: the listing is the one click makes from the
imported subcommands."""
import importlib
import subprocess
import sys

import click
import pytest

from conftest import clean_env
from restique.cli.cmd_repair import SUBCOMMANDS, repair


def imported(name: str) -> click.Command:
    module, attribute, _ = SUBCOMMANDS[name]
    return getattr(importlib.import_module(f"restique.cli.{module}"), attribute)


@pytest.mark.parametrize("name", sorted(SUBCOMMANDS))
def test_the_table_lists_each_subcommand_as_its_own_help_does(name):
    command = imported(name)
    listed = click.Command(name, **SUBCOMMANDS[name][2])
    assert command.name == name and not command.hidden
    for limit in (10, 25, 45, 61, 62, 200):
        assert listed.get_short_help_str(limit) == command.get_short_help_str(limit)


@pytest.mark.parametrize("width", [30, 60, 80, 200])
def test_the_listing_is_clicks_own(width):
    def listing(format_commands) -> str:
        ctx = click.Context(repair, info_name="repair", terminal_width=width, max_content_width=width)
        formatter = ctx.make_formatter()
        format_commands(ctx, formatter)
        return formatter.getvalue()

    ours = listing(repair.format_commands)
    assert ours.startswith("Commands:\n") and "  packs " in ours
    assert ours == listing(lambda ctx, formatter: click.Group.format_commands(repair, ctx, formatter))


def test_repair_help_imports_no_subcommand():
    probe = ("import sys\nfrom restique.cli.main import main\ntry:\n    main(['repair', '--help'])\n"
             "except SystemExit:\n    pass\nprint(sorted(m for m in sys.modules if '.cli.cmd_repair_' in m))")
    out = subprocess.run([sys.executable, "-c", probe], env=clean_env(), capture_output=True, check=True).stdout
    assert out.decode().splitlines()[-1] == "[]"
    assert b"  snapshots  Repair snapshots." in out and b"  index      Build a new index" in out
