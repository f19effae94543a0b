"""A directory whose tree is reused is counted at once; its entries are listed only for a
progress output that shows them. Both ways give the same tree and the same summary."""
import os

from restique.operations.archiver import BackupOptions
from restique.operations.archiver.progress import BackupProgress
from restique.operations.backup import BackupRequest, run_backup
from restique.repository.repository import init_repository

from conftest import PASSWORD


class Listing(BackupProgress):
    def __init__(self):
        super().__init__()
        self.items = []

    def item(self, path, kind, result):
        self.items.append((path, kind, result.action))


def _stats(progress):
    s = progress.stats
    return (s.files.new, s.files.changed, s.files.unmodified, s.dirs.new, s.dirs.changed, s.dirs.unmodified,
            s.files_processed, s.bytes_processed)


def test_counted_and_listed_reuse_agree(tmp_path, monkeypatch):
    # a relative target: the snapshot holds no folder above it (/tmp and pytest's folders
    # change under other tests, and one backup saw /tmp changed where the next did not)
    monkeypatch.chdir(tmp_path)
    src = tmp_path / "src"
    for d in ("a/b/c", "a/x", "z", "empty"):
        (src / d).mkdir(parents=True)
    for i, d in enumerate(("a", "a/b", "a/b/c", "a/x", "z")):
        (src / d / f"f{i}.txt").write_text("x" * (i + 1))
    os.symlink("f0.txt", src / "a" / "link")
    # the same backups into two repositories, one counting, one listing
    repos = [init_repository(str(tmp_path / name), PASSWORD, kdf_params=(1 << 10, 8, 1)) for name in ("r1", "r2")]
    try:
        request = BackupRequest(paths=["src"], options=BackupOptions(read_concurrency=1))
        first = run_backup(repos[0], request)
        second = run_backup(repos[1], request)
        assert second.tree == first.tree
        assert not BackupProgress().wants_items() and Listing().wants_items()
        counted = run_backup(repos[0], request, BackupProgress())
        listed = run_backup(repos[1], request, Listing())
        (src / "z" / "f4.txt").write_text("changed")  # z is walked, a is still reused
        counted_changed = run_backup(repos[0], request, BackupProgress())
        listed_changed = run_backup(repos[1], request, Listing())
        trees = [outcome.tree for outcome in (first, counted, listed, counted_changed, listed_changed)]
    finally:
        for repo in repos:
            repo.close()
    assert trees[1] == trees[2] == trees[0]
    assert trees[3] == trees[4] != trees[0]
    assert _stats(counted.progress) == _stats(listed.progress)
    assert _stats(counted_changed.progress) == _stats(listed_changed.progress)
    # 5 files (f0..f4; the link counts as neither), the target's folders
    stats = counted.progress.stats
    assert stats.files.unmodified == 5 and stats.files.new == stats.files.changed == 0
    assert stats.bytes_processed == 1 + 2 + 3 + 4 + 5
    assert stats.dirs.new == stats.dirs.changed == 0
    base = "/src"  # the snapshot path of the relative target
    items = {path: (kind, action) for path, kind, action in listed.progress.items}
    assert items[base + "/a/b/c/f2.txt"] == ("file", "unchanged")
    assert items[base + "/a/b/"] == ("dir", "unchanged") and items[base + "/empty/"] == ("dir", "unchanged")
    assert base + "/a/link" not in items
    changed = {path: action for path, kind, action in listed_changed.progress.items}
    assert changed[base + "/z/f4.txt"] == "modified" and changed[base + "/a/b/c/f2.txt"] == "unchanged"
