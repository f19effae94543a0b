"""restique: deduplicating, encrypted backups in the restic repository format.

Library surface::

    import restique
    repo = restique.init_repository("/srv/repo", password="secret")
    blob_id, new = repo.save_blob("data", b"hello")
    repo.flush()
    repo = restique.open_repository("/srv/repo", password="secret")
    assert repo.load_blob("data", blob_id) == b"hello"
"""
from .errors import (
    IntegrityError,
    LockFailed,
    RepositoryNotFound,
    RestiqueError,
    WrongPassword,
)
from .repository.repository import Repository, init_repository, open_repository

__version__ = "0.1.0"

__all__ = [
    "IntegrityError",
    "LockFailed",
    "RepositoryNotFound",
    "Repository",
    "RestiqueError",
    "WrongPassword",
    "init_repository",
    "open_repository",
    "__version__",
]
