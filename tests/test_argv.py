"""Global flags anywhere on the command line are moved before the command; a short flag with
a separate text value is handed to click in its long form (click otherwise tries `-r` as a
long option first and builds a "did you mean" list for it on every command line)."""
from restique.cli.argv import global_flags, hoist_global_flags, long_spellings
from restique.cli.root import cli


def hoisted(*argv):
    return hoist_global_flags(list(argv), global_flags(cli), long_spellings(cli))


def test_short_flags_with_values_take_their_long_form():
    assert hoisted("snapshots", "-r", "/srv/repo", "--json") == ["--repo", "/srv/repo", "--json", "snapshots"]
    assert hoisted("-r", "-", "ls", "latest") == ["--repo", "-", "ls", "latest"]


def test_other_forms_are_left_as_given():
    assert hoisted("-r/srv/repo", "snapshots") == ["-r/srv/repo", "snapshots"]
    assert hoisted("--repo=/srv/repo", "snapshots") == ["--repo=/srv/repo", "snapshots"]
    assert hoisted("snapshots", "-r") == ["-r", "snapshots"]  # click reports the missing value
    assert hoisted("-v", "-vv", "snapshots") == ["-v", "-vv", "snapshots"]
    assert hoisted("backup", "--", "-r", "x") == ["backup", "--", "-r", "x"]
