"""The `restique` command: signals, and turning every failure into one line on stderr with
restic's exit code. The command group itself (root.py: click, the global options) is loaded
only after the key derivation has been started (key_prefetch), so that the two overlap."""
import gc
import os
import signal
import sys
import threading

from ..interrupts import held_back, hold, reset as reset_holds
from . import key_prefetch, status_ticks

# every command: its module and the command's name there (imported only when it runs), and
# how `restique --help` lists it, as click.Command's help (the first paragraph, which click
# shortens to fit) or short_help (listed as it is): the command's own, which a test checks
COMMANDS = {
    "init": ("cmd_init", "init", {"help": "Initialize a new repository."}),
    "key": ("cmd_key", "key", {"help": "Manage keys (passwords)."}),
    "cat": ("cmd_cat", "cat", {"help": "Print internal objects to stdout."}),
    "list": ("cmd_list", "list_",
             {"help": "List objects in the repository: blobs, packs, index, snapshots, keys or locks."}),
    "unlock": ("cmd_unlock", "unlock", {"help": "Remove locks other processes created."}),
    "version": ("cmd_version", "version", {"help": "Print version information."}),
    "backup": ("cmd_backup", "backup", {"help": "Create a new backup of files and/or directories."}),
    "snapshots": ("cmd_snapshots", "snapshots", {"help": "List all snapshots."}),
    "restore": ("cmd_restore", "restore", {"help": "Extract the data from a snapshot."}),
    "diff": ("cmd_diff", "diff", {"help": "Show differences between two snapshots."}),
    "help": ("cmd_help", "help_", {"help": "Help about any command."}),
    "ls": ("cmd_ls", "ls", {"help": "List files in a snapshot."}),
    "stats": ("cmd_stats", "stats", {"help": "Scan the repository and show basic statistics."}),
    "find": ("cmd_find", "find", {"help": "Find a file, a directory or restic IDs."}),
    "dump": ("cmd_dump", "dump", {"help": "Print backed-up files or folders to stdout."}),
    "forget": ("cmd_forget", "forget", {"help": "Remove snapshots from the repository."}),
    "check": ("cmd_check", "check", {"help": "Check the repository for errors."}),
    "copy": ("cmd_copy", "copy", {"help": "Copy snapshots from one repository to another."}),
    "migrate": ("cmd_migrate", "migrate", {"help": "Apply migrations."}),
    "tag": ("cmd_tag", "tag", {"help": "Modify tags on snapshots."}),
    "rewrite": ("cmd_rewrite", "rewrite",
                {"help": "Rewrite snapshots to exclude files or change metadata."}),
    "repair": ("cmd_repair", "repair", {"short_help": "Repair the repository"}),
    "rebuild-index": ("cmd_repair_index", "rebuild_index", {"short_help": "Build a new index"}),
    "prune": ("cmd_prune", "prune", {"help": "Remove unneeded data from the repository."}),
    "recover": ("cmd_recover", "recover",
                {"short_help": "Recover data from the repository not referenced by snapshots"}),
    "mount": ("cmd_mount", "mount", {"help": "Mount the repository."}),
    "serve": ("cmd_serve", "serve", {"help": "Serve the repository's snapshots over HTTP."}),
    "cache": ("cmd_cache", "cache", {"help": "Operate on local cache directories."}),
    "options": ("cmd_options", "options", {"help": "Print list of extended options."}),
    "generate": ("cmd_generate", "generate",
                 {"help": "Generate manual pages and auto-completion files (bash, fish, zsh)."}),
    "run": ("cmd_run", "run",
            {"help": "Run a profile's job: backup, forget (and prune), check, with its hooks."}),
    "schedule": ("cmd_schedule", "schedule",
                 {"help": "Run a profile's job (`restique run NAME`) on a schedule."}),
}


def __getattr__(name: str):
    """The command group's names, as this module had them before root.py held them."""
    if name in ("cli", "options_with_profile"):
        from . import root

        return getattr(root, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


class Terminated(BaseException):
    """SIGTERM/SIGHUP: unwind like Ctrl-C so locks are removed."""


_hung_up = threading.Event()  # a real hangup arrived: exit as SIGHUP, whatever woke us
_received = []  # the stop signals that arrived, first first


def _terminate(signum, frame):
    if _stopping(signum):
        raise Terminated(signal.SIGHUP if _hung_up.is_set() else signum)


def _interrupt(signum, frame):
    if _stopping(signum):
        signal.default_int_handler(signum, frame)


def _stopping(signum) -> bool:
    """Note a stop signal; False while a hold keeps it back (interrupts), or once the command
    is over and the exit has begun. A signal also ends a backend's retrying at once, as restic
    cancels its context: a command whose server is gone stops now, not after its pauses (retry
    is looked up, not imported: a handler may run in the middle of an import)."""
    _received.append(signum)
    retry = sys.modules.get("restique.backend.retry")
    if retry is not None:
        retry.stop_retrying()
    if _exiting:
        return _during_the_exit(signum)
    return not held_back(signum)


def _during_the_exit(signum) -> bool:
    """A stop signal once the command is over: the first is noted and the exit goes on, with
    the command's own exit code; a second means the exit is taking too long for its sender (a
    thread it waits for, say), and ends the process at once with restic's code for it."""
    _exit_signals.append(signum)
    if len(_exit_signals) > 1:
        os._exit(128 + signum)
    return False


_start_up = None  # the hold over start-up: until the command's modules are imported
# the command is over and its exit code decided: a signal now would only interrupt the
# interpreter's exit (its atexit calls printed a traceback for the exception), so it is noted
# and the exit goes on (a plain flag: set by one store, with no point where a handler can run
# between deciding and setting it)
_exiting = False
_exit_signals = []  # the stop signals that came during the exit


def start_up_done() -> None:
    """Start-up is over (root.cli): a signal that arrived during it is handled now."""
    if _start_up is not None:
        _start_up.release()


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
    """Run the command line argv (default: sys.argv); SystemExit with its exit code."""
    global _start_up, _exiting
    argv = list(sys.argv[1:] if argv is None else argv)
    gc.disable()  # until the command starts: see root._collect_from_now_on
    _exiting = False
    _exit_signals.clear()
    _received.clear()  # a program may run several command lines
    reset_holds()
    _start_up = hold()  # an interrupted import can crash an extension module
    _handle_signals()
    try:
        key_prefetch.start(argv, COMMANDS, interrupted=lambda: bool(_received))
        code = _run(argv)
        start_up_done()  # when the command line was refused before root.cli
        _flush_stdout()
        _exiting = True
    except (KeyboardInterrupt, Terminated) as exc:  # before the command began, or after it ended
        _exiting = True
        code = _stopped_by_signal(exc)
    # what is still alive is freed by the exit itself: the interpreter's last collection
    # need not walk all of it (a tenth of a short command's time)
    gc.freeze()
    gc.enable()
    sys.exit(code)


def _handle_signals() -> None:
    # like restic (Go's signal.Notify), handle SIGINT even when started with it ignored,
    # as background jobs of a script are: `kill -INT` must still stop a backup cleanly
    signal.signal(signal.SIGINT, _interrupt)
    signal.signal(signal.SIGTERM, _terminate)
    status_ticks.install()  # SIGUSR1 asks for a status, as in restic (its default would end us)
    _watch_hangups()  # before any other thread starts


def _run(argv) -> int:
    """The command's exit code, restic's; every failure told in one line on stderr."""
    import click

    from ..errors import RestiqueError
    from .root import cli

    try:
        return _invoke(cli, argv)
    except click.exceptions.Exit as exc:
        return exc.exit_code
    except click.exceptions.Abort:
        print("\nsignal interrupt received, cleaning up", file=sys.stderr)
        return 130
    except click.exceptions.UsageError as exc:
        print(_usage_message(exc), file=sys.stderr)
        return 1
    except RestiqueError as exc:
        one_line = " ".join(str(exc).strip().split("\n"))  # errors are always one line
        print(f"Fatal: {one_line}", file=sys.stderr)
        return exc.exit_code
    except (KeyboardInterrupt, Terminated) as exc:
        return _stopped_by_signal(exc)
    except BrokenPipeError:
        _silence_stdout()
        return 1
    except OSError as exc:
        where = f": {exc.filename}" if exc.filename else ""
        print(f"Fatal: {exc.strerror or exc}{where}", file=sys.stderr)
        return 1
    except Exception as exc:  # a bug: still one line, details only on request
        if _received:  # raised while unwinding from a signal (by the import machinery, say)
            return _stopped_by_signal(exc)
        if os.environ.get("RESTIQUE_DEBUG"):
            raise
        print(f"Fatal: internal error: {type(exc).__name__}: {exc} (set RESTIQUE_DEBUG=1 for details)", file=sys.stderr)
        return 1


def _stopped_by_signal(exc: BaseException) -> int:
    """The exit code of a command the first stop signal ended (or exc, raised without one), as
    restic's: 130 after Ctrl-C (said on stderr), else 128 + the signal's number."""
    first = _received[0] if _received else signal.SIGINT if isinstance(exc, KeyboardInterrupt) else exc.args[0]
    if first == signal.SIGINT:
        print("signal interrupt received, cleaning up", file=sys.stderr)
        return 130
    return 128 + (signal.SIGHUP if _hung_up.is_set() else first)


def _invoke(cli, argv) -> int:
    """The command group cli run on argv, its global flags moved to the front."""
    from .argv import global_flags, hoist_global_flags, long_spellings

    argv = hoist_global_flags(argv, global_flags(cli), long_spellings(cli))
    # without standalone mode click returns (not raises) the code of a ctx.exit()/Exit
    returned = cli.main(args=argv, prog_name="restique", standalone_mode=False)
    return returned if isinstance(returned, int) else 0


def _flush_stdout() -> None:
    try:
        sys.stdout.flush()
    except BrokenPipeError:
        _silence_stdout()


def _usage_message(exc) -> str:
    """restic's words for a click.exceptions.UsageError."""
    import click

    if isinstance(exc, click.exceptions.NoSuchOption):
        return f"unknown flag: {exc.option_name}"
    if isinstance(exc, click.exceptions.BadOptionUsage) and "requires an argument" in exc.message:
        return f"flag needs an argument: {exc.option_name}"
    message = exc.format_message()
    if message.startswith("No such command"):
        name = message.split("'")[1] if "'" in message else message
        return f'unknown command "{name}" for "restique"'
    return message.replace("\n", " ")


def _silence_stdout():
    # Python would complain again at exit when flushing a closed pipe.
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
