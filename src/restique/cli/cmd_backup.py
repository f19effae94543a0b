"""restique backup: save files, a stream or a command's output as a new snapshot."""
import glob
import os
import subprocess
import sys
import time

import click

from ..errors import RestiqueError, UsageError
from .options import exclude_options

# A backup keeps a few objects per entry alive until its directory's tree is written: with
# Python's default young threshold (700) the collector ran every few dozen files and its older
# generations walked the waiting nodes again and again, 0.3-0.5 s of a 30,000-file backup's CPU,
# all of it holding the interpreter lock. Cycles are still collected, only less often.


def split_tags(values):
    tags = []
    for value in values:
        for tag in value.split(","):
            if tag and tag not in tags:
                tags.append(tag)
    return tags


def _read_list(path: str, sep: bytes) -> list:
    try:
        if path == "-":
            data = sys.stdin.buffer.read()
        else:
            with open(path, "rb") as f:
                data = f.read()
    except OSError as exc:
        raise RestiqueError(f"open {path}: {(exc.strerror or str(exc)).lower()}") from None
    return [os.fsdecode(item) for item in data.split(sep)]


def read_files_from(plain, verbatim, raw) -> list:
    """Targets from --files-from (comments, globs), --files-from-verbatim and --files-from-raw."""
    paths = []
    for path in plain:
        for line in _read_list(path, b"\n"):
            line = line.rstrip("\r").strip()
            if not line or line.startswith("#"):
                continue
            matches = glob.glob(line, include_hidden=True) if glob.has_magic(line) else [line]
            paths.extend(sorted(matches) or [line])
    for path in verbatim:
        paths.extend(line.rstrip("\r") for line in _read_list(path, b"\n") if line.rstrip("\r"))
    for path in raw:
        paths.extend(item for item in _read_list(path, b"\0") if item)
    return paths


def parse_backup_time(text: str):
    from ..model.gotime import GoTime

    try:
        t = time.strptime(text, "%Y-%m-%d %H:%M:%S")
    except ValueError:
        raise UsageError(f'unable to parse time "{text}": use the format "2006-01-02 15:04:05"') from None
    seconds = int(time.mktime(t))
    return GoTime(seconds * 1_000_000_000, time.localtime(seconds).tm_gmtoff)


class CommandOutput:
    """The stdout of --stdin-from-command; reading past its end checks the exit status,
    so a failed command aborts the backup before a snapshot is written."""

    def __init__(self, argv):
        try:
            self.proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stdin=subprocess.DEVNULL)
        except OSError as exc:
            raise RestiqueError(f"failed to start command {argv[0]!r}: {exc.strerror or exc}") from None
        self.argv = argv

    def readinto(self, buf) -> int:
        n = self.proc.stdout.readinto(buf)
        if not n:
            self._check()
        return n

    def _check(self) -> None:
        code = self.proc.wait()
        if code != 0:
            raise RestiqueError(f"command {' '.join(self.argv)!r} exited with status {code}: "
                                "no snapshot was saved")

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


@click.command(context_settings={"ignore_unknown_options": False})
@click.argument("paths", nargs=-1, type=click.Path())
@exclude_options
@click.option("--exclude-caches", is_flag=True, help="excludes cache directories that are marked with a CACHEDIR.TAG file")
@click.option("--exclude-if-present", multiple=True, help="takes filename[:header], exclude contents of directories containing filename (except filename itself) if header of that file is as provided")
@click.option("--exclude-larger-than", default=None, help="max size of the files to be backed up (allowed suffixes: k/K, m/M, g/G, t/T)")
@click.option("-x", "--one-file-system", is_flag=True, help="exclude other file systems, don't cross filesystem boundaries and subvolumes")
@click.option("--files-from", multiple=True, help="read the files to backup from file (can be combined with file args)")
@click.option("--files-from-verbatim", multiple=True, help="read the files to backup from file (can be combined with file args)")
@click.option("--files-from-raw", multiple=True, help="read the files to backup from file (can be combined with file args)")
@click.option("--tag", multiple=True, help="add tags for the new snapshot in the format `tag[,tag,...]`")
@click.option("-H", "--host", "--hostname", "host", envvar="RESTIC_HOST", default=None, help="set the hostname for the snapshot manually")
@click.option("--time", "time_", default=None, help="time of the backup (ex. '2012-11-01 22:08:41') (default: now)")
@click.option("-n", "--dry-run", is_flag=True, help="do not upload or write any data, just show what would be done")
@click.option("--read-concurrency", type=int, default=None, envvar="RESTIC_READ_CONCURRENCY", help="read n files concurrently (default: 2)")
@click.option("--no-scan", is_flag=True, help="do not run scanner to estimate size of backup")
@click.option("--with-atime", is_flag=True, help="store the atime for all files and directories")
@click.option("--stdin", is_flag=True, help="read backup from stdin")
@click.option("--stdin-filename", default="stdin", help="filename to use when reading from stdin")
@click.option("--stdin-from-command", is_flag=True, help="interpret arguments as command to execute and store its stdout")
@click.option("--parent", default=None, help="use this parent snapshot (default: latest snapshot in the group determined by --group-by and not newer than the timestamp determined by --time)")
@click.option("-g", "--group-by", default="host,paths", metavar="group", help="group snapshots by host, paths and/or tags, separated by comma (disable grouping with '')")
@click.option("-f", "--force", is_flag=True, help="force re-reading the source files/directories (overrides the \"parent\" flag)")
@click.option("--ignore-ctime", is_flag=True, help="ignore ctime changes when checking for modified files (default: $RESTIC_IGNORE_CTIME or false)")
@click.option("--ignore-inode", is_flag=True, help="ignore inode number and ctime changes when checking for modified files (default: $RESTIC_IGNORE_INODE or false)")
@click.option("--skip-if-unchanged", is_flag=True, help="skip snapshot creation if identical to parent snapshot")
@click.pass_obj
def backup(opts, paths, excludes, exclude_caches, exclude_if_present,
           exclude_larger_than, one_file_system, files_from, files_from_verbatim, files_from_raw, tag, host,
           time_, dry_run, read_concurrency, no_scan, with_atime, stdin, stdin_filename, stdin_from_command,
           parent, group_by, force, ignore_ctime, ignore_inode, skip_if_unchanged):
    """Create a new backup of files and/or directories."""
    from ..model.snapshot_group import GroupBy
    from ..operations.archiver import BackupOptions
    from ..operations.archiver.prescan import Prescan
    from ..operations.backup import existing_targets

    started = time.monotonic()
    from_files = not (stdin or stdin_from_command)
    files_from_all = (files_from, files_from_verbatim, files_from_raw)
    _check_sources(stdin, stdin_from_command, paths, files_from_all)
    if read_concurrency is not None and read_concurrency < 1:
        raise UsageError("--read-concurrency must be at least 1")
    grouping = GroupBy.parse(group_by)
    ignore_ctime = ignore_ctime or environment_flag("RESTIC_IGNORE_CTIME")
    ignore_inode = ignore_inode or environment_flag("RESTIC_IGNORE_INODE")
    selector = file_selector(excludes, exclude_caches, exclude_if_present, exclude_larger_than)
    targets = _file_targets(paths, files_from_all) if from_files else list(paths)
    archiving = BackupOptions(read_concurrency=read_concurrency or 2, with_atime=with_atime,
                              ignore_ctime=ignore_ctime or ignore_inode, ignore_inode=ignore_inode,
                              reject=selector, one_file_system=one_file_system)

    output = _backup_output(opts)
    output.line("open repository", 1)
    output.line("lock repository", 1)  # restic 0.14 says so before locking; both happen here
    # the first folders are scanned while the key is derived (one core) and the index loaded;
    # the derivation's helper lane waits for that core (_lend_core)
    if from_files:
        prescan = Prescan(targets, xattrs=True, one_file_system=one_file_system, when_done=_lend_core)
    else:
        prescan = None
        _lend_core(None)
    try:
        repo = opts.open_for_appending(dry_run)
        stream = _open_stream(stdin, stdin_from_command, targets)
        if stream is None:
            targets = existing_targets(targets, output.warn)
        request = _backup_request(repo, targets, stream, archiving, prescan, tags=tag, hostname=host,
                                  time_=time_, parent=parent, group_by=grouping, force=force,
                                  dry_run=dry_run, skip_if_unchanged=skip_if_unchanged, excludes=excludes,
                                  stdin_filename=stdin_filename)
        scan = stream is None and (opts.verbose or opts.json or output_is_live(output)) and not no_scan
        outcome = _run(repo, request, output, scan)
    finally:
        if prescan is not None:
            prescan.finish()  # stopped, when the backup ended before its walk
    output.summary(outcome, dry_run, time.monotonic() - started)
    if outcome.progress.stats.errors:
        print("Warning: at least one source file could not be read", file=sys.stderr)
        raise click.exceptions.Exit(3)


def _lend_core(prescan) -> None:
    """The key derivation's helper lane (repository.derivations) takes the prescan's core when
    the targets are files (no folder) and one of them is chunked, or stdin is (prescan None):
    the prescan ended at once, and the backup goes on to hold read buffers (archiver.file_saver)
    larger than the helper's work area, so its peak memory stays. A folder's prescan ends near
    the derivation's end: lent then, the helper made an unchanged tree's re-backup no faster
    and 8 MiB bigger."""
    from ..repository import derivations
    from ..repository.chunker import MIN_SIZE

    if prescan is None or (not prescan.folders_scanned and prescan.largest_file >= MIN_SIZE):
        derivations.lend_core()


def environment_flag(name: str) -> bool:
    """A flag's default from the environment, read as Go's strconv.ParseBool (anything else: false)."""
    return os.environ.get(name, "") in ("1", "t", "T", "TRUE", "true", "True")


def _file_targets(paths, files_from_all) -> list:
    """The files and directories to back up: the arguments, then the --files-from* lists."""
    targets = list(paths) + read_files_from(*files_from_all)
    if not targets:
        raise UsageError("nothing to backup, please specify source files/dirs")
    return targets


def _backup_output(opts):
    from .backup_output import JsonBackupOutput, TextBackupOutput

    if opts.json:
        return JsonBackupOutput(opts.verbose, opts.quiet)
    return TextBackupOutput(opts.verbose, opts.quiet, sys.stdout.isatty())


def _open_stream(stdin, stdin_from_command, targets):
    """What a --stdin or --stdin-from-command backup reads (None for files)."""
    if stdin:
        return sys.stdin.buffer
    if stdin_from_command:
        return CommandOutput(targets)
    return None


def _backup_request(repo, targets, stream, archiving, prescan, *, tags, hostname, time_, parent, group_by, force,
                    dry_run, skip_if_unchanged, excludes, stdin_filename):
    from ..operations.backup import BackupRequest
    from ..operations.snapshot_lookup import find_snapshot_id

    return BackupRequest(
        paths=[] if stream is not None else targets, tags=split_tags(tags), hostname=hostname,
        time=parse_backup_time(time_) if time_ else None,
        parent=find_snapshot_id(repo, parent) if parent and not force else None, group_by=group_by,
        force=force, dry_run=dry_run, skip_if_unchanged=skip_if_unchanged,
        excludes=list(excludes.patterns), stdin=stream, stdin_filename=stdin_filename,
        options=archiving, resume_folder=_resume_folder(repo), checkpoint_interval=_checkpoint_interval(),
        prescan=prescan)


def _run(repo, request, output, scan: bool):
    """The backup, its progress shown (with scan: the size to expect counted beside it)."""
    from ..operations.backup import run_backup
    from ..operations.collector import fewer_collections

    on_parent = _parent_announcer(output, request.paths if request.stdin is None else None)
    output.start_status()
    if scan:
        _start_scanner(request, output)
    try:
        with fewer_collections():
            return run_backup(repo, request, output, on_parent, _resume_announcer(output))
    finally:
        output.stop_status()
        if isinstance(request.stdin, CommandOutput):
            request.stdin.close()


def _check_sources(stdin, stdin_from_command, targets, files_from_all) -> None:
    """Where the data comes from: files, standard input or a command, never two of them."""
    if stdin and stdin_from_command:
        raise UsageError("--stdin and --stdin-from-command cannot be combined")
    if stdin or stdin_from_command:
        for flag, given in zip(("--files-from", "--files-from-verbatim", "--files-from-raw"), files_from_all):
            if given:
                raise UsageError(f"--stdin and {flag} cannot be used together")
    if stdin and targets:
        raise UsageError("--stdin was specified and files/dirs were listed as arguments")
    if stdin_from_command and not targets:
        raise UsageError("--stdin-from-command needs a command to run, e.g. backup --stdin-from-command -- pg_dump mydb")


def file_selector(excludes, exclude_caches, exclude_if_present, exclude_larger_than):
    """Every exclusion rule of the command line as one test, or None."""
    from ..operations.archiver.selection import CACHEDIR_TAG, Selector, parse_marker, parse_size

    markers = [parse_marker(m) for m in exclude_if_present]
    if exclude_caches:
        markers.append(CACHEDIR_TAG)
    limit = parse_size(exclude_larger_than) if exclude_larger_than else None
    selector = Selector(excludes.pattern_lists() or None, markers, limit)
    return selector if selector else None


def _parent_announcer(output, targets):
    """on_parent for run_backup: restic's lines once the parent is known (files only)."""
    def on_parent(parent_id):
        if targets is None:
            return
        if parent_id:
            output.line(f"using parent snapshot {parent_id[:8]}")
        else:
            output.line("no parent snapshot found, will read all files")
        output.line("load index files", 1)
        output.line(f"start backup on {_go_list(targets)}", 1)

    return on_parent


def _resume_announcer(output):
    def on_resume(record):
        written = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(record.written_ns / 1e9))
        output.line(f"resuming the interrupted backup checkpointed at {written}")

    return on_resume


def _resume_folder(repo):
    """Checkpoints of interrupted backups are recorded in the repository's cache folder;
    without a cache a backup starts over (its uploaded data is still found in the index)."""
    cache = getattr(repo.backend, "cache", None)
    return os.path.join(cache.path, "resume") if cache is not None else None


CHECKPOINT_VARIABLE = "RESTIQUE_CHECKPOINT_INTERVAL"


def _checkpoint_interval() -> float:
    """Seconds between checkpoints: $RESTIQUE_CHECKPOINT_INTERVAL, else the library's default."""
    from ..operations.archiver.checkpoint import CHECKPOINT_INTERVAL

    text = os.environ.get(CHECKPOINT_VARIABLE)
    if not text:
        return CHECKPOINT_INTERVAL
    try:
        seconds = float(text)
    except ValueError:
        raise UsageError(f"{CHECKPOINT_VARIABLE}: {text!r} is not a number of seconds") from None
    if seconds < 0:
        raise UsageError(f"{CHECKPOINT_VARIABLE} must not be negative")
    return seconds


def output_is_live(output) -> bool:
    return getattr(output, "terminal", False)


def _go_list(items) -> str:
    return "[" + " ".join(items) + "]"


def _start_scanner(request, output) -> None:
    """Count files and bytes in the background, for percentages and the ETA."""
    import threading

    from ..operations.archiver.scanner import scan
    from .fmt import format_bytes

    def run():
        start = time.monotonic()
        files, size = scan(request.paths, request.options.reject, output.scan_progress)
        output.scan_finished(files, size, time.monotonic() - start)
        output.line(f"scan finished in {time.monotonic() - start:.3f}s: {files} files, {format_bytes(size)}", 1)

    threading.Thread(target=run, name="scanner", daemon=True).start()
