"""The servers the backend tests and the backend scripts run on 127.0.0.1: `rclone serve
restic` (a REST server), a REST stub that can be told to fail, OpenSSH's sshd, moto_server and
SeaweedFS (one `weed server`, or a cluster of separate master, volume and filer processes).

Every server runs in its own session with its output in a file (or nowhere), on free ports
picked here; start() again after stop() brings the same server back on the same ports and
folders, for tests that take a server away in the middle of a command. This module imports
nothing from pytest, so the scripts under scripts/ use it too.
"""
import getpass
import glob
import http.server
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

S3_KEY_ID, S3_SECRET = "restique-test-key", "restique-test-secret"
SSH_HOST = "sftptest"  # the Host entry of Sshd's generated ssh config


class ServerError(RuntimeError):
    """A server is missing, did not start, or exited."""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def venv_tool(name: str) -> str:
    """A server program installed with the test dependencies, beside this Python."""
    path = Path(sys.executable).parent / name
    if not path.exists():
        raise ServerError(f"{name} is not installed (pip install -e '.[test]')")
    return str(path)


def system_tool(name: str, fallback: str = "") -> str:
    path = shutil.which(name) or fallback
    if not path or not os.path.exists(path):
        raise ServerError(f"{name} is not installed")
    return path


def stop_process_group(proc: subprocess.Popen, grace: float) -> None:
    """SIGTERM to the process's session, SIGKILL after the grace (SeaweedFS stops slowly)."""
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(grace)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


class Daemon:
    """A server process: command, the port it listens on when ready, its output file."""

    def __init__(self, name: str, command, port: int, output=None, timeout: float = 60.0, grace: float = 2.0,
                 env=None, leftovers=()):
        self.name, self.command, self.port = name, [str(c) for c in command], port
        self.output, self.timeout, self.grace, self.env = output, timeout, grace, env
        self.leftovers = list(leftovers)  # patterns of files it leaves outside its folder, removed at its end
        self.proc = None

    def start(self):
        out = open(self.output, "ab") if self.output else subprocess.DEVNULL
        try:
            self.proc = subprocess.Popen(self.command, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                         start_new_session=True, env=self.env)
        finally:
            if self.output:
                out.close()
        try:
            self._wait_until_listening()
        except BaseException:
            self.stop()
            raise
        return self

    def _wait_until_listening(self) -> None:
        deadline = time.monotonic() + self.timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                tail = Path(self.output).read_text(errors="replace")[-3000:] if self.output else ""
                raise ServerError(f"{self.name} exited with {self.proc.returncode}:\n{tail}")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return
            except OSError:
                time.sleep(0.05)
        raise ServerError(f"{self.name} did not listen on port {self.port} within {self.timeout} s")

    def stop(self) -> None:
        if self.proc is not None:
            stop_process_group(self.proc, self.grace)
            self.proc = None
        self._remove_leftovers()

    def kill(self) -> None:
        """Stop without a chance to tell anyone, as when a machine dies."""
        if self.proc is not None:
            if self.proc.poll() is None:
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
            self.proc = None
        self._remove_leftovers()

    def _remove_leftovers(self) -> None:
        for pattern in self.leftovers:
            for path in glob.glob(str(pattern)):
                try:
                    os.unlink(path)
                except FileNotFoundError:
                    pass


# --------------------------------------------------------------------------------------------
# REST: rclone serve restic, and a stub


class RcloneServer(Daemon):
    """`rclone serve restic` over folder (a path, or an rclone remote such as ':memory:')."""

    def __init__(self, folder, *extra):
        port = free_port()
        command = [system_tool("rclone"), "serve", "restic", "--addr", f"127.0.0.1:{port}", *extra, folder]
        super().__init__("rclone serve restic", command, port, timeout=20, grace=10,
                         env=dict(os.environ, RCLONE_CONFIG="/dev/null"))
        self.folder = str(folder)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


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


# --------------------------------------------------------------------------------------------
# sftp: OpenSSH's sshd


class Sshd(Daemon):
    """An sshd on a private port with its own host and user keys; ssh reaches it with
    `ssh -F <client_config> sftptest`."""

    def __init__(self, folder):
        self.folder = Path(folder)
        self.config = self.folder / "sshd_config"
        self.client_config = self.folder / "ssh_config"
        port = free_port()
        command = [system_tool("sshd", "/usr/sbin/sshd"), "-D", "-e", "-f", self.config, "-p", port]
        super().__init__("sshd", command, port, output=self.folder / "sshd.log", timeout=10)

    def write_keys_and_config(self) -> None:
        for key in ("host_key", "user_key"):
            subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(self.folder / key)], check=True)
        (self.folder / "authorized_keys").write_text((self.folder / "user_key.pub").read_text())
        host_pub = (self.folder / "host_key.pub").read_text().split()
        (self.folder / "known_hosts").write_text(f"[127.0.0.1]:{self.port} {host_pub[0]} {host_pub[1]}\n")
        self.config.write_text("\n".join([
            f"HostKey {self.folder / 'host_key'}", f"AuthorizedKeysFile {self.folder / 'authorized_keys'}",
            f"PidFile {self.folder / 'sshd.pid'}", "ListenAddress 127.0.0.1", "StrictModes no",
            "PermitRootLogin yes", "PasswordAuthentication no", "KbdInteractiveAuthentication no",
            "UsePAM no", "Subsystem sftp internal-sftp", "LogLevel ERROR", "",
        ]))
        self.client_config.write_text("\n".join([
            f"Host {SSH_HOST}", "  HostName 127.0.0.1", f"  Port {self.port}", f"  User {getpass.getuser()}",
            f"  IdentityFile {self.folder / 'user_key'}", "  IdentitiesOnly yes", "  BatchMode yes",
            f"  UserKnownHostsFile {self.folder / 'known_hosts'}", "  StrictHostKeyChecking yes", "",
        ]))

    def start(self):
        os.makedirs("/run/sshd", exist_ok=True)  # sshd's privilege separation folder
        return super().start()

    def stop(self) -> None:
        """Kill the server and every session it serves (sessions leave its process group)."""
        if self.proc is None:
            return
        for pid in [self.proc.pid] + descendants(self.proc.pid):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self.proc.wait()
        self.proc = None


def descendants(root: int) -> list:
    """Every process below root, children of children included (from /proc)."""
    children = {}
    for entry in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{entry}/stat") as f:
                ppid = int(f.read().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        children.setdefault(ppid, []).append(int(entry))
    found, pending = [], [root]
    while pending:
        kids = children.get(pending.pop(), [])
        found += kids
        pending += kids
    return found


# --------------------------------------------------------------------------------------------
# S3: moto_server, SeaweedFS


class S3Server(Daemon):
    def url(self, path: str) -> str:
        return f"s3:http://127.0.0.1:{self.port}/{path}"


def s3_environment(env: dict, home: Path) -> dict:
    """env with the test servers' keys (boto3 and restic both read them) and no profile or
    configuration file of the developer's."""
    env = {k: v for k, v in env.items() if k not in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_DEFAULT_REGION",
                                                     "AWS_REGION")}
    env.update(AWS_ACCESS_KEY_ID=S3_KEY_ID, AWS_SECRET_ACCESS_KEY=S3_SECRET,
               AWS_CONFIG_FILE=str(home / "config"), AWS_SHARED_CREDENTIALS_FILE=str(home / "credentials"),
               AWS_EC2_METADATA_DISABLED="true")  # no wait for an instance role off the cloud
    return env


def start_moto(folder: Path) -> S3Server:
    port = free_port()
    command = [venv_tool("moto_server"), "-H", "127.0.0.1", "-p", port]
    return S3Server("moto_server", command, port, folder / "moto.log").start()


def _s3_identities(folder: Path) -> Path:
    """SeaweedFS's S3 gateway checks signatures against this file's one identity."""
    path = folder / "identities.json"
    identities = {"identities": [{"name": "tester", "credentials": [{"accessKey": S3_KEY_ID, "secretKey": S3_SECRET}],
                                  "actions": ["Admin", "Read", "Write", "List", "Tagging"]}]}
    path.write_text(json.dumps(identities))
    return path


def _ports(*flags) -> list:
    """-x.port and -x.port.grpc for each flag (grpc would default to port + 10000: pick it too)."""
    args = []
    for flag in flags:
        prefix = f"-{flag}." if flag else "-"
        args += [f"{prefix}port", str(free_port()), f"{prefix}port.grpc", str(free_port())]
    return args


def _grpc_at_ten_thousand_above() -> list:
    """-port P -port.grpc P+10000: a filer's own S3 gateway looks for the filer's grpc there."""
    while True:
        port = free_port()
        if port < 55535:
            try:
                with socket.socket() as sock:
                    sock.bind(("127.0.0.1", port + 10000))
            except OSError:
                continue
            return ["-port", str(port), "-port.grpc", str(port + 10000)]


def _port_of(args: list, flag: str) -> int:
    return int(args[args.index(flag) + 1])


def start_seaweedfs(folder: Path, attempts: int = 3) -> S3Server:
    """All of SeaweedFS in one `weed server` process. Its ports are picked free and bound by
    weed a moment later; one may be taken in between (by weed's own outgoing connections, as
    an ephemeral port): then it exits, and it is started again on other ports."""
    for attempt in range(attempts):
        try:
            return _start_seaweedfs_once(folder / f"try{attempt}")
        except ServerError as exc:
            if "address already in use" not in str(exc) or attempt == attempts - 1:
                raise
    raise AssertionError("unreachable")


# SeaweedFS logs to its stderr (the server's log file) only: by default it also writes
# weed.<host>.<user>.log.* files (and weed.INFO links) into the temporary folder, left there
WEED_LOGGING = ("-logtostderr",)


def _start_seaweedfs_once(folder: Path) -> S3Server:
    (folder / "data").mkdir(parents=True)
    ports = _ports("master", "volume", "filer", "s3")
    command = [venv_tool("weed"), *WEED_LOGGING, "server", "-s3", "-s3.config", _s3_identities(folder), "-dir", folder / "data",
               "-ip", "127.0.0.1", "-master.telemetry=false", "-s3.port.iceberg=0", "-s3.port.lance=0",
               # every bucket takes volumes of its own: small ones, and enough of them
               "-volume.max=200", "-master.volumeSizeLimitMB=64", *ports]
    return S3Server("seaweedfs", command, _port_of(ports, "-s3.port"), folder / "weed.log",
                    leftovers=_weed_sockets(ports)).start()


def _weed_sockets(args: list) -> list:
    """The unix sockets SeaweedFS servers make in the temporary folder (Go's: $TMPDIR, else
    /tmp), named after their ports (seaweedfs-master-grpc-P.sock, seaweedfs-s3-P.sock...), and
    leave there when stopped: one set per test server, never removed."""
    folder = Path(os.environ.get("TMPDIR") or "/tmp")
    return [folder / f"seaweedfs-*-{arg}.sock" for arg in map(str, args) if arg.isdigit()]


class SeaweedCluster:
    """A SeaweedFS cluster as separate processes: a master, `volumes` volume servers, and a
    filer with its S3 gateway. stop_volume/start_volume take one volume server away and back."""

    def __init__(self, folder: Path, volumes: int = 2):
        self.folder = Path(folder)
        weed = venv_tool("weed")
        master_ports = _ports("")
        master = f"127.0.0.1:{_port_of(master_ports, '-port')}.{_port_of(master_ports, '-port.grpc')}"
        self.master = Daemon("weed master", [weed, *WEED_LOGGING, "master", "-ip", "127.0.0.1", "-mdir", self._dir("master"),
                                             "-telemetry=false", "-volumeSizeLimitMB=64", *master_ports],
                             _port_of(master_ports, "-port"), self.folder / "master.log",
                             leftovers=_weed_sockets(master_ports))
        self.volumes = [self._volume(weed, master, n) for n in range(volumes)]
        filer_ports, s3_ports = _grpc_at_ten_thousand_above(), _ports("s3")
        self.filer = S3Server("weed filer", [
            weed, *WEED_LOGGING, "filer", "-ip", "127.0.0.1", "-master", master, "-defaultStoreDir", self._dir("filer"),
            "-s3", "-s3.config", _s3_identities(self.folder), "-s3.port.iceberg=0", "-s3.port.lance=0",
            *filer_ports, *s3_ports], _port_of(s3_ports, "-s3.port"), self.folder / "filer.log",
            leftovers=_weed_sockets(filer_ports + s3_ports))

    def _dir(self, name: str) -> Path:
        path = self.folder / name
        path.mkdir(parents=True, exist_ok=True)
        return path

    def _volume(self, weed: str, master: str, number: int) -> Daemon:
        ports = _ports("")
        command = [weed, *WEED_LOGGING, "volume", "-ip", "127.0.0.1", "-mserver", master, "-dir", self._dir(f"volume{number}"),
                   "-max", "100", *ports]
        return Daemon(f"weed volume {number}", command, _port_of(ports, "-port"), self.folder / f"volume{number}.log",
                      leftovers=_weed_sockets(ports))

    def start(self) -> "SeaweedCluster":
        for daemon in [self.master, *self.volumes, self.filer]:
            daemon.start()
        return self

    def stop(self) -> None:
        for daemon in [self.filer, *self.volumes, self.master]:
            daemon.stop()

    def url(self, path: str) -> str:
        return self.filer.url(path)
