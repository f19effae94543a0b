"""The WSGI application of `serve`: /dav/ is WebDAV (wsgidav over the snapshot filesystem),
everything else is the web page.

Routes: `/` the snapshots, `/browse/<path>` a folder, `/download/<path>` a file (ranges) or,
with `?archive=tar|zip`, a folder as an archive, `/search?q=pattern` find across snapshots.
"""
import itertools
import posixpath
from typing import Optional
from urllib.parse import parse_qs

from ..errors import NotFound, RestiqueError
from . import downloads, fs_paths, pages
from .dav_provider import SnapshotDAVProvider

DAV_PREFIX = "/dav"
DAV_METHODS = "OPTIONS, GET, HEAD, PROPFIND"
_FINITE_DEPTH = (b'<?xml version="1.0" encoding="utf-8"?>\n'
                 b'<D:error xmlns:D="DAV:"><D:propfind-finite-depth/></D:error>\n')
SEARCH_LIMIT = 500


def _dav_app(fs):
    from wsgidav.error_printer import ErrorPrinter
    from wsgidav.request_resolver import RequestResolver
    from wsgidav.wsgidav_app import WsgiDAVApp

    config = {
        "provider_mapping": {DAV_PREFIX: SnapshotDAVProvider(fs)},
        "middleware_stack": [ErrorPrinter, RequestResolver],  # authentication is done before
        "http_authenticator": {"domain_controller": None},
        "simple_dc": {"user_mapping": {"*": True}},
        "lock_storage": None,  # read-only: clients mount without write locks
        "property_manager": None,
        "block_size": downloads.CHUNK,
        # PATH_INFO arrives already decoded with surrogate escapes (names need not be UTF-8)
        "hotfixes": {"re_encode_path_info": False},
        "logging": {"enable": False, "enable_loggers": []},
        "verbose": 0,
    }
    return WsgiDAVApp(config)


class ServeApp:
    """The WSGI callable: repo for archives and search, fs (a SnapshotFS) for the rest."""

    def __init__(self, repo, fs):
        self.repo = repo
        self.fs = fs
        self.dav = _dav_app(fs)

    def __call__(self, environ, start_response):
        path = fs_paths.from_wsgi(environ.get("PATH_INFO", "") or "/")
        if path == DAV_PREFIX or path.startswith(DAV_PREFIX + "/"):
            environ["PATH_INFO"] = path
            refusal = _dav_refusal(environ, start_response)
            if refusal is not None:
                return refusal
            if environ.get("REQUEST_METHOD") in ("GET", "HEAD") and self._is_folder(path[len(DAV_PREFIX):]):
                # a browser opening the share: show the folder's page
                return _redirect(start_response, "/browse" + fs_paths.to_url(fs_paths.clean(path[len(DAV_PREFIX):]) + "/"))
            return self.dav(environ, start_response)
        if environ.get("REQUEST_METHOD") == "OPTIONS":
            # Windows' WebDAV client asks the server root before it mounts /dav/
            return _respond(start_response, "200 OK", b"", "text/plain", [
                ("DAV", "1"), ("MS-Author-Via", "DAV"), ("Allow", DAV_METHODS)])
        if environ.get("REQUEST_METHOD") not in ("GET", "HEAD"):
            return _respond(start_response, "405 Method Not Allowed", b"read-only\n", "text/plain",
                            [("Allow", "GET, HEAD")])
        try:
            return self._page(path, environ, start_response)
        except NotFound as exc:
            return _respond(start_response, "404 Not Found", pages.error_page("404 Not Found", str(exc)))
        except RestiqueError as exc:
            return _respond(start_response, "500 Internal Server Error",
                            pages.error_page("500 Internal Server Error", str(exc)))

    def _is_folder(self, path: str) -> bool:
        try:
            return fs_paths.resolve(self.fs, path).kind == "dir"
        except RestiqueError:
            return False

    def _page(self, path, environ, start_response):
        query = parse_qs(environ.get("QUERY_STRING", ""))
        if path == "/":
            return _respond(start_response, "200 OK", pages.snapshots_page(self.fs.snapshots()))
        if path == "/search":
            return _respond(start_response, "200 OK", self._search(query.get("q", [""])[0]))
        for prefix, handler in (("/browse", self._browse), ("/download", self._download)):
            if path == prefix or path.startswith(prefix + "/"):
                return handler(path[len(prefix):] or "/", query, environ, start_response)
        raise NotFound(f"no page {fs_paths.display(path)}")

    def _browse(self, path, query, environ, start_response):
        entry = fs_paths.resolve(self.fs, path)
        if entry.kind != "dir":
            return _redirect(start_response, "/download" + fs_paths.to_url(fs_paths.clean(path)))
        if not path.endswith("/"):  # relative links need the slash
            return _redirect(start_response, "/browse" + fs_paths.to_url(fs_paths.clean(path) + "/"))
        entries = self.fs.list_dir(entry.path)
        in_snapshot = entry.snapshot is not None
        return _respond(start_response, "200 OK", pages.folder_page(fs_paths.clean(path), entries, in_snapshot))

    def _download(self, path, query, environ, start_response):
        entry = fs_paths.resolve(self.fs, path)
        if entry.kind == "file":
            return downloads.file_response(self.fs, entry, environ, start_response)
        archive = query.get("archive", ["tar"])[0]
        if entry.kind != "dir" or archive not in ("tar", "zip"):
            raise NotFound(f"{fs_paths.display(path)} cannot be downloaded")
        located = fs_paths.snapshot_root(self.fs, path)
        if located is None:
            raise NotFound("only folders inside a snapshot can be downloaded")
        snapshot, inner = located
        name = posixpath.basename(inner.rstrip("/")) or f"snapshot-{snapshot.id[:8]}"
        return downloads.archive_response(self.repo, snapshot.tree, inner, name, archive, start_response)

    def _search(self, pattern: str) -> bytes:
        from ..operations.find import FindOptions, FoundEntry, find

        pattern = pattern.strip()
        if not pattern:
            return pages.search_page("", [], False, "Type a name or a pattern such as *.pdf.")
        snapshots = {sn.id for sn in self.fs.snapshots()}  # honour serve's snapshot filter
        found = (item for item in find(self.repo, FindOptions(patterns=[pattern]), on_error=lambda *a: None)
                 if isinstance(item, FoundEntry) and item.snapshot.id in snapshots)
        results = [(f.snapshot, f.path, f.node) for f in itertools.islice(found, SEARCH_LIMIT + 1)]
        return pages.search_page(pattern, results[:SEARCH_LIMIT], len(results) > SEARCH_LIMIT)


def _dav_refusal(environ, start_response):
    """What the share refuses before wsgidav sees it: changes (405 with the Allow header
    RFC 9110 asks for, which wsgidav leaves out) and a PROPFIND of unlimited depth, which
    would walk every snapshot (RFC 4918 9.1 lets a server refuse it)."""
    method = environ.get("REQUEST_METHOD", "")
    if method not in ("OPTIONS", "GET", "HEAD", "PROPFIND"):
        return _respond(start_response, "405 Method Not Allowed", b"the share is read-only\n", "text/plain",
                        [("Allow", DAV_METHODS)])
    if method == "PROPFIND" and environ.get("HTTP_DEPTH", "infinity").strip().lower() == "infinity":
        return _respond(start_response, "403 Forbidden", _FINITE_DEPTH, "application/xml; charset=utf-8")
    return None


def _respond(start_response, status: str, body: bytes, content_type: str = "text/html; charset=utf-8",
             extra: Optional[list] = None):
    start_response(status, [("Content-Type", content_type), ("Content-Length", str(len(body)))]
                   + (extra or []))
    return [body]


def _redirect(start_response, location: str):
    start_response("301 Moved Permanently", [("Location", location), ("Content-Length", "0")])
    return [b""]
