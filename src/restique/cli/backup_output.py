"""What `backup` prints: restic's text lines, its --json messages, and a live status line
on a terminal (or, with RESTIC_PROGRESS_FPS or SIGUSR1, status lines in a log)."""
import sys
import threading
import time

from ..model.names import display
from ..operations.archiver.progress import BackupProgress, ItemResult
from .fmt import format_bytes, format_duration
from .status_ticks import JSON_INTERVAL, TERMINAL_INTERVAL, StatusDisplay, status_interval


class TextBackupOutput(BackupProgress):
    def __init__(self, verbose: int, quiet: bool, terminal: bool):
        super().__init__()
        self.verbose = 0 if quiet else verbose
        self.quiet = quiet
        self.terminal = terminal and not quiet
        # a log (not a terminal) gets status lines only when RESTIC_PROGRESS_FPS asks for
        # them, or SIGUSR1 does
        self.interval = None if quiet else status_interval(TERMINAL_INTERVAL if self.terminal else None)
        self.started = time.monotonic()
        self.bytes_done = 0
        self._display = None
        self._out_lock = threading.Lock()
        self._status_shown = False

    # --- plain lines ---
    def line(self, text: str = "", level: int = 0) -> None:
        if self.quiet or self.verbose < level:
            return
        with self._out_lock:
            self._clear_status()
            # names are printed as their raw bytes, as restic does
            sys.stdout.flush()
            sys.stdout.buffer.write((text + "\n").encode("utf-8", "surrogateescape"))
            sys.stdout.buffer.flush()

    def warn(self, text: str) -> None:
        with self._out_lock:
            self._clear_status()
            sys.stderr.write(text + "\n")
            sys.stderr.flush()

    def error(self, path, message, during="archival"):
        super().error(path, message, during)
        self.warn(f"error: {message}")

    def wants_items(self) -> bool:
        return self.verbose >= 2

    def item(self, path: str, kind: str, r: ItemResult) -> None:
        if self.verbose < 2:
            return
        shown = path
        if r.action == "unchanged":
            self.line(f"unchanged {shown}", 2)
            return
        word = "new      " if r.action == "new" else "modified "
        if kind == "dir":
            self.line(f"{word} {shown}, saved in {r.duration:.3f}s ({format_bytes(r.data_size)} added, "
                      f"{format_bytes(r.data_size_in_repo)} stored, {format_bytes(r.metadata_size)} metadata)", 2)
        else:
            self.line(f"{word} {shown}, saved in {r.duration:.3f}s ({format_bytes(r.data_size)} added, "
                      f"{format_bytes(r.data_size_in_repo)} stored)", 2)

    def bytes_read(self, n: int) -> None:
        self.bytes_done += n

    # --- live status ---
    def start_status(self) -> None:
        if not self.quiet:
            self._display = StatusDisplay(self.interval, self._show_status)
            self._display.start()

    def stop_status(self) -> None:
        if self._display:
            self._display.stop()
        with self._out_lock:
            self._clear_status()

    def _clear_status(self) -> None:
        if self._status_shown:
            sys.stdout.write("\r\x1b[2K")
            self._status_shown = False

    def _show_status(self) -> None:
        with self.lock:
            s = self.stats
            done_files = s.files_processed
            errors = s.errors
            current = sorted(self.current)[:2]
            total_files, total_bytes, scanned = self.scan_files, self.scan_bytes, self.scan_done
        elapsed = time.monotonic() - self.started
        done = self.bytes_done
        if total_bytes:
            pct = min(100.0, 100.0 * done / total_bytes)
            eta = ""
            if scanned and done and done < total_bytes:
                eta = " ETA " + format_duration(elapsed * (total_bytes - done) / done)
            status = (f"[{format_duration(elapsed)}] {pct:.2f}%  {done_files} files {format_bytes(done)}, "
                      f"total {total_files} files {format_bytes(total_bytes)}, {errors} errors{eta}")
        else:
            status = f"[{format_duration(elapsed)}] {done_files} files, {format_bytes(done)}, {errors} errors"
        lines = [status] + [display(c) for c in current]
        with self._out_lock:
            if not self.terminal:  # a log: every status as lines of their own, as restic writes them
                sys.stdout.write("".join(line + "\n" for line in lines))
                sys.stdout.flush()
                return
            self._clear_status()
            sys.stdout.write("\r\x1b[2K" + lines[0][:200])
            sys.stdout.flush()
            self._status_shown = True

    # --- the end ---
    def summary(self, outcome, dry_run: bool, elapsed: float) -> None:
        s = outcome.progress.stats
        self.line()
        self.line(f"Files:       {s.files.new:5d} new, {s.files.changed:5d} changed, {s.files.unmodified:5d} unmodified")
        self.line(f"Dirs:        {s.dirs.new:5d} new, {s.dirs.changed:5d} changed, {s.dirs.unmodified:5d} unmodified")
        self.line(f"Data Blobs:  {s.data_blobs:5d} new", 1)
        self.line(f"Tree Blobs:  {s.tree_blobs:5d} new", 1)
        verb = "Would add" if dry_run else "Added"
        self.line(f"{verb} to the repository: {format_bytes(s.data_added):<5s} ({format_bytes(s.data_added_packed):<5s} stored)")
        self.line()
        self.line(f"processed {s.files_processed} files, {format_bytes(s.bytes_processed)} in {format_duration(elapsed)}")
        if outcome.snapshot_id:
            self.line(f"snapshot {outcome.snapshot_id[:8]} saved")
        elif outcome.skipped:
            self.line("skipped creating snapshot")


class JsonBackupOutput(BackupProgress):
    """restic's --json backup messages: status lines, verbose_status with -v, errors on stderr."""

    def __init__(self, verbose: int, quiet: bool):
        super().__init__()
        self.verbose = verbose
        self.quiet = quiet
        self.started = time.monotonic()
        self.bytes_done = 0
        self._out_lock = threading.Lock()
        self._display = None

    def _emit(self, obj, stream=None) -> None:
        from ..model import gojson

        with self._out_lock:
            (stream or sys.stdout).write(gojson.dumps(obj) + "\n")
            (stream or sys.stdout).flush()

    def line(self, text: str = "", level: int = 0) -> None:
        pass

    def warn(self, text: str) -> None:
        self._emit({"message_type": "error", "error": {"message": text}, "during": "scan", "item": ""}, sys.stderr)

    def error(self, path, message, during="archival"):
        super().error(path, message, during)
        self._emit({"message_type": "error", "error": {"message": message}, "during": during, "item": display(path)},
                   sys.stderr)

    def bytes_read(self, n: int) -> None:
        self.bytes_done += n

    def wants_items(self) -> bool:
        return self.verbose >= 1 and not self.quiet

    def item(self, path: str, kind: str, r: ItemResult) -> None:
        if self.verbose < 1 or self.quiet:
            return
        self._emit({
            "message_type": "verbose_status", "action": r.action, "item": display(path),
            "duration": r.duration, "data_size": r.data_size, "data_size_in_repo": r.data_size_in_repo,
            "metadata_size": r.metadata_size, "metadata_size_in_repo": r.metadata_size_in_repo, "total_files": 0,
        })

    def _status(self) -> dict:
        with self.lock:
            s = self.stats
            obj = {"message_type": "status"}
            elapsed = int(time.monotonic() - self.started)
            if elapsed:
                obj["seconds_elapsed"] = elapsed
            total = self.scan_bytes
            obj["percent_done"] = min(1.0, self.bytes_done / total) if total else 0
            for key, value in (("total_files", self.scan_files), ("files_done", s.files_processed),
                               ("total_bytes", total), ("bytes_done", self.bytes_done),
                               ("error_count", s.errors)):
                if value:
                    obj[key] = value
            if self.current:
                obj["current_files"] = sorted(display(c) for c in self.current)[:2]
        return obj

    def start_status(self) -> None:
        if self.quiet:
            return
        self._display = StatusDisplay(status_interval(JSON_INTERVAL), lambda: self._emit(self._status()),
                                      first=True)
        self._display.start()

    def stop_status(self) -> None:
        if self._display:
            self._display.stop()

    def summary(self, outcome, dry_run: bool, elapsed: float) -> None:
        s = outcome.progress.stats
        obj = {
            "message_type": "summary",
            "files_new": s.files.new, "files_changed": s.files.changed, "files_unmodified": s.files.unmodified,
            "dirs_new": s.dirs.new, "dirs_changed": s.dirs.changed, "dirs_unmodified": s.dirs.unmodified,
            "data_blobs": s.data_blobs, "tree_blobs": s.tree_blobs,
            "data_added": s.data_added, "data_added_packed": s.data_added_packed,
            "total_files_processed": s.files_processed, "total_bytes_processed": s.bytes_processed,
            "total_duration": round(elapsed, 9),
            "backup_start": outcome.started.rfc3339(), "backup_end": outcome.ended.rfc3339(),
        }
        if outcome.snapshot_id:
            obj["snapshot_id"] = outcome.snapshot_id
        if dry_run:
            obj["dry_run"] = True
        self._emit(obj)
