"""The `restique` command: global options, the subcommands, and turning every failure into
one line on stderr with restic's exit code."""
import gc
import os
import signal
import sys
import threading

import click

from ..errors import RestiqueError, UsageError
from .argv import global_flags, hoist_global_flags
from .context import GlobalOptions

COMMANDS = {
    "init": ("cmd_init", "init"),
    "key": ("cmd_key", "key"),
    "cat": ("cmd_cat", "cat"),
    "list": ("cmd_list", "list_"),
    "unlock": ("cmd_unlock", "unlock"),
    "version": ("cmd_version", "version"),
    "backup": ("cmd_backup", "backup"),
    "snapshots": ("cmd_snapshots", "snapshots"),
    "restore": ("cmd_restore", "restore"),
    "diff": ("cmd_diff", "diff"),
    "help": ("cmd_help", "help_"),
    "ls": ("cmd_ls", "ls"),
    "stats": ("cmd_stats", "stats"),
    "find": ("cmd_find", "find"),
    "dump": ("cmd_dump", "dump"),
    "forget": ("cmd_forget", "forget"),
    "check": ("cmd_check", "check"),
    "copy": ("cmd_copy", "copy"),
    "migrate": ("cmd_migrate", "migrate"),
    "tag": ("cmd_tag", "tag"),
    "rewrite": ("cmd_rewrite", "rewrite"),
    "repair": ("cmd_repair", "repair"),
    "rebuild-index": ("cmd_repair_index", "rebuild_index"),
    "prune": ("cmd_prune", "prune"),
    "recover": ("cmd_recover", "recover"),
    "mount": ("cmd_mount", "mount"),
    "serve": ("cmd_serve", "serve"),
    "cache": ("cmd_cache", "cache"),
    "run": ("cmd_run", "run"),
    "schedule": ("cmd_schedule", "schedule"),
}


class LazyGroup(click.Group):
    """Imports a command's module only when it runs, to keep start-up fast."""

    def list_commands(self, ctx):
        return sorted(COMMANDS)

    def get_command(self, ctx, name):
        if name not in COMMANDS:
            return None
        module, attr = COMMANDS[name]
        import importlib

        return getattr(importlib.import_module(f"{__package__}.{module}"), attr)


@click.group(cls=LazyGroup, invoke_without_command=True, context_settings={"help_option_names": ["-h", "--help"]})
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
    from .durations import parse_duration

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
        retry_lock=parse_duration(retry_lock),
        options=list(options),
        backend_options=_backend_options(options, limit_upload, limit_download, **rest),
    )


def _backend_options(options, limit_upload, limit_download, insecure_tls, cacert, tls_client_cert, **_):
    """-o key=value, --limit-*, the TLS flags; RESTIQUE_BACKEND_RETRY_TIME (a duration such as
    2s) shortens the time transient backend errors are retried (15 minutes), for tests."""
    from ..backend.options import BackendOptions, parse_extended
    from .durations import parse_duration

    if limit_upload < 0 or limit_download < 0:
        raise UsageError("--limit-upload and --limit-download must not be negative")
    settings = BackendOptions(extended=parse_extended(options), limit_upload=limit_upload,
                              limit_download=limit_download, insecure_tls=insecure_tls,
                              cacert=tuple(cacert) or tuple(filter(None, os.environ.get("RESTIC_CACERT", "").split(","))),
                              tls_client_cert=tls_client_cert or os.environ.get("RESTIC_TLS_CLIENT_CERT") or None)
    retry_time = os.environ.get("RESTIQUE_BACKEND_RETRY_TIME")
    if retry_time:
        settings.retry_max_time = parse_duration(retry_time)
    return settings


def _usage_message(exc: click.exceptions.UsageError) -> str:
    if isinstance(exc, click.exceptions.NoSuchOption):
        return f"unknown flag: {exc.option_name}"
    if isinstance(exc, click.exceptions.BadOptionUsage) and "requires an argument" in exc.message:
        return f"flag needs an argument: {exc.option_name}"
    message = exc.format_message()
    if message.startswith("No such command"):
        name = message.split("'")[1] if "'" in message else message
        return f'unknown command "{name}" for "restique"'
    return message.replace("\n", " ")


class Terminated(BaseException):
    """SIGTERM/SIGHUP: unwind like Ctrl-C so locks are removed."""


_hung_up = threading.Event()  # a real hangup arrived: exit as SIGHUP, whatever woke us


def _terminate(signum, frame):
    _stop_retries()
    raise Terminated(signal.SIGHUP if _hung_up.is_set() else signum)


def _interrupt(signum, frame):
    _stop_retries()
    signal.default_int_handler(signum, frame)


def _stop_retries() -> None:
    """A signal also ends a backend's retrying at once, as restic cancels its context: a
    command whose server is gone stops now, not after its pauses."""
    from ..backend.retry import stop_retrying

    stop_retrying()


def _watch_hangups() -> None:
    """restic asks whether the process named in a lock file is alive by sending it SIGHUP, and
    ignores SIGHUP itself; so `restic unlock` must not stop a running restique. SIGHUP is
    blocked in every thread and collected here with its sender: a terminal hangup (sent by the
    kernel) or any other process stops the command like SIGTERM, restic's probe is ignored.
    Threads inherit the mask, so this runs before any other thread starts."""
    if signal.getsignal(signal.SIGHUP) is signal.SIG_IGN:  # keep nohup working
        return
    signal.signal(signal.SIGHUP, _terminate)
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGHUP})
    threading.Thread(target=_collect_hangups, name="hangup", daemon=True).start()


def _collect_hangups() -> None:
    while True:
        info = signal.sigwaitinfo({signal.SIGHUP})
        if not _is_lock_probe(info.si_pid):
            break
    _hung_up.set()
    # a signal to the main thread interrupts a blocking call there, as SIGHUP itself would
    signal.pthread_kill(threading.main_thread().ident, signal.SIGTERM)


def _is_lock_probe(sender: int) -> bool:
    """Sent by a restic process, or by one that is already gone (a probe is short-lived;
    a kernel hangup has sender 0)."""
    if sender <= 0:
        return False
    try:
        with open(f"/proc/{sender}/comm") as f:
            return f.read().strip() == "restic"
    except OSError:
        return True


def main(argv=None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    gc.disable()  # until the command starts: see _collect_from_now_on
    # like restic (Go's signal.Notify), handle SIGINT even when started with it ignored,
    # as background jobs of a script are: `kill -INT` must still stop a backup cleanly
    signal.signal(signal.SIGINT, _interrupt)
    signal.signal(signal.SIGTERM, _terminate)
    _watch_hangups()
    code = 0
    try:
        # without standalone mode click returns (not raises) the code of a ctx.exit()/Exit
        argv = hoist_global_flags(argv, global_flags(cli))
        returned = cli.main(args=argv, prog_name="restique", standalone_mode=False)
        if isinstance(returned, int):
            code = returned
    except click.exceptions.Exit as exc:
        code = exc.exit_code
    except click.exceptions.Abort:
        print("\nsignal interrupt received, cleaning up", file=sys.stderr)
        code = 130
    except click.exceptions.UsageError as exc:
        print(_usage_message(exc), file=sys.stderr)
        code = 1
    except RestiqueError as exc:
        one_line = " ".join(str(exc).strip().split("\n"))  # errors are always one line
        print(f"Fatal: {one_line}", file=sys.stderr)
        code = exc.exit_code
    except KeyboardInterrupt:
        print("signal interrupt received, cleaning up", file=sys.stderr)
        code = 130
    except Terminated as exc:
        code = 128 + (signal.SIGHUP if _hung_up.is_set() else exc.args[0])
    except BrokenPipeError:
        code = 1
        _silence_stdout()
    except OSError as exc:
        where = f": {exc.filename}" if exc.filename else ""
        print(f"Fatal: {exc.strerror or exc}{where}", file=sys.stderr)
        code = 1
    except Exception as exc:  # a bug: still one line, details only on request
        if os.environ.get("RESTIQUE_DEBUG"):
            raise
        print(f"Fatal: internal error: {type(exc).__name__}: {exc} (set RESTIQUE_DEBUG=1 for details)", file=sys.stderr)
        code = 1
    try:
        sys.stdout.flush()
    except BrokenPipeError:
        _silence_stdout()
    # what is still alive is freed by the exit itself: the interpreter's last collection
    # need not walk all of it (a tenth of a short command's time)
    gc.freeze()
    gc.enable()
    sys.exit(code)


def _silence_stdout():
    # Python would complain again at exit when flushing a closed pipe.
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
