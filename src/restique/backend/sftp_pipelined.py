"""paramiko's SFTP client with its requests pipelined: one thread reads every reply and hands it
to the request it answers, so many threads can have requests outstanding on one session, and a
transfer sends its reads or writes ahead instead of waiting for each reply in turn.

paramiko's own client lets whichever thread waits read the next reply, and drops a reply that
belongs to another thread's synchronous request; so every request goes through `request()` here.
Its high-level calls (stat, mkdir, rename, listdir_attr ...) keep working: they all go through
`_request`, which this class answers from the reply thread. Its SFTPFile is not used.
"""
import struct
import threading
from collections import deque
from typing import Dict, Iterable, Optional

from paramiko import SFTPAttributes, SFTPClient, SFTPError
from paramiko.message import Message
from paramiko.sftp import (CMD_ATTRS, CMD_CLOSE, CMD_DATA, CMD_EXTENDED, CMD_EXTENDED_REPLY, CMD_FSETSTAT,
                           CMD_FSTAT, CMD_HANDLE, CMD_INIT, CMD_OPEN, CMD_READ, CMD_STATUS, CMD_VERSION,
                           CMD_WRITE, int64)

SFTP_VERSION = 3
SAFE_BLOCK = 32 * 1024  # the read and write size every server takes (the protocol's minimum)
MAX_BLOCK = 255 * 1024  # OpenSSH's largest, as its limits@openssh.com extension says
IN_FLIGHT = 64  # requests one transfer keeps outstanding (as restic's sftp client)
MAX_PACKET = 1 << 24  # a longer packet is garbage, not a reply


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
        self.body: memoryview = memoryview(b"")  # the packet after its type byte
        self.lost: Optional[str] = None
        self.into = into  # where a read's data goes straight from the pipe
        self.placed = False  # the data is in `into`; body holds the request number and count

    def answer(self, kind: int, body: memoryview, placed: bool = False) -> None:
        self.kind, self.body, self.placed, self.into = kind, body, placed, None
        self._done.set()

    def fail(self, why: str) -> None:
        self.lost = why
        self._done.set()

    def wait(self):
        self._done.wait()
        if self.lost is not None:
            raise ConnectionDropped(self.lost)
        return self.kind, self.body

    def message(self) -> Message:
        """The answer as paramiko's Message, positioned after the request number."""
        msg = Message(bytes(self.body))
        msg.get_int()
        return msg


class PipelinedClient(SFTPClient):
    """An SFTPClient over channel whose requests may come from any thread at any time."""

    def __init__(self, channel):
        self._send_lock = threading.Lock()  # one packet at a time on the pipe
        self._waiting: Dict[int, _Reply] = {}
        self._lost: Optional[str] = None
        self.extensions: Dict[str, bytes] = {}
        super().__init__(channel)  # the version handshake, before any other reader exists
        self._replies = threading.Thread(target=self._read_replies, name="sftp-replies", daemon=True)
        self._replies.start()
        self.read_block, self.write_block = self._block_sizes()

    # --- requests and replies ---
    def request(self, kind: int, *fields, payload=None, into: Optional[memoryview] = None) -> _Reply:
        """Send one request (fields as paramiko encodes them; payload, a bytes-like object, sent
        as the last string without a copy) and return where its reply will arrive; the data of
        a read's answer goes into `into` when it fits there."""
        with self._lock:
            if self._lost is not None:
                raise ConnectionDropped(self._lost)
            number = self.request_number
            self.request_number += 1
            reply = self._waiting[number] = _Reply(into)
        msg = Message()
        msg.add_int(number)
        for field in fields:
            if isinstance(field, int64):
                msg.add_int64(field)
            elif isinstance(field, int):
                msg.add_int(field)
            elif isinstance(field, SFTPAttributes):
                field._pack(msg)
            else:
                msg.add_string(field)
        head = msg.asbytes()
        extra = 0 if payload is None else 4 + len(payload)
        parts = [struct.pack(">IB", 1 + len(head) + extra, kind), head]
        if payload is not None:
            parts += [struct.pack(">I", len(payload)), payload]
        with self._send_lock:
            for part in parts:
                self._send_all(memoryview(part))
        return reply

    def _send_all(self, data: memoryview) -> None:
        while data:
            data = data[self.sock.send(data):]

    def _request(self, t, *args):
        """paramiko's synchronous request, for its high-level calls."""
        reply = self.request(t, *args)
        kind, _ = reply.wait()
        msg = reply.message()
        if kind == CMD_STATUS:
            self._convert_status(msg)
        return kind, msg

    def _async_request(self, fileobj, t, *args):
        """paramiko's fire-and-forget request (a closing handle's): the reply is dropped."""
        self.request(t, *args)

    def _read_response(self, waitfor=None):
        raise SFTPError("replies are read by the reply thread")

    def _read_replies(self) -> None:
        """The reply thread: each reply to the request it answers, until the pipe closes."""
        head = memoryview(bytearray(9))  # length, type, request number
        try:
            while True:
                self._receive_into(head)
                size, kind, number = struct.unpack(">IBI", head)
                if not 5 <= size <= MAX_PACKET:
                    raise SFTPError(f"garbage packet received (length {size})")
                with self._lock:
                    reply = self._waiting.pop(number, None)
                into = reply.into if reply is not None and kind == CMD_DATA and size >= 9 else None
                body, placed = self._receive_body(head[5:], size - 5, into)
                if reply is not None:
                    reply.answer(kind, body, placed)
        except (OSError, EOFError, SFTPError, ValueError) as exc:
            with self._lock:
                self._lost = str(exc) or type(exc).__name__
                waiting, self._waiting = self._waiting, {}
            for reply in waiting.values():
                reply.fail(self._lost)

    def _receive_body(self, number: memoryview, rest: int, into: Optional[memoryview]):
        """(body, placed): the rest of a packet after its request number. A read's data goes
        straight into `into` (one copy, from the pipe) when it fits; else it is in body."""
        if into is not None:
            body = memoryview(bytearray(8))
            body[:4] = number
            self._receive_into(body[4:])
            count = int.from_bytes(body[4:], "big")
            if count == rest - 4 and count <= len(into):
                self._receive_into(into[:count])
                return body, True
            whole = memoryview(bytearray(4 + rest))
            whole[:8] = body
            self._receive_into(whole[8:])
            return whole, False
        body = memoryview(bytearray(4 + rest))
        body[:4] = number
        self._receive_into(body[4:])
        return body, False

    def _receive_into(self, view: memoryview) -> None:
        got, size = 0, len(view)
        while got < size:
            count = self.sock.recv_into(view[got:])
            if not count:
                raise EOFError("end of stream")
            got += count

    # --- the handshake ---
    def _send_version(self):
        """The version exchange, keeping the extensions the server names (paramiko drops them)."""
        msg = Message()
        msg.add_int(SFTP_VERSION)
        self._send_packet(CMD_INIT, msg)
        kind, data = self._read_packet()
        if kind != CMD_VERSION:
            raise SFTPError("Incompatible sftp protocol")
        msg = Message(data)
        version = msg.get_int()
        while msg.get_remainder():
            name = msg.get_text()
            self.extensions[name] = msg.get_binary()
        return version

    def _block_sizes(self):
        """(read, write) request sizes: the server's own limits where it says them."""
        if "limits@openssh.com" not in self.extensions:
            return SAFE_BLOCK, SAFE_BLOCK
        kind, msg = self._request(CMD_EXTENDED, "limits@openssh.com")
        if kind != CMD_EXTENDED_REPLY:
            return SAFE_BLOCK, SAFE_BLOCK
        msg.get_int64()  # the largest packet: implied by the other two
        read, write = msg.get_int64(), msg.get_int64()
        return min(read or SAFE_BLOCK, MAX_BLOCK), min(write or SAFE_BLOCK, MAX_BLOCK)

    # --- files by handle ---
    def open_handle(self, path: str, flags: int) -> bytes:
        kind, msg = self._request(CMD_OPEN, self._adjust_cwd(path), flags, SFTPAttributes())
        if kind != CMD_HANDLE:
            raise SFTPError("Expected handle")
        return msg.get_binary()

    def close_handle(self, handle: bytes, wait: bool = True) -> None:
        """Close a handle; without wait nobody hears the answer (a read-only handle's)."""
        reply = self.request(CMD_CLOSE, handle)
        if wait:
            self._check_status(reply)

    def fstat(self, handle: bytes) -> SFTPAttributes:
        kind, msg = self._request(CMD_FSTAT, handle)
        if kind != CMD_ATTRS:
            raise SFTPError("Expected attributes")
        return SFTPAttributes._from_msg(msg)

    def fchmod(self, handle: bytes, mode: int) -> None:
        attrs = SFTPAttributes()
        attrs.st_mode = mode
        self._request(CMD_FSETSTAT, handle, attrs)

    def fsync(self, handle: bytes) -> None:
        """Make the server write the file to disk, where it can (fsync@openssh.com)."""
        if "fsync@openssh.com" in self.extensions:
            self._request(CMD_EXTENDED, "fsync@openssh.com", handle)

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
                pending.append((asked, size, self.request(CMD_READ, handle, int64(offset + asked), size,
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
            if kind == CMD_STATUS:
                try:
                    self._convert_status(reply.message())
                except EOFError:
                    return done
                raise SFTPError("Expected data")  # an OK status answering a read
            if kind != CMD_DATA:
                raise SFTPError("Expected data")
            count = int.from_bytes(body[4:8], "big")
            if count > size - done or (not reply.placed and len(body) < 8 + count):
                raise SFTPError("the server answered a read with more bytes than asked")
            if not reply.placed:
                view[start + done:start + done + count] = body[8:8 + count]
            done += count
            if done == size or not count:
                return done
            reply = self.request(CMD_READ, handle, int64(offset + start + done), size - done,
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
                pending.append(self.request(CMD_WRITE, handle, int64(at), payload=chunk))
                at += len(chunk)
        while pending:
            self._check_status(pending.popleft())

    def _check_status(self, reply: _Reply) -> None:
        kind, _ = reply.wait()
        if kind != CMD_STATUS:
            raise SFTPError("Expected status")
        self._convert_status(reply.message())
