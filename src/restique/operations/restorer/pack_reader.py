"""Step 2 of a restore: file contents, pack by pack (restic's filerestorer.go).

Every needed data blob is grouped by pack; each pack is read once (its needed byte range in
one or a few large reads), each blob decrypted and checked once and written to every
(file, offset) that uses it. Packs go to a small thread pool; the crypto, zstd and SHA-256
work releases the GIL. Memory is bounded by the workers' reads.
"""
from concurrent.futures import ThreadPoolExecutor
from typing import Dict, List, Tuple

from ...errors import RestiqueError
from ...repository.index import BlobLocation
from ..fs_io import error_message
from .file_writer import FilesWriter, PackFiles
from .plan import PlannedFile

MAX_READ = 8 * 1024 * 1024  # largest single read from a pack (bounds memory per worker)
MAX_GAP = 512 * 1024  # unneeded bytes between two blobs that are cheaper to read than to skip


class _Blob:
    """A blob to restore: where it is, and every (file, offset) that needs it."""

    __slots__ = ("loc", "offset", "length", "dests")

    def __init__(self, loc: BlobLocation):
        self.loc = loc
        self.offset = loc.offset
        self.length = loc.length
        self.dests: List[Tuple[PlannedFile, int]] = []


def restore_contents(repo, index, files: List[PlannedFile], writer: FilesWriter, workers: int) -> None:
    """Write the content of files; failures are marked on the files and reported."""
    packs = _blobs_by_pack(index, files, writer)
    if not packs:
        return
    with ThreadPoolExecutor(workers, thread_name_prefix="restore") as pool:
        futures = [pool.submit(_restore_pack, repo, writer, pack_id, packs.pop(pack_id))
                   for pack_id in list(packs)]
        try:
            for fut in futures:
                fut.result()
        except BaseException:
            for fut in futures:
                fut.cancel()
            raise


def _blobs_by_pack(index, files: List[PlannedFile], writer: FilesWriter) -> Dict[str, Dict[str, _Blob]]:
    """pack id -> blob id -> blob, packs in order of first use; the files are prepared."""
    packs: Dict[str, Dict[str, _Blob]] = {}
    lookup = index.lookup
    for f in files:
        offset = 0
        already = 0
        for i, blob_id in enumerate(f.content):
            loc = lookup("data", blob_id)
            if loc is None:
                writer.fail(f, f"Unknown blob {blob_id}")
                break
            size = loc.size
            if f.matches is not None and f.matches[i]:
                already += size
            else:
                pack = packs.get(loc.pack_id)
                if pack is None:
                    pack = packs[loc.pack_id] = {}
                blob = pack.get(blob_id)
                if blob is None:
                    blob = pack[blob_id] = _Blob(loc)
                blob.dests.append((f, offset))
                f.remaining += 1
            offset += size
        if not f.failed:
            writer.prepare(f, already)
    return packs


def _restore_pack(repo, writer: FilesWriter, pack_id: str, blobs: Dict[str, _Blob]) -> None:
    ordered = sorted(blobs.items(), key=lambda kv: kv[1].offset)
    with PackFiles(writer, (blob.dests for _, blob in ordered)) as open_files:
        for start, end, group in _read_ranges(ordered):
            try:
                data = repo.load_pack(pack_id, start, end - start)
            except (OSError, EOFError, RestiqueError) as exc:
                message = _pack_error(pack_id, exc)
                for _, blob in group:
                    for f, _ in blob.dests:
                        writer.fail(f, message)
                continue
            view = memoryview(data)
            for blob_id, blob in group:
                _restore_blob(repo, writer, open_files, blob_id, blob,
                              view[blob.offset - start:blob.offset - start + blob.length])
            del view, data


def _restore_blob(repo, writer: FilesWriter, open_files: PackFiles, blob_id: str, blob: _Blob,
                  sealed: memoryview) -> None:
    live = [(f, off) for f, off in blob.dests if not f.failed]
    if live:
        try:
            plain = repo.blobs.decode(blob_id, sealed, blob.loc)
        except (RestiqueError, ValueError, EOFError) as exc:  # damaged data, never a crash
            for f, _ in live:
                writer.fail(f, exc)
        else:
            open_files.write(plain, live)
    open_files.release(blob.dests)


def _read_ranges(ordered: List[Tuple[str, _Blob]]):
    """Group blobs sorted by offset into (start, end, blobs) reads: neighbours closer than
    MAX_GAP share a read, no read is larger than MAX_READ (unless one blob is)."""
    group: List[Tuple[str, _Blob]] = []
    start = end = 0
    for item in ordered:
        blob = item[1]
        b_end = blob.offset + blob.length
        if group and (blob.offset - end > MAX_GAP or b_end - start > MAX_READ):
            yield start, end, group
            group = []
        if not group:
            start = blob.offset
        group.append(item)
        end = max(end, b_end) if len(group) > 1 else b_end
    if group:
        yield start, end, group


def _pack_error(pack_id: str, exc: BaseException) -> str:
    if isinstance(exc, FileNotFoundError):
        return f"pack {pack_id[:10]} is missing: {error_message(exc)}"
    if isinstance(exc, EOFError):
        return f"pack {pack_id[:10]} is truncated: {exc}"
    return f"reading pack {pack_id[:10]}: {error_message(exc)}"

