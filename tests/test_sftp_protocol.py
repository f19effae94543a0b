"""restique's own SFTP version 3 encoding (instead of paramiko's): request fields and file
attributes as the protocol lays them out, status codes as the errors the backend maps, and the
session's start-up cost that made it worth writing."""
import errno
import struct
import subprocess
import sys

import pytest

from restique.backend.sftp_protocol import (ATTRS, STATUS, Attributes, Int64, ProtocolError, Reader, encode, expect,
                                            raise_status)


def test_fields_are_encoded_as_the_protocol_lays_them_out():
    assert encode(7) == b"\x00\x00\x00\x07"
    assert encode(Int64(1 << 40)) == b"\x00\x00\x01\x00\x00\x00\x00\x00"
    assert encode("ab", b"\xff") == b"\x00\x00\x00\x02ab" + b"\x00\x00\x00\x01\xff"
    # only the mode is sent when only the mode is set (mkdir, fchmod)
    assert encode(Attributes(st_mode=0o700)) == struct.pack(">II", 0x4, 0o700)
    assert encode(Attributes()) == b"\x00\x00\x00\x00"  # open: no attributes


def test_attributes_are_read_back_with_every_optional_part():
    body = struct.pack(">IQIIIII", 0x1 | 0x2 | 0x4 | 0x8 | 0x80000000, 123456789012, 1000, 1001, 0o100400,
                       11, 22) + struct.pack(">I", 1) + encode("name@example.com", "value") + encode(99)
    reply = Reader(memoryview(body))
    attrs = reply.attributes("f")
    assert (attrs.filename, attrs.st_size, attrs.st_uid, attrs.st_gid) == ("f", 123456789012, 1000, 1001)
    assert (attrs.st_mode, attrs.st_atime, attrs.st_mtime) == (0o100400, 11, 22)
    assert reply.u32() == 99 and reply.remaining() == 0  # the extended pairs were skipped whole
    size_only = Reader(struct.pack(">IQ", 0x1, 5)).attributes()
    assert size_only.st_size == 5 and size_only.st_mode is None


def test_a_reply_cut_short_is_a_protocol_error():
    with pytest.raises(ProtocolError):
        Reader(b"\x00\x00\x00\x09abc").binary()
    with pytest.raises(ProtocolError):
        Reader(b"\x00\x00").u32()


def _status(code: int, text: str = "") -> Reader:
    return Reader(encode(code, text, ""))


def test_statuses_are_the_errors_the_backend_maps():
    raise_status(_status(0, "Success"))  # OK: nothing
    with pytest.raises(EOFError):
        raise_status(_status(1, "End of file"))
    with pytest.raises(FileNotFoundError) as missing:
        raise_status(_status(2, "No such file"))
    assert missing.value.errno == errno.ENOENT
    with pytest.raises(PermissionError) as denied:
        raise_status(_status(3, "Permission denied"))
    assert denied.value.errno == errno.EACCES
    with pytest.raises(OSError) as failure:  # a plain failure: the server's text, no errno
        raise_status(_status(4, "Failure"))
    assert failure.value.errno is None and str(failure.value) == "Failure"
    raise_status(Reader(encode(0)))  # a status without text, as some servers send


def test_a_reply_of_another_type_is_refused():
    reply = Reader(encode(0, "ok", ""))
    with pytest.raises(ProtocolError):  # an OK status where attributes were asked for
        expect(STATUS, reply, ATTRS)
    with pytest.raises(FileNotFoundError):
        expect(STATUS, _status(2), ATTRS)
    with pytest.raises(ProtocolError):
        expect(ATTRS + 1, Reader(b""), ATTRS)


def test_the_sftp_backend_does_not_load_an_ssh_library():
    """The session runs the system ssh: an SSH library's import (a third of a second and
    20 MiB in paramiko's case) would be paid by every sftp command for nothing."""
    code = ("import sys, restique.backend.sftp, restique.backend.sftp_pipelined; "
            "print(sorted(m for m in ('paramiko', 'cryptography', 'invoke') if m in sys.modules))")
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True).stdout.strip() == "[]"
