"""Recovering trees no snapshot reaches (`recover`): after a snapshot was forgotten by
accident (and before prune), its data is still in the repository.

Every tree blob of the index is loaded; a tree that is neither a subtree of another tree nor
the root of a snapshot is a lost root. A new tree holds one directory per lost root, named by
its short id, and a new snapshot of `/recover` tagged `recovered` points to it, as restic
writes them.
"""
import getpass
from ..model import gojson
import os
import socket
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Dict, Iterator, List, Optional, Tuple

from ..backend.base import BackendError
from ..errors import IntegrityError
from ..model.gotime import GoTime
from ..model.node import Node, encode_tree
from ..model.snapshot import Snapshot
from ..repository.index import BlobLocation
from .repair_index import MaintenanceReport
from .snapshot_lookup import load_all_snapshots

# tree blobs of one pack closer than this are read with one request
_MERGE_GAP = 256 * 1024
_PACK_READERS = 4


@dataclass
class RecoverOptions:
    hostname: Optional[str] = None  # the new snapshot's host; None: this machine
    time: Optional[GoTime] = None  # the new snapshot's (and its directories') time; None: now


@dataclass
class RecoverResult:
    roots: List[str] = field(default_factory=list)  # ids of the unreferenced trees, sorted
    tree_id: Optional[str] = None  # the new root tree
    snapshot: Optional[Snapshot] = None  # the saved snapshot (None: nothing to recover)


def recover(repo, options: Optional[RecoverOptions] = None,
            report: Optional[MaintenanceReport] = None) -> RecoverResult:
    """Save a snapshot of every tree no other tree and no snapshot references."""
    options = options or RecoverOptions()
    report = report or MaintenanceReport()
    snapshot_ids = repo.list_ids("snapshot")  # before ours is written
    report.message("load index files")
    repo.load_index()
    referenced: Dict[str, bool] = {blob_id: False for _, blob_id in repo.index.blobs("tree")}
    report.message(f"load {len(referenced)} trees")
    counter = report.counter("trees loaded", len(referenced))
    for tree_id, subtrees in _load_subtrees(repo, list(referenced), report):
        for subtree in subtrees:
            referenced[subtree] = True
        counter.add(1)
    counter.done()

    report.message("load snapshots")
    for sn in load_all_snapshots(repo, snapshot_ids, warn=report.warning):
        if sn.tree:
            referenced[sn.tree] = True
    report.message("done")

    result = RecoverResult(roots=sorted(i for i, seen in referenced.items() if not seen))
    for root in result.roots:
        report.detail(f"found root tree {root[:8]}")
    if result.roots:
        result.tree_id, result.snapshot = _save_recovered(repo, result.roots, options)
    return result


def _load_subtrees(repo, tree_ids: List[str], report: MaintenanceReport) -> Iterator[Tuple[str, List[str]]]:
    """(tree id, ids of its directories' subtrees) for every tree that loads; a tree that
    does not is reported (`unable to load tree ...`) and left out."""
    by_pack: Dict[str, List[Tuple[str, BlobLocation]]] = {}
    for tree_id in tree_ids:
        loc = repo.index.lookup("tree", tree_id)
        by_pack.setdefault(loc.pack_id, []).append((tree_id, loc))
    with ThreadPoolExecutor(max_workers=_PACK_READERS) as pool:
        for loaded in pool.map(lambda blobs: _load_pack_trees(repo, blobs), by_pack.values()):
            for tree_id, subtrees, error in loaded:
                if error is not None:
                    report.warning(f"unable to load tree {tree_id[:8]}: {error}")
                else:
                    yield tree_id, subtrees


def _load_pack_trees(repo, blobs: List[Tuple[str, BlobLocation]]):
    """[(tree id, subtree ids, error)] of one pack's tree blobs, read in few requests."""
    out = []
    for group in _nearby(sorted(blobs, key=lambda b: b[1].offset)):
        start = group[0][1].offset
        end = max(loc.offset + loc.length for _, loc in group)
        try:
            span = repo.load_pack(group[0][1].pack_id, start, end - start)
        except BackendError as exc:
            out.extend((tree_id, [], exc) for tree_id, _ in group)
            continue
        for tree_id, loc in group:
            sealed = span[loc.offset - start:loc.offset - start + loc.length]
            try:
                out.append((tree_id, _subtrees(repo.blobs.decode(tree_id, sealed, loc)), None))
            except (IntegrityError, ValueError, TypeError, AttributeError) as exc:
                out.append((tree_id, [], exc))
    return out


def _nearby(blobs):
    group = []
    for blob in blobs:
        if group and blob[1].offset - (group[-1][1].offset + group[-1][1].length) > _MERGE_GAP:
            yield group
            group = []
        group.append(blob)
    if group:
        yield group


def _subtrees(raw: bytes) -> List[str]:
    """The subtree ids of a tree blob's directories (no full node decoding needed)."""
    nodes = gojson.loads(raw).get("nodes") or []
    return [n["subtree"] for n in nodes if n.get("type") == "dir" and n.get("subtree")]


def _save_recovered(repo, roots: List[str], options: RecoverOptions) -> Tuple[str, Snapshot]:
    """Write the tree of lost roots (one directory each, mode 0755 as restic sets it), then
    its snapshot."""
    now = options.time or GoTime.now()
    nodes = [Node(name=root[:8], type="dir", mode=0o755, mtime=now, atime=now, ctime=now, subtree=root)
             for root in roots]
    tree_id, _ = repo.save_blob("tree", encode_tree(nodes))
    repo.flush()
    snapshot = Snapshot(time=now, tree=tree_id, paths=["/recover"],
                        hostname=options.hostname or socket.gethostname(),
                        username=_username(), uid=os.getuid(), gid=os.getgid(), tags=["recovered"])
    snapshot.id = repo.save_json("snapshot", snapshot.to_json(with_id=False))
    return tree_id, snapshot


def _username() -> str:
    try:
        return getpass.getuser()
    except Exception:  # no user name for this uid: restic leaves the field empty
        return ""
