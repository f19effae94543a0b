"""Writing a fresh set of index files for a given set of packs, the step that prune, repair
index and recover-style commands share. The new files are written first; only then may the
caller delete the files they supersede, so an interruption never leaves a blob unindexed."""
from typing import Dict, Iterable, List

from ..backend.base import FileType
from .index import MAX_BLOBS_PER_INDEX_FILE, IndexFile
from .pack import PackEntry


def write_index_files(repo, packs: Dict[str, List[PackEntry]], supersedes: Iterable[str] = ()) -> List[str]:
    """Save index files listing exactly `packs` (at most restic's blob count per file);
    the first file names the index files it supersedes. Returns the new index ids."""
    supersedes = list(supersedes)
    written: List[str] = []
    current = IndexFile(supersedes=supersedes)
    for pack_id, entries in packs.items():
        current.add_pack(pack_id, list(entries))
        if current.blob_count >= MAX_BLOBS_PER_INDEX_FILE:
            written.append(repo.save_unpacked(FileType.INDEX, current.encode()))
            current = IndexFile()
    if current.packs or (supersedes and not written):
        written.append(repo.save_unpacked(FileType.INDEX, current.encode()))
    return written


def remove_index_files(repo, index_ids: Iterable[str]) -> None:
    """Delete old index files (after their replacements are written)."""
    for index_id in index_ids:
        repo.remove(FileType.INDEX, index_id)


def load_index_files(repo) -> Dict[str, IndexFile]:
    """Every index file, id -> its content (duplicates and supersedes kept, unlike the
    master index): what check and prune need to see."""
    return {index_id: repo.load_index_file(index_id) for index_id in repo.list_ids(FileType.INDEX)}
