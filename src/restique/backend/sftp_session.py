"""One SFTP session: the system `ssh` run as a subprocess (`ssh host -s sftp`, as restic runs it),
and restique's SFTP client speaking the protocol over that process's stdin and stdout.

Running the user's own ssh means ~/.ssh/config, agents, ProxyJump and known_hosts work as they
do for every other tool. The ssh process gets one end of a socket pair as its stdin and stdout,
the client the other end.

Requests are pipelined: one thread reads every reply and hands it to the request it answers, so
any number of threads have requests outstanding on the one session at once (restic's sftp client
works the same way), and a transfer sends its reads or writes ahead without waiting for each.
"""
import errno
import signal
import socket
import subprocess
import threading
from collections import deque
from typing import List

from ..errors import RestiqueError
from .base import PermanentBackendError

_STDERR_LINES = 5  # enough of ssh's last words to say why it stopped
_EXIT_WAIT = 5.0  # seconds ssh gets to leave after its stdin closes


class SessionLost(PermanentBackendError):
    """ssh exited: this session cannot answer again (restic treats it as permanent too)."""


class SshSession:
    """An ssh process and the pipelined SFTP client over its pipes; safe to use from many threads."""

    def __init__(self, command: List[str], what: str, location: str):
        self.what = what  # the host, for messages
        self.location = location
        self._stderr: deque = deque(maxlen=_STDERR_LINES)
        ours, theirs = socket.socketpair()
        try:
            # a process group of its own: Ctrl-C on the terminal interrupts restique, which
            # still needs the connection to remove its lock; ssh leaves when its stdin closes
            self.process = subprocess.Popen(
                command, stdin=theirs, stdout=theirs, stderr=subprocess.PIPE,
                process_group=0, close_fds=True,
            )
        except OSError as exc:
            ours.close()
            raise RestiqueError(
                f"unable to open repository at {location}: unable to start {command[0]}: {exc.strerror}"
            ) from None
        finally:
            theirs.close()
        self._reader = threading.Thread(target=self._read_stderr, name="ssh-stderr", daemon=True)
        self._reader.start()
        self._sock = ours
        self.client = self._start_client()

    def _start_client(self):
        from .sftp_pipelined import PipelinedClient
        from .sftp_protocol import ProtocolError

        try:
            return PipelinedClient(self._sock)
        except (ProtocolError, EOFError, OSError):
            self.close()
            raise RestiqueError(
                f"unable to open repository at {self.location}: unable to start the sftp session: {self.exit_reason()}"
            ) from None

    def _read_stderr(self) -> None:
        for raw in self.process.stderr:
            line = raw.decode("utf-8", "replace").strip()
            if line:
                self._stderr.append(line)

    def alive(self) -> bool:
        return self.process.poll() is None

    def exit_reason(self) -> str:
        """Why ssh stopped, in one line: its exit status and last words on stderr."""
        try:
            code = self.process.wait(_EXIT_WAIT)
        except subprocess.TimeoutExpired:
            code = None
        self._reader.join(1.0)
        status = "ssh did not exit" if code is None else f"ssh exited with status {code}"
        said = "; ".join(self._stderr)
        return f"{status}: {said}" if said else status

    def lost(self) -> SessionLost:
        """The error for a request that failed because the connection went away."""
        return SessionLost(errno.ECONNABORTED, f"connection to {self.what} lost: {self.exit_reason()}")

    def close(self) -> None:
        """Close the pipes; ssh leaves on end of input, and is made to if it lingers."""
        client = getattr(self, "client", None)
        if client is not None:
            client.close()
        else:  # the handshake failed
            _close_socket(self._sock)
        if self.process.poll() is None:
            try:
                self.process.wait(_EXIT_WAIT)
            except subprocess.TimeoutExpired:
                self.process.send_signal(signal.SIGTERM)
                self.process.wait()
        if self.process.stderr:
            self._reader.join(1.0)
            self.process.stderr.close()



def _close_socket(sock: socket.socket) -> None:
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
    sock.close()
