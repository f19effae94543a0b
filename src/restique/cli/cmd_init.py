"""restique init: create a new repository."""
import click

from .options import from_repo_options
from .output import print_json

NOTE = """
Please note that knowledge of your password is required to access
the repository. Losing your password means that your data is
irrecoverably lost."""


@click.command()
@click.option("--repository-version", default="stable", help='repository format version to use, allowed values are a format version, "latest" and "stable"')
@click.option("--copy-chunker-params", is_flag=True, help="copy chunker parameters from the secondary repository (useful with the copy command)")
@from_repo_options("to copy chunker parameters from")
@click.pass_obj
def init(opts, repository_version, copy_chunker_params, source):
    """Initialize a new repository."""
    from ..errors import UsageError
    from ..repository.config import parse_version
    from ..repository.repository import init_repository

    version = parse_version(repository_version)
    polynomial = None
    if copy_chunker_params:
        source.check()
        polynomial = opts.secondary(source).open_unlocked().config.chunker_polynomial
    elif source.given:
        raise UsageError("Secondary repository must only be specified when copying the chunker parameters")
    location = opts.location()
    password = opts.password(new=True)
    repo = init_repository(opts.backend(), password, version, polynomial=polynomial,
                           compression_mode=opts.compression, pack_size=opts.pack_size)
    opts.repository = repo
    if opts.json:
        print_json({"message_type": "initialized", "id": repo.config.id, "repository": location})
    elif not opts.quiet:
        print(f"created restic repository {repo.config.id[:10]} at {location}")
        print(NOTE)
