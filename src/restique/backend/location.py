"""Turn a repository string (`/path`, `local:/path`, `sftp:host:/path`, ...) into a backend.

Each scheme maps to a factory taking (the text after `scheme:`, the whole location). Factories
import their backend's module only when called, so an unused backend costs nothing at start.
"""
from typing import Callable, Dict

from ..errors import RestiqueError, UsageError
from .base import Backend

Factory = Callable[[str, str], Backend]

# restic's schemes that restique does not speak yet: named in the error instead of "invalid"
_PLANNED_SCHEMES = ("sftp", "rest", "s3", "rclone", "b2", "azure", "gs", "swift")


def _local(path: str, location: str) -> Backend:
    from .local import LocalBackend

    return LocalBackend(path, location)


SCHEMES: Dict[str, Factory] = {"local": _local}


def register_scheme(scheme: str, factory: Factory) -> None:
    """Make `scheme:...` locations open with factory (replacing an earlier registration)."""
    SCHEMES[scheme] = factory


def open_backend(location: str) -> Backend:
    if not location:
        raise UsageError("Please specify repository location (-r or --repository-file)")
    scheme, sep, rest = location.partition(":")
    if sep:
        factory = SCHEMES.get(scheme)
        if factory is not None:
            return factory(rest, location)
        if scheme in _PLANNED_SCHEMES:
            raise RestiqueError(f"the {scheme} backend is not implemented yet (repository {location})")
        if "/" not in scheme and len(scheme) > 1:
            raise UsageError(
                "parsing repository location failed: invalid backend; "
                "if the repository is in a local directory, add a `local:` prefix"
            )
    # no scheme: a path (a drive letter or a colon after a slash is part of the path)
    return SCHEMES["local"](location, location)
