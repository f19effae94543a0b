"""Turn a repository string (`/path`, `local:/path`, ...) into a backend."""
from ..errors import RestiqueError, UsageError
from .local import LocalBackend

_REMOTE_SCHEMES = ("sftp", "rest", "s3", "rclone", "b2", "azure", "gs", "swift")


def open_backend(location: str):
    if not location:
        raise UsageError("Please specify repository location (-r or --repository-file)")
    scheme, sep, rest = location.partition(":")
    if sep and scheme == "local":
        return LocalBackend(rest, location)
    if sep and scheme in _REMOTE_SCHEMES:
        raise RestiqueError(f"the {scheme} backend is not implemented yet (repository {location})")
    if sep and "/" not in scheme and len(scheme) > 1:
        raise UsageError(
            "parsing repository location failed: invalid backend; "
            "if the repository is in a local directory, add a `local:` prefix"
        )
    return LocalBackend(location, location)
