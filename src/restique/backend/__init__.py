"""Storage backends: where repository files live. One protocol, several implementations."""
from .base import Backend, FileType
from .location import open_backend

__all__ = ["Backend", "FileType", "open_backend"]
