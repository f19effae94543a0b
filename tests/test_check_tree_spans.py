"""check reads the tree blobs of a pack in one piece (_TreeSpans) and serves only blobs that
decode from it; anything else (a damaged blob, a pack that cannot be read) is left to the
blob's own load, which reports it as before (test_check.py compares those reports with
restic's)."""
from restique.errors import IntegrityError
from restique.operations.check.indexed_packs import IndexedPacks
from restique.operations.check.structure import _TreeSpans
from restique.repository.index import BlobLocation, IndexEntry


def Loc(pack_id: str, offset: int, length: int) -> BlobLocation:
    return BlobLocation(pack_id, offset, length, 0)


class FakeRepo:
    def __init__(self, packs, damaged=()):
        self.packs, self.damaged, self.reads = packs, set(damaged), []
        self.blobs = self

    def load_pack(self, pack_id, offset, length):
        self.reads.append((pack_id, offset, length))
        if pack_id not in self.packs:
            raise FileNotFoundError(pack_id)
        return self.packs[pack_id][offset:offset + length]

    def decode(self, blob_id, sealed, loc):
        if blob_id in self.damaged:
            raise IntegrityError("damaged")
        return bytes(sealed)


def test_trees_of_a_pack_are_read_once():
    pack = b"dataDATAtreeAtreeBBmore"
    indexed = IndexedPacks()
    indexed.set("p", [IndexEntry("data", "d" * 64, 0, 8, 0), IndexEntry("tree", "a" * 64, 8, 5, 0),
                      IndexEntry("tree", "b" * 64, 13, 6, 0)])
    indexed.set("gone", [IndexEntry("tree", "e" * 64, 0, 4, 0)])
    repo = FakeRepo({"p": pack}, damaged={"bad"})
    spans = _TreeSpans(repo, indexed)
    assert spans.blob("a", Loc("p", 8, 5)) == b"treeA"
    assert spans.blob("b", Loc("p", 13, 6)) == b"treeBB"
    assert repo.reads == [("p", 8, 11)]  # only the part holding the trees
    assert spans.blob("bad", Loc("p", 8, 5)) is None  # damaged: the caller's load reports it
    assert spans.blob("c", Loc("p", 15, 10)) is None  # outside the part read
    assert spans.blob("x", Loc("gone", 0, 4)) is None
    assert spans.blob("x", Loc("gone", 0, 4)) is None
    assert repo.reads.count(("gone", 0, 4)) == 1  # not tried again
    assert spans.blob("y", Loc("unindexed", 0, 4)) is None
