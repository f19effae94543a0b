"""The HTTP server under `serve`: cheroot's thread pool, optional TLS, and the rule that
a server reachable from other machines needs a password."""
import ipaddress
import logging
import socket
import sys
from dataclasses import dataclass
from typing import Optional, Tuple

from ..interrupts import hold
from ..errors import UsageError

# Each download holds a worker for its whole length; 20 concurrent downloads plus page and
# WebDAV requests must not queue behind them.
WORKER_THREADS = 32


@dataclass
class ServerOptions:
    addr: str = "127.0.0.1:8080"
    tls_cert: Optional[str] = None
    tls_key: Optional[str] = None
    authenticated: bool = False  # an htpasswd file guards every request
    insecure_no_auth: bool = False  # allow a non-loopback address without authentication


def parse_addr(addr: str) -> Tuple[str, int]:
    """(host, port) of `host:port`, `[v6]:port` or `:port` (every interface)."""
    host, sep, port = addr.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise UsageError(f'invalid address "{addr}": expected host:port')
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    return host or "0.0.0.0", int(port)


def is_loopback(host: str) -> bool:
    """True when every address host resolves to is a loopback address."""
    try:
        infos = socket.getaddrinfo(host, None, proto=socket.IPPROTO_TCP)
    except socket.gaierror as exc:
        raise UsageError(f'cannot resolve address "{host}": {exc.strerror}') from None
    return all(ipaddress.ip_address(info[4][0].split("%")[0]).is_loopback for info in infos)


def check_options(options: ServerOptions) -> Tuple[str, int]:
    host, port = parse_addr(options.addr)
    if bool(options.tls_cert) != bool(options.tls_key):
        raise UsageError("--tls-cert and --tls-key must be given together")
    if not options.authenticated and not options.insecure_no_auth and not is_loopback(host):
        raise UsageError(f"refusing to serve {options.addr} without authentication: give "
                         "--htpasswd FILE, or --insecure-no-auth to allow anyone on the network")
    return host, port


def _log_error(msg: str = "", level: int = logging.INFO, traceback: bool = False) -> None:
    """cheroot's error log as one line on stderr (no traceback): a failed request or a
    client that went away must not flood the terminal."""
    if level < logging.WARNING:
        return
    exc = sys.exc_info()[1]
    detail = f": {type(exc).__name__}: {exc}" if exc is not None else ""
    print(f"serve: {msg.strip() or 'request failed'}{detail}", file=sys.stderr, flush=True)


class Server:
    """A cheroot WSGI server; start() binds (errors as UsageError), serve() blocks until
    stop() is called from another thread or a signal handler's exception unwinds it."""

    def __init__(self, app, options: ServerOptions):
        from cheroot import wsgi

        host, port = check_options(options)
        self.options = options
        self._server = wsgi.Server((host, port), app, numthreads=WORKER_THREADS,
                                   server_name="restique")
        self._server.error_log = _log_error
        if options.tls_cert:
            from cheroot.ssl.builtin import BuiltinSSLAdapter

            try:
                self._server.ssl_adapter = BuiltinSSLAdapter(options.tls_cert, options.tls_key)
            except (OSError, ValueError) as exc:
                raise UsageError(f"cannot load the TLS certificate or key: {exc}") from None

    def start(self) -> None:
        # cheroot listens before its worker threads all run: a signal in between would unwind
        # past threads stop() cannot reach, and the process would wait for them forever
        try:
            with hold():
                self._server.prepare()
        except OSError as exc:
            raise UsageError(f"cannot listen on {self.options.addr}: {exc.strerror or exc}") from None

    @property
    def url(self) -> str:
        host, port = self._server.bind_addr[:2]
        scheme = "https" if self.options.tls_cert else "http"
        if ":" in host:
            host = f"[{host}]"
        return f"{scheme}://{host}:{port}/"

    def serve(self) -> None:
        self._server.serve()

    def stop(self) -> None:
        self._server.stop()
