"""The REST server protocol (rest-server, `rclone serve restic`): one URL per file, POST to save,
GET with a Range header to load, HEAD to stat, DELETE to remove, GET on a folder to list.

Listings ask for version 2 (`Accept: application/vnd.x.restic.rest.v2`, names with sizes); a
server that answers in version 1 sends names only, and each size costs a HEAD request.
Connections are kept alive in a pool of `rest.connections` (restic's default 5); a request
waits for a free connection rather than opening more. The pool is urllib3's, used directly:
requests, which sits on it, added a fifth of a second of imports to every command and a
layer of per-request work that none of these requests needs.
"""
import os
import tempfile
from typing import Iterator, Optional, Tuple
from urllib.parse import urlsplit, urlunsplit

import urllib3

from ..errors import AlreadyExists, UsageError
from .base import (BackendError, BackendFileExists, BackendShortRead, FileType, PermanentBackendError,
                   check_range, not_found)
from .http_pool import connection_pool
from .options import BackendOptions, Option, positive_int
from .parts import PartsBody

CONTENT_TYPE_V1 = "application/vnd.x.restic.rest.v1"
CONTENT_TYPE_V2 = "application/vnd.x.restic.rest.v2"
# statuses that will not change on a retry (restic's IsPermanentError, plus 404)
_PERMANENT_STATUSES = {401, 403, 404, 416, 507}

OPTIONS = {"connections": Option(positive_int, 5, "set a limit for the number of concurrent connections (default: 5)")}


def strip_password(location: str) -> str:
    """The location as shown to users: a password in the URL becomes `***` (restic's way)."""
    scheme, _, url = location.partition(":")
    parts = urlsplit(url)
    if parts.password is None:
        return location
    netloc = f"{parts.username}:***@{parts.hostname}" + (f":{parts.port}" if parts.port else "")
    return f"{scheme}:{urlunsplit(parts._replace(netloc=netloc))}"


class RestBackend:
    """A repository behind a REST server at url (`http(s)://[user:pass@]host[:port]/path/`)."""

    atomic_replace = False  # the server refuses to replace a file; so do we

    def __init__(self, url: str, location: Optional[str] = None, options: Optional[BackendOptions] = None,
                 connections: int = 5):
        options = options or BackendOptions()
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise UsageError(f"invalid REST server URL {url!r}: expected http(s)://host[:port]/path/")
        self.location = strip_password(location or f"rest:{url}")
        netloc = parts.hostname + (f":{parts.port}" if parts.port else "")
        self.url = urlunsplit(parts._replace(netloc=netloc)).rstrip("/")
        self.connections = connections
        self._bundle = None  # a joined --cacert file, removed on close
        self.auth = None  # (user, password) from the URL
        self.headers = {"Accept": CONTENT_TYPE_V2}
        if options.http_user_agent:
            self.headers["User-Agent"] = options.http_user_agent
        if parts.username is not None:
            from urllib.parse import unquote

            self.auth = (unquote(parts.username), unquote(parts.password or ""))
            self.headers.update(urllib3.make_headers(basic_auth=":".join(self.auth)))
        self._path = parts.path.rstrip("/")  # what request paths start with
        self.pool = self._pool(parts, options)

    def _pool(self, parts, options: BackendOptions) -> urllib3.HTTPConnectionPool:
        """At most `connections` to the server, and no proxy: the URL says where to go. The
        system's certificate authorities unless --cacert names others, as restic."""
        secure = parts.scheme == "https"
        ca_certs = self._ca_bundle(options.cacert) if secure and options.cacert and not options.insecure_tls else None
        return connection_pool(parts.hostname, parts.port, self.connections, secure,
                               verify=not options.insecure_tls, ca_certs=ca_certs,
                               cert_file=options.tls_client_cert, stuck_timeout=options.stuck_request_timeout)

    def _ca_bundle(self, files) -> str:
        if len(files) == 1:
            return files[0]
        fd, self._bundle = tempfile.mkstemp(prefix="restique-cacert-", suffix=".pem")
        with os.fdopen(fd, "wb") as out:
            for name in files:
                with open(name, "rb") as f:
                    out.write(f.read() + b"\n")
        return self._bundle

    # --- requests and their errors ---
    def _file_url(self, ftype: FileType, name: str) -> str:
        if ftype is FileType.CONFIG:
            return f"{self.url}/config"
        return f"{self.url}/{ftype.folder}/{name}"

    def _request(self, method: str, url: str, body=None, headers=None, stream: bool = False):
        """One request; the answer's body is read at once unless stream (then the caller reads
        it and the connection goes back to the pool once it is read or closed)."""
        if headers:
            headers = {**self.headers, **headers}
        if body is not None and "Content-Length" not in (headers or {}):
            headers = {**(headers or self.headers), "Content-Length": str(len(body))}
        try:
            return self.pool.urlopen(method, url[len(self.url) - len(self._path):], body=body,
                                     headers=headers or self.headers, redirect=False, retries=False,
                                     preload_content=not stream, assert_same_host=False)
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            raise BackendError(f'{method.capitalize()} "{self._shown(url)}": {failure_reason(exc)}') from None

    def _shown(self, url: str) -> str:
        return url.replace(self.url, strip_password(self.location).partition(":")[2].rstrip("/"), 1)

    def _fail(self, response, ftype: FileType, name: str):
        """The error for an unexpected answer, classified as restic classifies it."""
        status = response.status
        if status == 404:
            return not_found(ftype, name, self._where(ftype, name))
        text = f"unexpected HTTP response ({status}): {status} {response.reason}"
        if status in (401, 403):
            text += f" (for {self._where(ftype, name)}; check the user name and password)"
        error = PermanentBackendError if status in _PERMANENT_STATUSES else BackendError
        return error(text)

    def _where(self, ftype: FileType, name: str) -> str:
        return "config" if ftype is FileType.CONFIG else f"<{ftype.label}/{name}>"

    # --- the Backend protocol ---
    def create(self) -> None:
        try:
            self.stat(FileType.CONFIG, "")
        except FileNotFoundError:
            pass
        else:
            raise AlreadyExists(f"create repository at {self.location} failed: config file already exists")
        response = self._request("POST", f"{self.url}/?create=true", body=b"")
        if response.status != 200:
            raise self._fail(response, FileType.CONFIG, "")

    def save(self, ftype: FileType, name: str, data) -> None:
        body = PartsBody(data)  # sent part by part: no joined copy of a pack
        # rest-server refuses to replace a file, rclone replaces it; both give the same answer
        if self._exists(ftype, name):
            raise BackendFileExists(17, "file already exists", self._where(ftype, name))
        response = self._request("POST", self._file_url(ftype, name), body=body,
                                 headers={"Content-Type": "application/octet-stream"})
        if response.status == 200:
            return
        if response.status == 403 and self._exists(ftype, name):
            raise BackendFileExists(17, "file already exists", self._where(ftype, name))
        raise self._fail(response, ftype, name)

    def _exists(self, ftype: FileType, name: str) -> bool:
        try:
            self.stat(ftype, name)
            return True
        except (FileNotFoundError, BackendError):
            return False

    def load(self, ftype: FileType, name: str, offset: int = 0, length: Optional[int] = None) -> bytes:
        check_range(offset, length)
        if length == 0:  # no byte range means nothing: still say whether the file is there
            if offset > self.stat(ftype, name):
                raise self._short(ftype, name, offset, length)
            return b""
        end = "" if length is None else str(offset + length - 1)
        headers = {"Range": f"bytes={offset}-{end}"} if offset or length is not None else {}
        url = self._file_url(ftype, name)
        response = self._request("GET", url, headers=headers, stream=True)
        if response.status == 416:
            _done_with(response)
            if length is None and offset == self.stat(ftype, name):
                return b""  # the range starts just past the end: empty, not short
            raise self._short(ftype, name, offset, length)
        if response.status not in (200, 206):
            _done_with(response)
            raise self._fail(response, ftype, name)
        content = self._body(response, url)
        if response.status == 200 and offset:  # a server that ignores ranges
            if offset > len(content):
                raise self._short(ftype, name, offset, length)
            content = content[offset:] if length is None else content[offset:offset + length]
        elif offset > _total_size(response, offset):  # rclone answers 206 to a range past the end
            raise self._short(ftype, name, offset, length)
        if length is not None and len(content) != length:
            raise self._short(ftype, name, offset, length, len(content))
        return content

    def _body(self, response, url: str) -> bytes:
        """The whole body in one read (not joined from small pieces, which costs several times
        the CPU of the transfer itself). The connection goes back to the pool."""
        try:
            return response.read(decode_content=True)
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            response.close()  # a connection broken half-way is not reused
            raise BackendError(f'Get "{self._shown(url)}": {failure_reason(exc)}') from None
        finally:
            response.release_conn()

    def _short(self, ftype, name, offset, length, got=None) -> BackendShortRead:
        detail = "offset is past the end" if got is None else f"got {got} bytes"
        return BackendShortRead(f"{ftype.label}/{name}: short read, wanted {length} bytes at {offset}, {detail}")

    def stat(self, ftype: FileType, name: str) -> int:
        response = self._request("HEAD", self._file_url(ftype, name))
        if response.status != 200:
            raise self._fail(response, ftype, name)
        size = response.headers.get("Content-Length")
        if size is None or not size.isdigit():
            raise BackendError(f"{self._where(ftype, name)}: the server sent no valid Content-Length")
        return int(size)

    def remove(self, ftype: FileType, name: str) -> None:
        response = self._request("DELETE", self._file_url(ftype, name))
        if response.status != 200:
            raise self._fail(response, ftype, name)

    def list(self, ftype: FileType) -> Iterator[Tuple[str, int]]:
        if ftype is FileType.CONFIG:
            return iter(())
        response = self._request("GET", f"{self.url}/{ftype.folder}/")
        if response.status == 404 and not response.headers.get("Server", "").startswith("rclone/"):
            return iter(())  # rest-server: the folder does not exist yet (rclone: no repository)
        if response.status != 200:
            raise self._fail(response, ftype, "")
        try:
            import json

            entries = json.loads(response.data) or []
        except ValueError:
            raise BackendError(f"List({ftype.label}): the server sent an invalid listing") from None
        if response.headers.get("Content-Type", "").startswith(CONTENT_TYPE_V2):
            return iter([(entry["name"], int(entry["size"])) for entry in entries])
        return self._sizes(ftype, entries)

    def _sizes(self, ftype: FileType, names) -> Iterator[Tuple[str, int]]:
        """Version 1 listings: names only; a file removed since the listing is skipped."""
        for name in names:
            try:
                yield name, self.stat(ftype, name)
            except FileNotFoundError:
                continue

    def close(self) -> None:
        self.pool.close()
        if self._bundle:
            os.unlink(self._bundle)
            self._bundle = None


def _done_with(response) -> None:
    """Read the rest of an answer that is not wanted (a short error text), so that its
    connection can serve the next request."""
    response.drain_conn()
    response.release_conn()


def _total_size(response, default: int) -> int:
    """The file's size from a `Content-Range: bytes a-b/size` header, else default."""
    _, _, total = response.headers.get("Content-Range", "").rpartition("/")
    return int(total) if total.isdigit() else default


def failure_reason(exc: BaseException) -> str:
    """The innermost cause of an HTTP client error in a few words ("connection refused")."""
    seen = exc
    while seen is not None:
        if isinstance(seen, OSError) and seen.strerror:
            return seen.strerror[0].lower() + seen.strerror[1:]
        for arg in getattr(seen, "args", ()):
            if isinstance(arg, BaseException):
                seen = arg
                break
        else:
            seen = seen.__context__ or getattr(seen, "reason", None)
            if isinstance(seen, str):
                return seen
    text = str(exc)
    return text.rsplit(": ", 1)[-1].rstrip("')\"") if "Caused by" in text else text


def open_rest(url: str, location: str, options: BackendOptions) -> RestBackend:
    settings = options.for_scheme("rest", OPTIONS)
    return RestBackend(with_environment_login(url), location, options, connections=settings["connections"])


def with_environment_login(url: str) -> str:
    """url with RESTIC_REST_USERNAME and RESTIC_REST_PASSWORD as its login when it names
    none itself (as restic: a user or password in the URL wins)."""
    parts = urlsplit(url)
    user, password = os.environ.get("RESTIC_REST_USERNAME", ""), os.environ.get("RESTIC_REST_PASSWORD", "")
    if parts.username or parts.password is not None or not (user or password) or not parts.hostname:
        return url
    from urllib.parse import quote

    login = f"{quote(user, safe='')}:{quote(password, safe='')}@"
    return urlunsplit(parts._replace(netloc=login + parts.netloc.rpartition("@")[2]))
