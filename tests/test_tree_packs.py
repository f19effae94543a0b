"""Tree blobs loaded pack by pack (operations/prune/tree_packs.py): every wanted tree comes
back with its own plaintext however many parts its pack is cut into and decoded in threads,
and a part that does not decode raises TreeBlobsUnavailable after the parts before it."""
import pytest

from restique.errors import IntegrityError
from restique.operations.prune import tree_packs
from restique.operations.prune.tree_packs import TreeBlobsUnavailable, load_trees
from restique.repository.index import BlobLocation


class FakeBlobs:
    """Sealed blobs are b"<" + plaintext + b">"; a damaged one does not decode."""

    def __init__(self, repo):
        self.repo = repo

    def decode(self, blob_id, sealed, loc):
        sealed = bytes(sealed)
        if blob_id in self.repo.damaged or sealed[:1] != b"<" or sealed[-1:] != b">":
            raise IntegrityError(f"blob {blob_id} is damaged")
        return sealed[1:-1]

    def load(self, blob_type, blob_id, loc):
        return self.decode(blob_id, self.repo.load_pack(loc.pack_id, loc.offset, loc.length), loc)


class FakeRepo:
    def __init__(self, trees_per_pack, damaged=()):
        self.packs, self.locations, self.reads, self.damaged = {}, {}, [], set(damaged)
        self.blobs = FakeBlobs(self)
        for p, count in enumerate(trees_per_pack):
            pack_id = f"{p:064x}"
            data = b""
            for t in range(count):
                tree_id = f"{p:032x}{t:032x}"
                sealed = b"<tree %d of pack %d>" % (t, p)
                self.locations[tree_id] = BlobLocation(pack_id, len(data), len(sealed), 0)
                data += sealed
            self.packs[pack_id] = data

    def load_pack(self, pack_id, offset, length):
        self.reads.append((pack_id, offset, length))
        return self.packs[pack_id][offset:offset + length]


def test_every_tree_comes_back_from_parts_decoded_in_threads():
    repo = FakeRepo([3 * tree_packs._PART_BLOBS + 5, 1, 7])
    got = dict(load_trees(repo, list(repo.locations), repo.locations.get))
    assert got == {tree_id: b"tree %d of pack %d" % (int(tree_id[32:], 16), int(tree_id[:32], 16))
                   for tree_id in repo.locations}
    assert len(repo.reads) == 4 + 1 + 1  # one read per part of a pack, one per lone tree


def test_a_damaged_part_stops_the_batch_after_the_parts_before_it():
    repo = FakeRepo([3 * tree_packs._PART_BLOBS])
    order = sorted(repo.locations, key=lambda tree_id: repo.locations[tree_id].offset)
    repo.damaged.add(order[tree_packs._PART_BLOBS + 1])
    got = []
    with pytest.raises(TreeBlobsUnavailable):
        for tree_id, _ in load_trees(repo, order, repo.locations.get):
            got.append(tree_id)
    assert got == order[:tree_packs._PART_BLOBS]


def test_a_tree_the_index_does_not_know_is_unavailable():
    repo = FakeRepo([2])
    with pytest.raises(TreeBlobsUnavailable):
        list(load_trees(repo, list(repo.locations) + ["f" * 64], repo.locations.get))
