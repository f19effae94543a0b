"""`rclone:remote:path`: a repository on any of rclone's storage providers, reached through
`rclone serve restic`, which speaks the REST server protocol.

restic runs `rclone serve restic --stdio` and talks HTTP/2 over the pipes. rclone answers only
HTTP/2 there, which Python's HTTP clients do not speak; so restique replaces `--stdio` by a
listener on a free loopback port that only this process can use: a random user name and
password, passed in rclone's environment (readable by this user only, unlike the arguments).

rclone runs in its own session, so a Ctrl-C reaches restique alone and restique stops rclone
when it closes the backend; if restique dies, the kernel sends rclone SIGTERM (Linux).
"""
import os
import queue
import re
import secrets
import shlex
import signal
import subprocess
import sys
import threading
from typing import List, Optional

from ..errors import RestiqueError
from .options import BackendOptions, Option, positive_int
from .rest import RestBackend

DEFAULT_ARGS = "serve restic --stdio --b2-hard-delete"
_SERVING = re.compile(r"Serving restic REST API on (http://[^/\s]+)/")
STOP_WAIT = 5.0  # seconds rclone gets to finish after SIGTERM before it is killed


def _seconds(text: str) -> float:
    match = re.fullmatch(r"(\d+(?:\.\d+)?)(ms|s|m|h)?", text.strip())
    if not match:
        raise RestiqueError(f'time: invalid duration "{text}"')
    scale = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, None: 1}[match[2]]
    return float(match[1]) * scale


OPTIONS = {
    "program": Option(str, "rclone", "path to rclone (default: rclone)"),
    "args": Option(str, DEFAULT_ARGS, f"arguments for running rclone (default: {DEFAULT_ARGS})"),
    "connections": Option(positive_int, 5, "set a limit for the number of concurrent connections (default: 5)"),
    "timeout": Option(_seconds, 60.0,
                      "set a timeout limit to wait for rclone to establish a connection (default: 1m)"),
}


def command(program: str, args: str, remote: str) -> List[str]:
    """The command line: program, args (--stdio replaced by a loopback listener), remote."""
    words = [word for word in shlex.split(args) if word != "--stdio"]
    return shlex.split(program) + words + ["--addr", "127.0.0.1:0", remote]


def _die_with_parent() -> None:  # runs in the child between fork and exec
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


class RcloneBackend(RestBackend):
    def __init__(self, remote: str, location: str, options: BackendOptions, settings: dict):
        self.process = None
        user, password = secrets.token_hex(8), secrets.token_urlsafe(24)
        env = dict(os.environ, RCLONE_USER=user, RCLONE_PASS=password)
        argv = command(settings["program"], settings["args"], remote)
        try:
            self.process = subprocess.Popen(
                argv, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                start_new_session=True, preexec_fn=_die_with_parent if sys.platform == "linux" else None)
        except OSError as exc:
            raise RestiqueError(f"unable to start the program {argv[0]}: {exc.strerror}") from None
        try:
            url = self._wait_for_listener(settings["timeout"])
        except BaseException:
            self._stop()
            raise
        host = url.partition("//")[2]
        super().__init__(f"http://{user}:{password}@{host}/", location, options, settings["connections"])
        self.location = location

    def _wait_for_listener(self, timeout: float) -> str:
        """Read rclone's log until it says where it listens; its lines go on to our stderr."""
        lines: "queue.Queue[Optional[str]]" = queue.Queue()

        def pump():
            for raw in self.process.stderr:
                line = raw.decode(errors="replace")
                lines.put(line)
                if not _SERVING.search(line) and "Config file" not in line:
                    sys.stderr.write(line)
            lines.put(None)

        threading.Thread(target=pump, name="rclone-log", daemon=True).start()
        last = ""
        while True:
            try:
                line = lines.get(timeout=timeout)
            except queue.Empty:
                raise RestiqueError(f"rclone did not start serving within {timeout:g}s") from None
            if line is None:
                code = self.process.wait()
                detail = f": {last.strip()}" if last.strip() else ""
                raise RestiqueError(f"error talking HTTP to rclone: rclone exited with status {code}{detail}")
            match = _SERVING.search(line)
            if match:
                return match[1]
            last = line

    def _stop(self) -> None:
        proc, self.process = self.process, None
        if proc is None or proc.poll() is not None:
            return
        proc.terminate()
        try:
            proc.wait(STOP_WAIT)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()

    def close(self) -> None:
        try:
            super().close()
        finally:
            self._stop()


def open_rclone(remote: str, location: str, options: BackendOptions) -> RcloneBackend:
    if not remote:
        raise RestiqueError("invalid rclone backend specification: the remote is empty (rclone:remote:path)")
    return RcloneBackend(remote, location, options, options.for_scheme("rclone", OPTIONS))
