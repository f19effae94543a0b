"""restique options: every backend's extended options (`-o scheme.name=value`) with restic's
words, each one that its backend takes."""
import pytest

from conftest import run_restique as restique
from restique.backend.location import extended_options
from restique.backend.options import BackendOptions, Option
from restique.errors import UsageError


def test_listed_as_restic_lists_them():
    lines = restique(None, "options").stdout.decode().splitlines()
    assert lines[0] == "All Extended Options:"
    names = [line.split()[0] for line in lines[1:]]
    assert names == sorted(names) and len(names) == len(set(names))
    assert {"rest.connections", "s3.region", "s3.bucket-lookup", "sftp.command", "sftp.args",
            "rclone.program", "rclone.args", "rclone.timeout"} <= set(names)
    width = max(len(n) for n in names)
    for line, (name, text) in zip(lines[1:], extended_options()):
        assert line == f"  {name:<{width}}  {text}"


@pytest.mark.parametrize("name, text", extended_options())
def test_every_listed_option_is_taken_by_its_backend(name, text):
    import importlib

    scheme, _, option = name.partition(".")
    known = importlib.import_module(f"restique.backend.{scheme}").OPTIONS
    assert isinstance(known[option], Option) and text
    value = {"bucket-lookup": "path", "timeout": "10s"}.get(option, "1" if option == "connections" else "true")
    settings = BackendOptions(extended={name: value}).for_scheme(scheme, known)
    assert set(settings) == set(known)
    with pytest.raises(UsageError, match=f"option {scheme}.no-such-option is not known"):
        BackendOptions(extended={f"{scheme}.no-such-option": "1"}).for_scheme(scheme, known)
