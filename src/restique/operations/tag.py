"""Changing the tags of snapshots, as restic does: a changed snapshot is saved as a new file
that records the id of the very first version in `original`, then the old file is removed.

    with open_repository(...) as repo, repo.lock(exclusive=True):
        snapshots = find_filtered_snapshots(repo, [], SnapshotFilter(), warn=print)
        for change in tag_snapshots(repo, snapshots, TagOptions(add=["keep"])):
            print(change.old_id, "->", change.new_id)
"""
from dataclasses import dataclass, field, replace
from typing import Callable, Iterable, Iterator, List, Optional

from ..errors import RestiqueError, UsageError
from ..model.snapshot import Snapshot

Warn = Callable[[str], None]


@dataclass
class TagOptions:
    """Tags as the flags give them; each flag value may be a comma separated list, and
    empty tags are ignored (restic's TagLists.Flatten)."""
    set: List[str] = field(default_factory=list)
    add: List[str] = field(default_factory=list)
    remove: List[str] = field(default_factory=list)

    def check(self) -> None:
        """restic's refusals, before the repository is opened."""
        if not (self.set or self.add or self.remove):
            raise UsageError("nothing to do!")
        if self.set and (self.add or self.remove):
            raise UsageError("--set and --add/--remove cannot be given at the same time")


@dataclass
class TagChange:
    """A snapshot whose tags changed: the file it was and the file it is now."""
    old_id: str
    new_id: str
    snapshot: Snapshot


def flatten_tags(values: Iterable[str]) -> List[str]:
    """Flag values (`a,b`, ` c `) as one list of non-empty tags, in order."""
    return [tag for value in values for tag in (t.strip() for t in value.split(",")) if tag]


def changed_tags(tags: Optional[List[str]], options: TagOptions) -> Optional[List[str]]:
    """The new tag list, or None when nothing changes. --set always counts as a change (as
    in restic) unless its tags are all empty; --add appends the tags not there yet; --remove
    takes out the first occurrence of each tag the way restic does (the last tag moves into
    its place), so the order matches a snapshot restic retagged."""
    set_tags = flatten_tags(options.set)
    if set_tags:
        return set_tags
    new = list(tags or [])
    changed = False
    for tag in flatten_tags(options.add):
        if tag not in new:
            new.append(tag)
            changed = True
    for tag in flatten_tags(options.remove):
        if tag in new:
            i = new.index(tag)
            new[i] = new[-1]
            new.pop()
            changed = True
    return new if changed else None


def retag_snapshot(repo, sn: Snapshot, options: TagOptions) -> Optional[TagChange]:
    """Save sn with its changed tags and remove the old file; None when nothing changes.
    The new file is written before the old one is removed, so an interruption leaves both
    (a duplicate the user can forget), never neither."""
    tags = changed_tags(sn.tags, options)
    if tags is None:
        return None
    new = replace(sn, tags=tags, original=sn.original or sn.id, id="")
    new.id = repo.save_json("snapshot", new.to_json(with_id=False))
    repo.remove("snapshot", sn.id)
    return TagChange(sn.id, new.id, new)


def tag_snapshots(repo, snapshots: Iterable[Snapshot], options: TagOptions,
                  warn: Optional[Warn] = None) -> Iterator[TagChange]:
    """Change the tags of each snapshot; yields a TagChange for every snapshot changed. A
    snapshot that cannot be saved or removed is reported to warn (restic's message) and
    skipped; without warn the error is raised."""
    options.check()
    for sn in snapshots:
        try:
            change = retag_snapshot(repo, sn, options)
        except (RestiqueError, OSError) as exc:
            if warn is None:
                raise
            warn(f'unable to modify the tags for snapshot ID "{sn.id}", ignoring: {exc}')
            continue
        if change is not None:
            yield change
