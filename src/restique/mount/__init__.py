"""`restique mount`: the snapshot filesystem (operations.snapshot_fs) served through FUSE.
libfuse3 mounts it (the system's fuse3 package); the requests are answered here (kernel.py
has the protocol)."""


def fuse_missing() -> str:
    """"" if libfuse3 loads, else why not (one line)."""
    from .session import LIBRARY, load_libfuse

    try:
        load_libfuse()
    except OSError:
        return f"mount needs libfuse3 ({LIBRARY} is not installed): install the fuse3 package"
    return ""
