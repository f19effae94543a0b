"""Repairing snapshots (current restic's `repair snapshots`): new snapshots without what the
index no longer has.

restic's rules, which depend on a correct index (run `repair index` first):
- a file's content blobs missing from the index are dropped and its size set to the sum of
  the blobs kept (a file whose blobs are all there but whose size is wrong gets its size
  fixed); entries of an invalid type (`irregular`, none) are removed;
- a directory whose tree cannot be loaded keeps its name and metadata and becomes empty;
- a snapshot whose root tree cannot be loaded is removed;
- every tree is saved as this version encodes it (so snapshots with fields it does not
  know become rewritable);
- the new snapshots are tagged `repaired` unless --forget removes the originals;
- an unreadable snapshot file is removed only with --forget when it is named explicitly.

    for result in repair_snapshots(repo, select_snapshots(repo, []), RepairOptions(forget=True)):
        ...
"""
from dataclasses import dataclass, replace
from typing import Iterable, Iterator, Optional, Union

from ..errors import RestiqueError
from ..model.node import Node
from ..model.snapshot import Snapshot
from .rewrite import NodeEvent, OnNode, OnSnapshot, ReplaceResult, UnreadableSnapshot, replace_snapshot
from .tree_rewriter import TreeRewriter

# NodeEvent kinds
INVALID_TYPE = "invalid type"  # detail: the node's type
MISSING_CONTENT = "missing content"
INCORRECT_SIZE = "incorrect size"
ROOT_UNREADABLE = "root unreadable"
EMPTIED_DIRECTORY = "emptied directory"


@dataclass
class RepairOptions:
    forget: bool = False
    dry_run: bool = False


def _repair_node(index, on_node: Optional[OnNode]):
    def report(kind, path, detail=""):
        if on_node:
            on_node(NodeEvent(kind, path, detail))

    def repair_node(node: Node, path: str) -> Optional[Node]:
        if node.type in ("irregular", ""):
            report(INVALID_TYPE, path, node.type)
            return None
        if node.type != "file":
            return node
        content, size, missing = [], 0, False
        for blob_id in node.content or ():
            where = index.lookup("data", blob_id)
            if where is None:
                missing = True
            else:
                content.append(blob_id)
                size += where.size
        if missing:
            report(MISSING_CONTENT, path)
        elif size != node.size:
            report(INCORRECT_SIZE, path)
        if content == node.content and size == node.size:
            return node
        return replace(node, content=content, size=size)  # null content becomes [], as in restic
    return repair_node


def _failed_tree(on_node: Optional[OnNode]):
    def rewrite_failed_tree(tree_id, path, exc):
        if path == "/":
            if on_node:
                on_node(NodeEvent(ROOT_UNREADABLE, path))
            return None
        if on_node:
            on_node(NodeEvent(EMPTIED_DIRECTORY, path))
        return []
    return rewrite_failed_tree


def check_unreadable(snapshots, options: RepairOptions) -> None:
    """Refuse, before anything is changed, an unreadable snapshot file that is not to be
    removed (restic's message, naming the command that removes it)."""
    for sn in snapshots:
        if isinstance(sn, UnreadableSnapshot) and not (options.forget and sn.named):
            raise RestiqueError(
                f"snapshot file {sn.id} is unreadable, use `restique repair snapshots --forget {sn.id}` "
                f"to remove it. Original error: {sn.error}")


def repair_snapshots(repo, snapshots: Iterable[Union[Snapshot, UnreadableSnapshot]],
                     options: RepairOptions, *, on_snapshot: Optional[OnSnapshot] = None,
                     on_node: Optional[OnNode] = None
                     ) -> Iterator[Union[ReplaceResult, UnreadableSnapshot]]:
    """Repair each snapshot; yields a ReplaceResult for each snapshot (changed or not), and
    each unreadable snapshot file that was (or in a dry run would be) removed. on_snapshot is
    called before a snapshot is repaired, on_node for each repair made (messages once per
    tree: a tree shared by several snapshots is repaired once)."""
    snapshots = list(snapshots)
    check_unreadable(snapshots, options)
    index = repo.load_index()
    rewriter = TreeRewriter(repo, _repair_node(index, on_node), _failed_tree(on_node),
                            path_independent=True, normalize=True, dry_run=options.dry_run)
    for sn in snapshots:
        if isinstance(sn, UnreadableSnapshot):
            if not options.dry_run:
                repo.remove("snapshot", sn.id)
            yield sn
            continue
        if on_snapshot:
            on_snapshot(sn)
        try:
            rewritten = rewriter.rewrite(sn.tree)
        except RestiqueError as exc:
            raise RestiqueError(f'unable to rewrite snapshot ID "{sn.short_id}": {exc}') from None
        yield replace_snapshot(repo, sn, rewritten, tag="repaired", forget=options.forget,
                               dry_run=options.dry_run)
