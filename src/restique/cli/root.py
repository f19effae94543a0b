"""The `restique` command group: the global options, the GlobalOptions they make, and the
subcommands, each imported only when it runs."""
import gc
import os

import click

from ..errors import UsageError
from .context import GlobalOptions
from .main import COMMANDS, start_up_done


class LazyGroup(click.Group):
    """A group whose commands are imported only when they run, to keep start-up fast; the help
    lists them from the table `commands` (name -> module of this package, the command's name
    there, and its help as click.Command takes it), without importing them."""

    def __init__(self, *args, commands: dict, **kwargs):
        super().__init__(*args, **kwargs)
        self.lazy_commands = commands

    def list_commands(self, ctx):
        return sorted(self.lazy_commands)

    def format_commands(self, ctx, formatter):
        """click.Group's listing, each command's short help made by click from its help text."""
        listed = [click.Command(name, **self.lazy_commands[name][2]) for name in self.list_commands(ctx)]
        limit = formatter.width - 6 - max(len(command.name) for command in listed)
        with formatter.section("Commands"):
            formatter.write_dl([(command.name, command.get_short_help_str(limit)) for command in listed])

    def get_command(self, ctx, name):
        if name not in self.lazy_commands:
            return None
        module, attr, _ = self.lazy_commands[name]
        import importlib

        return getattr(importlib.import_module(f"{__package__}.{module}"), attr)


@click.group(cls=LazyGroup, commands=COMMANDS, invoke_without_command=True, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("-r", "--repo", envvar="RESTIC_REPOSITORY", help="repository to back up to or restore from")
@click.option("--repository-file", envvar="RESTIC_REPOSITORY_FILE", help="file to read the repository location from")
@click.option("-p", "--password-file", envvar="RESTIC_PASSWORD_FILE", help="file to read the repository password from")
@click.option("--password-command", envvar="RESTIC_PASSWORD_COMMAND", help="shell command to obtain the repository password from")
@click.option("--key-hint", envvar="RESTIC_KEY_HINT", help="key ID of key to try decrypting first")
@click.option("--json", "json_", is_flag=True, help="set output mode to JSON for commands that support it")
@click.option("-q", "--quiet", is_flag=True, help="do not output comprehensive progress report")
@click.option("-v", "--verbose", count=True, help="be verbose (specify multiple times for more)")
@click.option("--no-lock", is_flag=True, help="do not lock the repository, this allows some operations on read-only repositories")
@click.option("--no-cache", is_flag=True, help="do not use a local cache")
@click.option("--cleanup-cache", is_flag=True, help="auto remove old cache directories")
@click.option("--cache-dir", envvar="RESTIC_CACHE_DIR", help="set the cache directory")
@click.option("--compression", envvar="RESTIC_COMPRESSION", default="auto", help="compression mode (only available for repository format version 2), one of (auto|off|fastest|better|max)")
@click.option("--pack-size", envvar="RESTIC_PACK_SIZE", type=int, default=None, help="set target pack size in MiB")
@click.option("--retry-lock", default="0", help="retry to lock the repository if it is already locked, takes a value like 5m or 2h")
@click.option("-o", "--option", "options", multiple=True, help="set extended option (key=value, can be specified multiple times)")
@click.option("--limit-upload", type=int, default=0, help="limits uploads to a maximum rate in KiB/s")
@click.option("--limit-download", type=int, default=0, help="limits downloads to a maximum rate in KiB/s")
@click.option("--http-user-agent", default="", help="set a http user agent for outgoing http requests")
@click.option("--stuck-request-timeout", default="5m", metavar="duration", help="duration after which to retry stuck requests")
@click.option("--insecure-tls", is_flag=True, hidden=True)
@click.option("--cacert", multiple=True, hidden=True)
@click.option("--tls-client-cert", hidden=True)
@click.option("--no-extra-verify", is_flag=True, hidden=True)
@click.option("--insecure-no-password", is_flag=True, hidden=True)
@click.option("--profile", "profile", metavar="name", help="take settings from this profile of the profile file")
@click.option("--config", "config", metavar="file",
              help="profile file (default: $RESTIQUE_CONFIG, else ~/.config/restique/profiles.toml)")
@click.pass_context
def cli(ctx, quiet, verbose, insecure_no_password, profile, config, **_):
    """restique is a backup program which speaks restic's repository format."""
    _collect_from_now_on()
    start_up_done()  # the command's modules are imported
    if ctx.invoked_subcommand is None:  # `restique` alone prints the help, as restic does
        click.echo(ctx.get_help())
        ctx.exit(0)
    if quiet and verbose:
        raise UsageError("--quiet and --verbose cannot be specified at the same time")
    if insecure_no_password:
        raise UsageError("--insecure-no-password is not supported: every repository needs a password")
    if profile:
        from ..profiles import load_profile
        from ..profiles.flags import command_defaults

        chosen = load_profile(profile, config)
        ctx.default_map = command_defaults(chosen)  # each command's flags still win
        opts = options_with_profile(ctx, chosen)
    else:
        opts = _global_options(**ctx.params)
    ctx.obj = opts
    ctx.call_on_close(opts.close)


def options_with_profile(ctx: click.Context, profile) -> GlobalOptions:
    """The global options of the `restique` group ctx, with the profile's values wherever the
    command line gave none (the profile beats RESTIC_* variables: it was named explicitly)."""
    from ..profiles.flags import ALTERNATIVES, global_settings, literal_password

    values = dict(ctx.params)
    settings = global_settings(profile)
    has_password, password = literal_password(profile)
    if has_password:
        settings.update(password_file=None, password_command=None)
    for group in ALTERNATIVES:
        if any(name in settings for name in group) and not any(_given(ctx, name) for name in group):
            values.update({name: settings.get(name) for name in group})
    for name, value in settings.items():
        if name == "options":  # the profile's -o first, so that the command line's win
            values[name] = tuple(value) + tuple(values.get(name) or ())
        elif not any(name in group for group in ALTERNATIVES) and not _given(ctx, name):
            values[name] = value
    explicit_password = any(_given(ctx, name) for name in ALTERNATIVES[1])
    return _global_options(**values, literal_password=password if has_password and not explicit_password else None)


def _collect_from_now_on() -> None:
    """Start-up is over. What it made (modules, classes, click's parameters) lives until
    exit, so it is frozen out of every later collection; main() kept the collector off until
    now, as start-up makes no garbage worth the passes over its many new objects."""
    gc.freeze()
    gc.enable()


def _given(ctx: click.Context, name: str) -> bool:
    return ctx.get_parameter_source(name) == click.core.ParameterSource.COMMANDLINE


def _global_options(repo, repository_file, password_file, password_command, key_hint, json_, quiet, verbose,
                    no_lock, no_cache, cleanup_cache, cache_dir, compression, pack_size, retry_lock, options,
                    limit_upload, limit_download, literal_password=None, **rest) -> GlobalOptions:
    from ..repository.compression import check_mode

    return GlobalOptions(
        literal_password=literal_password,
        repo=repo,
        repository_file=repository_file,
        password_file=password_file,
        password_command=password_command,
        key_hint=key_hint,
        json=json_,
        quiet=quiet,
        verbose=verbose,
        no_lock=no_lock,
        no_cache=no_cache,
        cache_dir=cache_dir,
        cleanup_cache=cleanup_cache,
        compression=check_mode(compression),
        pack_size=pack_size,
        retry_lock=_seconds(retry_lock),
        options=list(options),
        backend_options=_backend_options(options, limit_upload, limit_download, **rest),
    )



def _seconds(duration: str) -> float:
    """A duration flag's value; the default "0" without loading the parser."""
    if duration == "0":
        return 0.0
    from .durations import parse_duration

    return parse_duration(duration)


def _stuck_timeout(text: str) -> float:
    """--stuck-request-timeout's seconds (0: restic's default, 5m)."""
    from ..backend.options import STUCK_TIMEOUT

    if text == "5m":
        return STUCK_TIMEOUT
    invalid = UsageError(f'invalid argument "{text}" for "--stuck-request-timeout" flag: '
                         f'time: invalid duration "{text}"')
    if not text.strip():  # Go's time.ParseDuration refuses an empty text
        raise invalid
    try:
        seconds = _seconds(text)
    except UsageError:
        raise invalid from None
    return seconds if seconds > 0 else STUCK_TIMEOUT


def _backend_options(options, limit_upload, limit_download, insecure_tls, cacert, tls_client_cert, http_user_agent,
                     stuck_request_timeout, **_):
    """-o key=value, --limit-*, the TLS flags; RESTIQUE_BACKEND_RETRY_TIME (a duration such as
    2s) shortens the time transient backend errors are retried (15 minutes), for tests."""
    from ..backend.options import BackendOptions, parse_extended

    if limit_upload < 0 or limit_download < 0:
        raise UsageError("--limit-upload and --limit-download must not be negative")
    settings = BackendOptions(extended=parse_extended(options), limit_upload=limit_upload,
                              limit_download=limit_download, insecure_tls=insecure_tls,
                              cacert=tuple(cacert) or tuple(filter(None, os.environ.get("RESTIC_CACERT", "").split(","))),
                              tls_client_cert=tls_client_cert or os.environ.get("RESTIC_TLS_CLIENT_CERT") or None,
                              http_user_agent=http_user_agent, stuck_request_timeout=_stuck_timeout(stuck_request_timeout))
    retry_time = os.environ.get("RESTIQUE_BACKEND_RETRY_TIME")
    if retry_time:
        settings.retry_max_time = _seconds(retry_time)
    return settings
