"""restique version."""
import platform
import sys

import click


@click.command()
@click.pass_obj
def version(opts):
    """Print version information."""
    from .. import __version__
    from .output import print_json

    arch = {"x86_64": "amd64", "aarch64": "arm64"}.get(platform.machine(), platform.machine())
    py = "python" + platform.python_version()
    if opts.json:
        print_json({"message_type": "version", "version": __version__, "go_version": py,
                    "go_os": sys.platform, "go_arch": arch})
    else:
        print(f"restique {__version__} compiled with {py} on {sys.platform}/{arch}")
