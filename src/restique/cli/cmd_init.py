"""restique init: create a new repository."""
import click

from .output import print_json

NOTE = """
Please note that knowledge of your password is required to access
the repository. Losing your password means that your data is
irrecoverably lost."""


@click.command()
@click.option("--repository-version", default="stable", help='repository format version to use, allowed values are a format version, "latest" and "stable"')
@click.option("--copy-chunker-params", is_flag=True, hidden=True)
@click.pass_obj
def init(opts, repository_version, copy_chunker_params):
    """Initialize a new repository."""
    from ..errors import UsageError
    from ..repository.config import parse_version
    from ..repository.repository import init_repository

    version = parse_version(repository_version)
    if copy_chunker_params:
        raise UsageError("--copy-chunker-params needs --from-repo, which comes with the copy command")
    location = opts.location()
    password = opts.password(new=True)
    repo = init_repository(location, password, version, compression_mode=opts.compression, pack_size=opts.pack_size)
    opts.repository = repo
    if opts.json:
        print_json({"message_type": "initialized", "id": repo.config.id, "repository": location})
    elif not opts.quiet:
        print(f"created restic repository {repo.config.id[:10]} at {location}")
        print(NOTE)
