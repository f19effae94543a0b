"""Object ids: SHA-256 digests, written as 64 lowercase hex digits."""
import hashlib
import re

from ..errors import UsageError

ID_HEX_LEN = 64
_HEX = re.compile(r"^[0-9a-f]*$")


def hash_id(data) -> str:
    """The id of a blob or file: hex SHA-256 of its bytes."""
    return hashlib.sha256(data).hexdigest()


def parse_id(text: str) -> str:
    """A full id given on the command line; restic's messages for malformed ones."""
    text = text.strip().lower()
    if not _HEX.match(text):
        raise UsageError(f"unable to parse ID: invalid hex in {text!r}")
    if len(text) % 2:
        raise UsageError("unable to parse ID: odd length hex string")
    if len(text) != ID_HEX_LEN:
        raise UsageError("unable to parse ID: invalid length for hash")
    return text


def short_id(full: str) -> str:
    return full[:8]


def find_by_prefix(prefix: str, ids) -> str:
    """The one id starting with prefix; restic's errors when none or several do."""
    from ..errors import NotFound

    matches = [i for i in ids if i.startswith(prefix)]
    if not matches:
        raise NotFound(f'no matching ID found for prefix "{prefix}"')
    if len(matches) > 1:
        raise NotFound(f'multiple IDs with prefix "{prefix}" found')
    return matches[0]
