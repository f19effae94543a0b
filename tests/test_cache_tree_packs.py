"""Which packs the cache keeps (TreePacks): those the index says hold tree blobs, as the
index grows by packs saved and index files loaded, or is replaced."""
import json
import os
from types import SimpleNamespace

import pytest

from restique.errors import IntegrityError
from restique.operations.cache import TreePacks
from restique.repository.index import MasterIndex
from restique.repository.pack import PackEntry


def pack_of(blob_type: str) -> tuple:
    return os.urandom(32).hex(), [PackEntry(blob_type, os.urandom(32).hex(), 0, 100, 0)]


def index_text(pack_id: str, blob_type: str) -> bytes:
    blobs = [{"id": os.urandom(32).hex(), "type": blob_type, "offset": 0, "length": 100}]
    return json.dumps({"packs": [{"id": pack_id, "blobs": blobs}]}).encode()


def test_packs_added_to_the_index_are_known_as_they_come():
    index = MasterIndex()
    trees, data = pack_of("tree"), pack_of("data")
    index.add_pack(*trees)
    index.add_pack(*data)
    repo = SimpleNamespace(index=index)
    holds_trees = TreePacks(repo)
    assert holds_trees(trees[0]) and not holds_trees(data[0])

    later = pack_of("tree")
    assert not holds_trees(later[0])
    index.add_pack(*later)  # saved by this process
    assert holds_trees(later[0])

    loaded = os.urandom(32).hex()
    index.add_index_bytes(None, index_text(loaded, "tree"))
    assert holds_trees(loaded) and not holds_trees(data[0])

    replaced = MasterIndex()  # a new index object with as many blobs
    other = pack_of("tree")
    for pack in (other, *[pack_of("data") for _ in range(3)]):
        replaced.add_pack(*pack)
    assert len(replaced) == len(index)
    repo.index = replaced
    assert holds_trees(other[0])


def test_every_addition_changes_the_index_even_a_failed_one():
    index = MasterIndex()
    seen = index.changes
    index.add_pack(*pack_of("data"))
    assert index.changes > seen
    seen = index.changes
    index.add_index_bytes(None, index_text(os.urandom(32).hex(), "tree"))
    assert index.changes > seen
    seen = index.changes
    with pytest.raises(IntegrityError):
        index.add_index_bytes(None, b'{"packs": [{"id": "%s", "blobs": [{"id": 1}]}]}' % os.urandom(32).hex().encode())
    assert index.changes > seen
