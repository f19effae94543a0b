"""Downloads: a file with HTTP ranges (resumable, seekable), a folder as a streamed tar or
zip archive written by `dump` (the same bytes as `restique dump`), never held whole in
memory."""
import mimetypes
import queue
import re
import threading
from typing import Iterator, List, Optional, Tuple
from urllib.parse import quote

from ..operations.dump import DumpOptions, dump
from .fs_paths import display

CHUNK = 1024 * 1024
# Archive bytes waiting for a slow client: at most this many chunks per download.
ARCHIVE_QUEUE_CHUNKS = 4
_RANGE = re.compile(r"^bytes=(\d*)-(\d*)$")


def parse_range(header: str, size: int) -> Optional[Tuple[int, int]]:
    """(start, end exclusive) of a single `bytes=` range; None to send the whole file (no
    header, or several ranges, which a server may answer in full); ValueError when the range
    cannot be satisfied."""
    match = _RANGE.match(header.strip())
    if not match or not any(match.groups()):
        return None
    first, last = match.groups()
    if not first:  # the last N bytes
        length = int(last)
        if length == 0:
            raise ValueError("empty suffix range")
        return max(0, size - length), size
    start = int(first)
    end = min(size, int(last) + 1) if last else size
    if start >= size or end <= start:
        raise ValueError("range outside the file")
    return start, end


def content_disposition(name: str, inline: bool = False) -> str:
    """The file name for the browser, in plain ASCII and as UTF-8 (RFC 6266)."""
    shown = display(name)
    ascii_name = shown.encode("ascii", "replace").decode("ascii").replace('"', "_").replace("\\", "_")
    kind = "inline" if inline else "attachment"
    return f"{kind}; filename=\"{ascii_name}\"; filename*=UTF-8''{quote(shown.encode('utf-8'), safe='')}"


def file_response(fs, entry, environ, start_response) -> Iterator[bytes]:
    size = entry.size
    etag = f'"{entry.inode:x}-{size:x}-{entry.mtime_ns:x}"'
    content_type = mimetypes.guess_type(display(entry.name))[0] or "application/octet-stream"
    headers = [("Accept-Ranges", "bytes"), ("ETag", etag),
               ("Content-Type", content_type),
               ("Content-Disposition", content_disposition(entry.name, inline=_shows_inline(content_type)))]
    if environ.get("HTTP_IF_NONE_MATCH") == etag:
        start_response("304 Not Modified", headers)
        return iter(())
    span = None
    range_header = environ.get("HTTP_RANGE", "")
    if_range = environ.get("HTTP_IF_RANGE")
    if range_header and (if_range is None or if_range == etag):
        try:
            span = parse_range(range_header, size)
        except ValueError:
            start_response("416 Range Not Satisfiable", headers + [("Content-Range", f"bytes */{size}"),
                                                                  ("Content-Length", "0")])
            return iter(())
    start, end = span or (0, size)
    if span is None:
        start_response("200 OK", headers + [("Content-Length", str(size))])
    else:
        start_response("206 Partial Content", headers + [
            ("Content-Range", f"bytes {start}-{end - 1}/{size}"), ("Content-Length", str(end - start))])
    if environ.get("REQUEST_METHOD") == "HEAD":
        return iter(())
    return _file_chunks(fs.open_reader(entry.path), start, end)


def _shows_inline(content_type: str) -> bool:
    # the browser shows pictures, video, sound, PDF and text itself; the rest is saved
    return content_type.split("/")[0] in ("image", "video", "audio", "text") or content_type == "application/pdf"


def _file_chunks(reader, start: int, end: int) -> Iterator[bytes]:
    offset = start
    while offset < end:
        data = reader.read(offset, min(CHUNK, end - offset))
        if not data:
            return  # the file is shorter than its entry says: the client sees a short body
        offset += len(data)
        yield data


class _Closed(Exception):
    """The client went away: the archive writer stops."""


class _QueueWriter:
    """A binary stream for dump(): collects writes into chunks handed to the response
    through a bounded queue, so a slow client slows the archive down instead of filling
    memory."""

    def __init__(self):
        self.chunks: "queue.Queue" = queue.Queue(ARCHIVE_QUEUE_CHUNKS)
        self.closed_by_client = threading.Event()
        self._pending: List[bytes] = []
        self._pending_size = 0

    def write(self, data) -> int:
        if self.closed_by_client.is_set():
            raise _Closed()
        self._pending.append(bytes(data))
        self._pending_size += len(data)
        if self._pending_size >= CHUNK:
            self.flush()
        return len(data)

    def flush(self) -> None:
        if self._pending:
            self._put(b"".join(self._pending))
            self._pending, self._pending_size = [], 0

    def _put(self, item) -> None:
        while True:
            if self.closed_by_client.is_set():
                raise _Closed()
            try:
                self.chunks.put(item, timeout=0.5)
                return
            except queue.Full:
                continue


def archive_response(repo, tree_id: str, inner_path: str, name: str, archive: str,
                     start_response) -> Iterator[bytes]:
    """The folder inner_path of the tree as a tar or zip, produced by a thread while the
    response is sent. An error after the first bytes can only cut the response short."""
    writer = _QueueWriter()

    def produce():
        try:
            dump(repo, tree_id, inner_path, writer, DumpOptions(archive=archive))
            writer.flush()
            writer._put(None)
        except _Closed:
            pass
        except Exception as exc:  # reported to the client by ending the stream early
            try:
                writer._put(exc)
            except _Closed:
                pass

    threading.Thread(target=produce, name="serve-archive", daemon=True).start()
    content_type = "application/zip" if archive == "zip" else "application/x-tar"
    start_response("200 OK", [("Content-Type", content_type),
                              ("Content-Disposition", content_disposition(f"{name}.{archive}"))])
    return _ArchiveBody(writer)


class _ArchiveBody:
    """The response body; close() (called by the server when the client leaves) stops the
    producing thread."""

    def __init__(self, writer: _QueueWriter):
        self.writer = writer

    def __iter__(self):
        while True:
            item = self.writer.chunks.get()
            if item is None:
                return
            if isinstance(item, Exception):
                # too late for an error status: a truncated body is what the client can detect
                raise ConnectionAbortedError(f"archive stopped: {item}")
            yield item

    def close(self) -> None:
        self.writer.closed_by_client.set()
