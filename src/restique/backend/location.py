"""Turn a repository string (`/path`, `local:/path`, `sftp:host:/path`, ...) into a backend.

Each scheme maps to a factory taking (the text after `scheme:`, the whole location). Factories
import their backend's module only when called, so an unused backend costs nothing at start.
"""
from __future__ import annotations

import importlib
from typing import Callable, Dict, List, Tuple

from ..errors import RestiqueError, UsageError
from .base import Backend

Factory = Callable[[str, str], Backend]

# restic's schemes that restique does not speak yet: named in the error instead of "invalid"
_PLANNED_SCHEMES = ("b2", "azure", "gs", "swift")


def _local(path: str, location: str) -> Backend:
    from .local import LocalBackend

    return LocalBackend(path, location)


def _sftp(rest: str, location: str, options=None) -> Backend:
    from .sftp import open_sftp

    return open_sftp(location, options)


def _rest(url: str, location: str, options) -> Backend:
    from .rest import open_rest

    return open_rest(url, location, options)


def _s3(rest: str, location: str, options) -> Backend:
    from .s3 import open_s3

    return open_s3(location, options)


def _rclone(remote: str, location: str, options) -> Backend:
    from .rclone import open_rclone

    return open_rclone(remote, location, options)


SCHEMES: Dict[str, Factory] = {"local": _local, "sftp": _sftp, "rest": _rest, "rclone": _rclone, "s3": _s3}
# schemes whose factory takes a third argument, the BackendOptions (-o, TLS, limits)
_WITH_OPTIONS = {"sftp", "rest", "rclone", "s3"}


# the schemes whose backend module (of the same name) has extended OPTIONS
_OPTION_SCHEMES = ("rclone", "rest", "s3", "sftp")


def extended_options() -> List[Tuple[str, str]]:
    """Every extended option (`-o scheme.name=value`) as (scheme.name, what it does), sorted."""
    listed = []
    for scheme in _OPTION_SCHEMES:
        options = importlib.import_module(f"{__package__}.{scheme}").OPTIONS
        listed += [(f"{scheme}.{name}", option.help) for name, option in options.items()]
    return sorted(listed)


def register_scheme(scheme: str, factory: Factory, with_options: bool = False) -> None:
    """Make `scheme:...` locations open with factory (replacing an earlier registration);
    with_options: the factory takes the BackendOptions as a third argument."""
    SCHEMES[scheme] = factory
    (_WITH_OPTIONS.add if with_options else _WITH_OPTIONS.discard)(scheme)


def open_backend(location: str, options=None) -> Backend:
    """The backend for location, wrapped in retries and rate limits (backend.compose)."""
    from .compose import wrap_backend
    from .options import BackendOptions

    options = options or BackendOptions()
    return wrap_backend(_open_plain(location, options), options)


def _open_plain(location: str, options) -> Backend:
    if not location:
        raise UsageError("Please specify repository location (-r or --repository-file)")
    scheme, sep, rest = location.partition(":")
    if sep:
        factory = SCHEMES.get(scheme)
        if factory is not None:
            return factory(rest, location, options) if scheme in _WITH_OPTIONS else factory(rest, location)
        if scheme in _PLANNED_SCHEMES:
            raise RestiqueError(f"the {scheme} backend is not implemented yet (repository {location})")
        if "/" not in scheme and len(scheme) > 1:
            raise UsageError(
                "parsing repository location failed: invalid backend; "
                "if the repository is in a local directory, add a `local:` prefix"
            )
    # no scheme: a path (a drive letter or a colon after a slash is part of the path)
    return SCHEMES["local"](location, location)
