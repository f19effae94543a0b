"""Restoring a snapshot tree into a directory, as restic's restorer does.

restorer     Restorer / restore(): the steps below, composed
options      RestoreOptions: what to restore and how, validated in one place
traverse     the tree walk both walks share (restic's traverseTree)
plan         step 1, first walk: directories, overwrite decisions, files to write
pack_reader  step 2: blobs grouped by pack, each pack read once by worker threads
file_writer  step 2: creating files and writing blobs into them
finish       step 3, a replay of the first walk (while the last packs are written): special
             files, hard links, metadata, --delete
metadata     owner, extended attributes, times and mode of one entry
verify       --verify: re-read the restored files
report       stats, progress calls and per-entry errors, shared by the threads
"""
from .options import OVERWRITE_MODES, RestoreOptions
from .report import (
    DELETED,
    DIR_RESTORED,
    FILE_RESTORED,
    FILE_UNCHANGED,
    FILE_UPDATED,
    OTHER_RESTORED,
    RestoreProgress,
    RestoreStats,
)
from .restorer import Restorer, restore

__all__ = [
    "OVERWRITE_MODES", "RestoreOptions", "RestoreProgress", "RestoreStats", "Restorer", "restore",
    "DELETED", "DIR_RESTORED", "FILE_RESTORED", "FILE_UNCHANGED", "FILE_UPDATED", "OTHER_RESTORED",
]
