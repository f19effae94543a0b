"""Errors that reach the user, each with restic's exit code.

Every layer raises these (or subclasses); the CLI prints ``Fatal: <message>`` on one line and
exits with ``exit_code``. Anything else escaping to the CLI is a bug.
"""


class RestiqueError(Exception):
    """A failure the user must be told about; exit code 1 unless a subclass says otherwise."""

    exit_code = 1


class UsageError(RestiqueError):
    """Bad command line input."""


class RepositoryNotFound(RestiqueError):
    exit_code = 10


class LockFailed(RestiqueError):
    exit_code = 11


class WrongPassword(RestiqueError):
    exit_code = 12

    def __init__(self, message="wrong password or no key found"):
        super().__init__(message)


class IntegrityError(RestiqueError):
    """Data read from the repository is damaged: MAC, hash or format check failed."""


class NotFound(RestiqueError):
    """A named object (blob, snapshot, file) does not exist."""


class AlreadyExists(RestiqueError):
    pass

