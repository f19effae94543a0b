"""The backup command runs its walk with fewer young collections and gives the collector its
thresholds back afterwards, also when the backup fails."""
import gc

import pytest

from restique.operations.collector import YOUNG_COLLECTION_THRESHOLD, fewer_collections


def test_threshold_raised_and_restored():
    before = gc.get_threshold()
    with fewer_collections():
        assert gc.get_threshold() == (max(before[0], YOUNG_COLLECTION_THRESHOLD), *before[1:])
    assert gc.get_threshold() == before
    with pytest.raises(KeyError):
        with fewer_collections():
            raise KeyError("the backup failed")
    assert gc.get_threshold() == before
    assert gc.isenabled()  # cycles are still collected
