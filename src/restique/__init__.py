"""restique: deduplicating, encrypted backups in the restic repository format.

The library interface is ``restique.api``, re-exported here::

    import restique

    with restique.open("/srv/repo", password_file="/etc/backup.pw") as repo:
        snapshot, summary, _ = restique.backup(repo, ["/home/me/documents"])
        print(snapshot.short_id, summary["files_new"])

Names are imported on first use, so ``import restique`` stays cheap: the backends' client
library (urllib3) loads only when a location needs it.
"""
# no typing here: every command loads this package before its key derivation starts
# (cli.key_prefetch), and typing with what it imports costs several milliseconds
TYPE_CHECKING = False

__version__ = "0.1.0"

# the lower-level names this package exported before restique.api existed
_REPOSITORY_NAMES = {"init_repository": "repository.repository", "open_repository": "repository.repository"}

if TYPE_CHECKING:  # for type checkers and editors; at run time __getattr__ imports lazily
    from .api import *  # noqa: F401,F403
    from .repository.repository import init_repository, open_repository  # noqa: F401


def _api_names() -> "list[str]":
    from . import api

    return list(api.__all__)


def __getattr__(name: str) -> object:
    import importlib

    if name == "__all__":  # `from restique import *`: api's names are listed once, in api.py
        value = ["__version__", "api", *_REPOSITORY_NAMES, *_api_names()]
    elif name == "api":
        value = importlib.import_module(".api", __name__)
    elif name in _REPOSITORY_NAMES:
        value = getattr(importlib.import_module(f".{_REPOSITORY_NAMES[name]}", __name__), name)
    elif not name.startswith("_") and name in _api_names():
        value = getattr(importlib.import_module(".api", __name__), name)
    else:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    globals()[name] = value
    return value


def __dir__() -> "list[str]":
    return sorted(set(globals()) | set(_api_names()) | set(_REPOSITORY_NAMES))

