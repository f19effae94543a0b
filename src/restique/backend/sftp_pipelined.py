"""An SFTP client whose requests are pipelined: one thread reads every reply and hands it to the
request it answers, so many threads can have requests outstanding on one session, and a
transfer sends its reads or writes ahead instead of waiting for each reply in turn (restic's
sftp client works the same way).

Every request goes through `request()`, which returns where its reply will arrive; the calls
below it (stat, mkdir, rename, listdir_attr, ...) wait for that reply. A read's data goes
from the pipe straight into the caller's buffer.
"""
import socket
import struct
import threading
from collections import deque
from typing import Dict, Iterable, List, Optional, Tuple

from .sftp_protocol import (ATTRS, CLOSE, DATA, EXTENDED, EXTENDED_REPLY, FSETSTAT, FSTAT, HANDLE, INIT, LSTAT,
                            MKDIR, NAME, OPEN, OPENDIR, READ, READDIR, REMOVE, RENAME, STAT, STATUS, VERSION,
                            WRITE, Attributes, Int64, ProtocolError, Reader, encode, expect, raise_status)

SFTP_VERSION = 3
SAFE_BLOCK = 32 * 1024  # the read and write size every server takes (the protocol's minimum)
MAX_BLOCK = 255 * 1024  # OpenSSH's largest, as its limits@openssh.com extension says
IN_FLIGHT = 64  # requests one transfer keeps outstanding (as restic's sftp client)
MAX_PACKET = 1 << 24  # a longer packet is garbage, not a reply
_RECEIVE_BUFFER = 256 * 1024  # small replies come in batches; a read's data bypasses it

_HEADER = struct.Struct(">IBI")  # length, type, request number


class ConnectionDropped(ConnectionAbortedError):
    """The pipe to the server closed: no request on this session will be answered again."""

    def __init__(self, why: str):
        super().__init__(f"Server connection dropped: {why}")


class _Reply:
    """Where the reply thread puts the answer to one request."""

    __slots__ = ("_done", "kind", "body", "lost", "into", "placed")

    def __init__(self, into: Optional[memoryview] = None):
        self._done = threading.Event()
        self.kind = 0
        self.body: memoryview = memoryview(b"")  # the packet after its request number
        self.lost: Optional[str] = None
        self.into = into  # where a read's data goes straight from the pipe
        self.placed = False  # the data is in `into`; body holds only its count

    def answer(self, kind: int, body: memoryview, placed: bool = False) -> None:
        self.kind, self.body, self.placed, self.into = kind, body, placed, None
        self._done.set()

    def fail(self, why: str) -> None:
        self.lost = why
        self._done.set()

    def wait(self) -> Tuple[int, Reader]:
        self._done.wait()
        if self.lost is not None:
            raise ConnectionDropped(self.lost)
        return self.kind, Reader(self.body)


class PipelinedClient:
    """SFTP over sock (a connected socket to the server's stdin and stdout); requests may come
    from any thread at any time."""

    def __init__(self, sock):
        self.sock = sock
        self._stream = sock.makefile("rb", buffering=_RECEIVE_BUFFER)
        self._lock = threading.Lock()  # the request numbers and the table of waiting replies
        self._send_lock = threading.Lock()  # one packet at a time on the pipe
        self._waiting: Dict[int, _Reply] = {}
        self._lost: Optional[str] = None
        self.request_number = 1
        try:
            self.extensions: Dict[str, bytes] = self._handshake()  # before any other reader exists
        except BaseException:
            self._stream.close()
            raise
        self._replies = threading.Thread(target=self._read_replies, name="sftp-replies", daemon=True)
        self._replies.start()
        self.read_block, self.write_block = self._block_sizes()

    # --- requests and replies ---
    def request(self, kind: int, *fields, payload=None, into: Optional[memoryview] = None) -> _Reply:
        """Send one request (fields as `encode` takes them; payload, a bytes-like object, sent
        as the last string without a copy) and return where its reply will arrive; the data of
        a read's answer goes into `into` when it fits there."""
        with self._lock:
            if self._lost is not None:
                raise ConnectionDropped(self._lost)
            number = self.request_number
            self.request_number += 1
            reply = self._waiting[number] = _Reply(into)
        head = encode(*fields)
        extra = 0 if payload is None else 4 + len(payload)
        head = _HEADER.pack(5 + len(head) + extra, kind, number) + head
        with self._send_lock:
            if payload is None:
                self.sock.sendall(head)
            else:
                self.sock.sendall(head + len(payload).to_bytes(4, "big"))
                self.sock.sendall(payload)
        return reply

    def call(self, kind: int, *fields, expected: int = STATUS) -> Reader:
        """One request, waiting for its reply: a status raises its error unless it is OK, any
        other reply must be of the expected type."""
        got, reply = self.request(kind, *fields).wait()
        if got == STATUS:
            raise_status(reply)
            if expected == STATUS:
                return reply
        return expect(got, reply, expected)

    def _read_replies(self) -> None:
        """The reply thread: each reply to the request it answers, until the pipe closes."""
        head = memoryview(bytearray(9))
        try:
            while True:
                self._receive_into(head)
                size, kind, number = _HEADER.unpack(head)
                if not 5 <= size <= MAX_PACKET:
                    raise ProtocolError(f"garbage packet received (length {size})")
                with self._lock:
                    reply = self._waiting.pop(number, None)
                into = reply.into if reply is not None and kind == DATA and size >= 9 else None
                body, placed = self._receive_body(size - 5, into)
                if reply is not None:
                    reply.answer(kind, body, placed)
        except (OSError, EOFError, ProtocolError, ValueError) as exc:
            with self._lock:
                self._lost = str(exc) or type(exc).__name__
                waiting, self._waiting = self._waiting, {}
            for reply in waiting.values():
                reply.fail(self._lost)
        finally:
            self._stream.close()

    def _receive_body(self, rest: int, into: Optional[memoryview]):
        """(body, placed): the rest of a packet after its request number. A read's data goes
        straight into `into` (one copy, from the pipe) when it fits; else it is in body."""
        if into is not None:
            count = memoryview(bytearray(4))
            self._receive_into(count)
            size = int.from_bytes(count, "big")
            if size == rest - 4 and size <= len(into):
                self._receive_into(into[:size])
                return count, True
            whole = memoryview(bytearray(rest))
            whole[:4] = count
            self._receive_into(whole[4:])
            return whole, False
        body = memoryview(bytearray(rest))
        self._receive_into(body)
        return body, False

    def _receive_into(self, view: memoryview) -> None:
        if self._stream.readinto(view) != len(view):
            raise EOFError("end of stream")

    def close(self) -> None:
        """End the session: the reply thread sees the end of the stream and fails whatever
        still waits."""
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.sock.close()

    # --- the handshake ---
    def _handshake(self) -> Dict[str, bytes]:
        """The version exchange: the extensions the server names, with their data."""
        init = encode(SFTP_VERSION)
        self.sock.sendall(struct.pack(">IB", 1 + len(init), INIT) + init)
        head = memoryview(bytearray(5))
        self._receive_into(head)
        size, kind = struct.unpack(">IB", head)
        if kind != VERSION or not 5 <= size <= MAX_PACKET:
            raise ProtocolError("incompatible sftp protocol")
        body = memoryview(bytearray(size - 1))
        self._receive_into(body)
        reply = Reader(body)
        reply.u32()  # the server's version: 3 or more, which speaks 3 to a client that asks for 3
        extensions = {}
        while reply.remaining():
            name = reply.text()
            extensions[name] = reply.binary()
        return extensions

    def _block_sizes(self):
        """(read, write) request sizes: the server's own limits where it says them."""
        if "limits@openssh.com" not in self.extensions:
            return SAFE_BLOCK, SAFE_BLOCK
        try:
            reply = self.call(EXTENDED, "limits@openssh.com", expected=EXTENDED_REPLY)
        except (OSError, EOFError, ProtocolError):
            return SAFE_BLOCK, SAFE_BLOCK
        reply.u64()  # the largest packet: implied by the other two
        read, write = reply.u64(), reply.u64()
        return min(read or SAFE_BLOCK, MAX_BLOCK), min(write or SAFE_BLOCK, MAX_BLOCK)

    # --- paths ---
    def stat(self, path: str) -> Attributes:
        return self.call(STAT, path, expected=ATTRS).attributes()

    def lstat(self, path: str) -> Attributes:
        return self.call(LSTAT, path, expected=ATTRS).attributes()

    def mkdir(self, path: str, mode: int) -> None:
        self.call(MKDIR, path, Attributes(st_mode=mode))

    def remove(self, path: str) -> None:
        self.call(REMOVE, path)

    def rename(self, old: str, new: str) -> None:
        """A plain rename, which servers refuse when new exists."""
        self.call(RENAME, old, new)

    def posix_rename(self, old: str, new: str) -> None:
        """A rename that replaces new (posix-rename@openssh.com); a server without the
        extension answers with a failure (an OSError without errno)."""
        self.call(EXTENDED, "posix-rename@openssh.com", old, new)

    def listdir_attr(self, path: str) -> List[Attributes]:
        """A folder's entries with their attributes, without `.` and `..`."""
        handle = self.call(OPENDIR, path, expected=HANDLE).binary()
        entries = []
        try:
            while True:
                try:
                    reply = self.call(READDIR, handle, expected=NAME)
                except EOFError:
                    break
                for _ in range(reply.u32()):
                    name = reply.text()
                    reply.binary()  # the long name, as `ls -l` would show it
                    attrs = reply.attributes(name)
                    if name not in (".", ".."):
                        entries.append(attrs)
        finally:
            self.close_handle(handle, wait=False)
        return entries

    # --- files by handle ---
    def open_handle(self, path: str, flags: int) -> bytes:
        return self.call(OPEN, path, flags, Attributes(), expected=HANDLE).binary()

    def close_handle(self, handle: bytes, wait: bool = True) -> None:
        """Close a handle; without wait nobody hears the answer (a read-only handle's)."""
        reply = self.request(CLOSE, handle)
        if wait:
            self._check_status(reply)

    def fstat(self, handle: bytes) -> Attributes:
        return self.call(FSTAT, handle, expected=ATTRS).attributes()

    def fchmod(self, handle: bytes, mode: int) -> None:
        self.call(FSETSTAT, handle, Attributes(st_mode=mode))

    def fsync(self, handle: bytes) -> None:
        """Make the server write the file to disk, where it can (fsync@openssh.com)."""
        if "fsync@openssh.com" in self.extensions:
            self.call(EXTENDED, "fsync@openssh.com", handle)

    def read(self, handle: bytes, offset: int, length: int) -> bytearray:
        """length bytes from offset, or fewer where the file ends, all requests sent ahead."""
        out = bytearray(length)
        view = memoryview(out)
        pending: deque = deque()
        asked = 0  # bytes requested so far
        end = length  # where the file turned out to end, within the range
        while pending or asked < end:
            while asked < end and len(pending) < IN_FLIGHT:
                size = min(self.read_block, end - asked)
                pending.append((asked, size, self.request(READ, handle, Int64(offset + asked), size,
                                                          into=view[asked:asked + size])))
                asked += size
            start, size, reply = pending.popleft()
            if start >= end:
                reply.wait()
                continue
            got = self._fill(view, start, size, offset, handle, reply)
            if got < size:
                end = start + got
        del view
        return out if end == length else out[:end]

    def _fill(self, view: memoryview, start: int, size: int, offset: int, handle: bytes, reply) -> int:
        """Copy one read's answer into view[start:]; a server may answer fewer bytes than
        asked, so the rest is asked for again. Returns the bytes got: fewer at the file's end."""
        done = 0
        while True:
            kind, body = reply.wait()
            if kind == STATUS:
                try:
                    raise_status(body)
                except EOFError:
                    return done
                raise ProtocolError("an OK status answered a read")
            if kind != DATA:
                raise ProtocolError(f"expected data, got reply type {kind}")
            count = body.u32()
            if count > size - done or (not reply.placed and body.remaining() < count):
                raise ProtocolError("the server answered a read with more bytes than asked")
            if not reply.placed:
                view[start + done:start + done + count] = body.data[4:4 + count]
            done += count
            if done == size or not count:
                return done
            reply = self.request(READ, handle, Int64(offset + start + done), size - done,
                                 into=view[start + done:start + size])

    def write(self, handle: bytes, parts: Iterable) -> None:
        """Write parts one after the other from offset 0, requests sent ahead, every answer checked."""
        pending: deque = deque()
        at = 0
        for part in parts:
            data = memoryview(part).cast("B")
            for start in range(0, len(data), self.write_block):
                chunk = data[start:start + self.write_block]
                if len(pending) >= IN_FLIGHT:
                    self._check_status(pending.popleft())
                pending.append(self.request(WRITE, handle, Int64(at), payload=chunk))
                at += len(chunk)
        while pending:
            self._check_status(pending.popleft())

    @staticmethod
    def _check_status(reply: _Reply) -> None:
        kind, body = reply.wait()
        if kind != STATUS:
            raise ProtocolError(f"expected a status, got reply type {kind}")
        raise_status(body)
