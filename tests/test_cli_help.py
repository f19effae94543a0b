"""`restique --help` lists the commands from the table in cli.main, without importing them:
the listing is the one click makes from the imported commands, at every width."""
import importlib
import subprocess
import sys

import click
import pytest

from conftest import clean_env
from restique.cli.main import COMMANDS
from restique.cli.root import cli


def imported(name: str) -> click.Command:
    module, attribute, _ = COMMANDS[name]
    return getattr(importlib.import_module(f"restique.cli.{module}"), attribute)


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_the_table_lists_each_command_as_its_own_help_does(name):
    command = imported(name)
    listed = click.Command(name, **COMMANDS[name][2])
    assert not command.hidden and not command.deprecated
    for limit in (10, 25, 45, 61, 62, 200):
        assert listed.get_short_help_str(limit) == command.get_short_help_str(limit)


@pytest.mark.parametrize("width", [30, 60, 80, 200])
def test_the_listing_is_clicks_own(width):
    def listing(format_commands) -> str:
        ctx = click.Context(cli, info_name="restique", terminal_width=width, max_content_width=width)
        formatter = ctx.make_formatter()
        format_commands(ctx, formatter)
        return formatter.getvalue()

    ours = listing(cli.format_commands)
    assert ours.startswith("Commands:\n") and "  backup " in ours
    assert ours == listing(lambda ctx, formatter: click.Group.format_commands(cli, ctx, formatter))


def test_help_imports_no_command():
    probe = ("import sys\nfrom restique.cli.main import main\ntry:\n    main(['--help'])\nexcept SystemExit:\n    pass\n"
             "print(sorted(m for m in sys.modules if '.cli.cmd_' in m))")
    out = subprocess.run([sys.executable, "-c", probe], env=clean_env(), capture_output=True, check=True).stdout
    assert out.decode().splitlines()[-1] == "[]"
    assert b"  version        Print version information." in out
