"""Mounting and unmounting through libfuse3 (as root directly, else through the setuid
fusermount3), which hands over the FUSE device; the requests read from it are answered
here, not by libfuse."""
import ctypes
import os
from typing import Iterable, Optional

LIBRARY = "libfuse3.so.3"


class _Args(ctypes.Structure):
    _fields_ = [("argc", ctypes.c_int), ("argv", ctypes.POINTER(ctypes.c_char_p)), ("allocated", ctypes.c_int)]


def load_libfuse() -> ctypes.CDLL:
    """libfuse3 with the few functions used here typed; OSError when it is not installed."""
    lib = ctypes.CDLL(LIBRARY)
    lib.fuse_session_new.restype = ctypes.c_void_p
    lib.fuse_session_new.argtypes = [ctypes.POINTER(_Args), ctypes.c_void_p, ctypes.c_size_t, ctypes.c_void_p]
    lib.fuse_session_mount.restype = ctypes.c_int
    lib.fuse_session_mount.argtypes = [ctypes.c_void_p, ctypes.c_char_p]
    lib.fuse_session_fd.restype = ctypes.c_int
    lib.fuse_session_fd.argtypes = [ctypes.c_void_p]
    for name in ("fuse_session_unmount", "fuse_session_destroy"):
        getattr(lib, name).restype = None
        getattr(lib, name).argtypes = [ctypes.c_void_p]
    lib.fuse_opt_free_args.restype = None
    lib.fuse_opt_free_args.argtypes = [ctypes.POINTER(_Args)]
    return lib


class MountError(Exception):
    pass


class FuseSession:
    """One mount: fd is the FUSE device to answer requests on."""

    def __init__(self, mountpoint: str, options: Iterable[str]):
        self._lib = load_libfuse()
        argv = [b"restique", b"-o", ",".join(sorted(options)).encode()]
        args = _Args(len(argv), (ctypes.c_char_p * len(argv))(*argv), 0)
        # no operations for libfuse: it only mounts, the requests are answered by the caller
        no_operations = ctypes.create_string_buffer(8)
        self._session: Optional[int] = self._lib.fuse_session_new(ctypes.byref(args), no_operations, 0, None)
        self._lib.fuse_opt_free_args(ctypes.byref(args))
        if not self._session:
            raise MountError("invalid mount options")
        if self._lib.fuse_session_mount(self._session, os.fsencode(os.path.abspath(mountpoint))) != 0:
            self.close()
            raise MountError("fuse_session_mount failed")
        self.fd = self._lib.fuse_session_fd(self._session)

    def unmount(self) -> None:
        """Unmount (nothing happens if it was unmounted already); closes fd."""
        if self._session:
            self._lib.fuse_session_unmount(self._session)

    def close(self) -> None:
        if self._session:
            self._lib.fuse_session_destroy(self._session)
            self._session = None
