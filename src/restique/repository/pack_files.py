"""Pack files as stored: their sizes, and the blob list in each one's header, read from the
backend without loading the whole pack. Used by check, prune, repair and copy."""
from typing import Dict, List

from ..backend.base import BackendShortRead, FileType
from ..errors import IntegrityError
from .crypto import OVERHEAD
from .pack import PackEntry, header_length_from_tail, parse_header

# one read from a pack's end usually holds the whole header: room for this many entries
_EAGER_ENTRIES = 15
_ENTRY_SIZE = 1 + 4 + 4 + 32


def list_pack_sizes(repo) -> Dict[str, int]:
    """Every pack file in the repository, id -> size in bytes."""
    return dict(repo.backend.list(FileType.PACK))


def read_pack_header(repo, pack_id: str, size: int) -> List[PackEntry]:
    """The blobs a pack's header lists, checked against the pack's size; IntegrityError
    saying what is wrong when the header cannot be read."""
    eager = min(size, 4 + OVERHEAD + _EAGER_ENTRIES * _ENTRY_SIZE)
    try:
        tail = repo.load_pack(pack_id, size - eager, eager) if eager else b""
        header_length = header_length_from_tail(tail, size)
        if header_length + 4 <= len(tail):
            sealed = tail[len(tail) - 4 - header_length:len(tail) - 4]
        else:
            sealed = repo.load_pack(pack_id, size - 4 - header_length, header_length)
        return parse_header(repo.key, sealed, size)
    except BackendShortRead:
        raise IntegrityError(f"pack {pack_id} is shorter than its listed size {size}") from None
    except IntegrityError as exc:
        raise IntegrityError(f"pack {pack_id}: {exc}") from None
