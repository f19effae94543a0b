"""REST servers for the backend tests: the real `rclone serve restic` on a free loopback port,
and a tiny stub that speaks the protocol's version 1 and can be told to fail."""
import http.server
import json
import os
import re
import shutil
import socket
import subprocess
import threading
import time


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class RcloneServer:
    """`rclone serve restic` over folder; start() again after stop() serves the same folder
    on the same port (for tests that take the server away in the middle of a command)."""

    def __init__(self, folder, *extra):
        assert shutil.which("rclone"), "rclone is needed for the REST backend tests"
        self.folder = str(folder)
        self.extra = [str(a) for a in extra]
        self.port = free_port()
        self.proc = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> "RcloneServer":
        cmd = ["rclone", "serve", "restic", "--addr", f"127.0.0.1:{self.port}", *self.extra, self.folder]
        env = dict(os.environ, RCLONE_CONFIG="/dev/null")
        self.proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, f"rclone serve restic exited with {self.proc.returncode}"
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return self
            except OSError:
                time.sleep(0.05)
        raise AssertionError("rclone serve restic did not start listening")

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(10)
            self.proc = None


class StubHandler(http.server.BaseHTTPRequestHandler):
    """A REST server in a dict: version 1 listings only; server.failures[method] counts the
    requests still to be answered with 500; every request is logged in server.requests."""

    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def _answer(self, status, body=b"", ctype="application/octet-stream", headers=()):
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        for name, value in headers:
            self.send_header(name, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _failing(self) -> bool:
        self.server.requests.append((self.command, self.path))
        if self.server.failures.get(self.command, 0) > 0:
            self.server.failures[self.command] -= 1
            self._answer(500, b"injected failure")
            return True
        return False

    def _key(self):
        return self.path.split("?")[0].lstrip("/")

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        if self._failing():
            return
        if "?create=true" not in self.path:
            self.server.files[self._key()] = body
        self._answer(200)

    def do_HEAD(self):
        if self._failing():
            return
        data = self.server.files.get(self._key())
        if data is None:
            return self._answer(404)
        self.send_response(200)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()

    def do_GET(self):
        if self._failing():
            return
        key = self._key()
        if key.endswith("/"):
            names = [k[len(key):] for k in self.server.files if k.startswith(key)]
            return self._answer(200, json.dumps(names).encode(), "application/vnd.x.restic.rest.v1")
        data = self.server.files.get(key)
        if data is None:
            return self._answer(404)
        match = re.fullmatch(r"bytes=(\d+)-(\d*)", self.headers.get("Range", ""))
        if not match:
            return self._answer(200, data)
        start, end = int(match[1]), int(match[2]) if match[2] else len(data) - 1
        if start >= len(data):
            return self._answer(416)
        self._answer(206, data[start:end + 1])

    def do_DELETE(self):
        if self._failing():
            return
        if self.server.files.pop(self._key(), None) is None:
            return self._answer(404)
        self._answer(200)


def start_stub():
    """A stub server in a thread; stop it with server.shutdown()."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), StubHandler)
    server.daemon_threads = True
    server.files, server.failures, server.requests = {}, {}, []
    server.url = f"http://127.0.0.1:{server.server_address[1]}"
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server
