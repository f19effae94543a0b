"""Storage backends: where repository files live. One contract (base.py), several implementations."""
from .base import (
    Backend,
    BackendError,
    BackendFileExists,
    BackendNotFound,
    BackendShortRead,
    FileType,
    PermanentBackendError,
    is_not_found,
    is_permanent,
)
from .location import open_backend, register_scheme

__all__ = [
    "Backend",
    "BackendError",
    "BackendFileExists",
    "BackendNotFound",
    "BackendShortRead",
    "FileType",
    "PermanentBackendError",
    "is_not_found",
    "is_permanent",
    "open_backend",
    "register_scheme",
]
