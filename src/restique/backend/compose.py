"""The one place where wrappers are put around a backend, in restic's order: the rate limiter
next to the storage (it meters the bytes actually moved, retries included), the retries
outside it; the local cache, when a program wants one, outermost."""
from .cache import CachedBackend
from .limiter import RateLimitedBackend
from .local import LocalBackend
from .options import BackendOptions
from .retry import RetryBackend


def wrap_backend(backend, options: BackendOptions):
    if options.limit_upload or options.limit_download:
        backend = RateLimitedBackend(backend, options.limit_upload, options.limit_download)
    # A local disk's errors (full, read-only, I/O error) do not pass by waiting: only storage
    # reached over a network or a helper process is retried.
    if not isinstance(backend, LocalBackend) and not _wraps_local(backend):
        backend = RetryBackend(backend, options.retry_max_time, options.retry_max_tries)
    return backend


def with_cache(backend) -> CachedBackend:
    """The backend behind a local cache, switched on by use_cache() once the repository id
    (the cache folder's name) is known; until then every call passes straight through."""
    return CachedBackend(backend)


def _wraps_local(backend) -> bool:
    return isinstance(getattr(backend, "backend", None), LocalBackend)
