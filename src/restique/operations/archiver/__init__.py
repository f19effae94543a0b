"""Backup: turning files on disk into blobs, trees and a snapshot."""
from .archiver import Archiver, BackupOptions, BackupResult
from .progress import BackupProgress, BackupStats

__all__ = ["Archiver", "BackupOptions", "BackupResult", "BackupProgress", "BackupStats"]
