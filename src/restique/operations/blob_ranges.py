"""Many blobs of one pack range decrypted and checked in one native call that holds no GIL.

_seal.open_range decodes each blob straight into one bytes object for the whole range; each
blob is handed out as a view of it. Blob by blob, each decryption and hash would take the GIL
back from the thread walking or writing several times, and a thread that waits for the GIL
waits up to the interpreter's switch interval. The errors are the ones BlobStore.decode
raises for the same damage.
"""
from typing import List, Sequence, Tuple

from ..errors import IntegrityError
from ..repository.crypto import OVERHEAD, check_uncompressed_length

_ID_MISMATCH = "content does not match its id"  # open_range's words for it
_NO_BLOB = (0, 0, 0, bytes(32))  # stands in for a blob refused before the call: takes no room


def decode(key, sealed: bytes, start: int, blobs: Sequence[Tuple[str, object]]) -> List[object]:
    """Each blob's plaintext (bytes, or a memoryview of the range's plaintext) or the
    IntegrityError it gives; blobs are (id, location) read from sealed, which starts at
    offset start of their pack. ValueError when a blob lies outside sealed (callers then
    decode blob by blob)."""
    from .. import _seal

    calls = []
    refused = {}
    for i, (blob_id, loc) in enumerate(blobs):
        ulen = loc.uncompressed_length
        if ulen:
            try:  # a length no frame of this size reaches: damage, and too large to make room for
                check_uncompressed_length(ulen, loc.length - OVERHEAD)
            except IntegrityError as exc:
                refused[i] = IntegrityError(f"decrypting blob {blob_id} failed: {exc}")
                calls.append(_NO_BLOB)
                continue
        calls.append((loc.offset - start, loc.length, ulen, bytes.fromhex(blob_id)))
    plain, failures = _seal.open_range(key.encrypt, key.mac_k, key.mac_r, sealed, calls)
    del sealed
    if len(blobs) == 1:
        decoded: List[object] = [plain]
    else:  # views: the range's plaintext is let go once the last of them is
        decoded = []
        view = memoryview(plain)
        at = 0
        for _, length, ulen, _ in calls:
            room = ulen or max(length - OVERHEAD, 0)  # open_range's layout
            decoded.append(view[at:at + room])
            at += room
    for i, what in failures:
        decoded[i] = refused.get(i) or blob_error(blobs[i][0], what)
    return decoded


def blob_error(blob_id: str, what: str) -> IntegrityError:
    """The error BlobStore.decode raises for the damage open_range reports as what."""
    if what == _ID_MISMATCH:
        return IntegrityError(f"blob {blob_id} is damaged: its content does not match its id")
    return IntegrityError(f"decrypting blob {blob_id} failed: {what}")
