"""`restique mount`: the snapshot filesystem (operations.snapshot_fs) served through FUSE
with pyfuse3 and trio, the optional extra `restique[mount]`. pyfuse3 is imported only in
this package: everything else works without it."""


def fuse_missing() -> str:
    """"" if pyfuse3 and trio import, else why not (one line)."""
    try:
        import pyfuse3  # noqa: F401
        import trio  # noqa: F401
    except ImportError as exc:
        return f"mount needs the FUSE bindings ({exc.name} is not installed): pip install restique[mount]"
    return ""
