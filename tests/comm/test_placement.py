"""Placement of n nodes on P ranks: contiguous, covering, balanced."""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from gossip.comm.placement import Placement
from gossip.errors import ConfigError


@given(st.integers(1, 300), st.integers(1, 64))
def test_blocks_are_contiguous_balanced_and_cover_every_node(n, size):
    if size > n:
        with pytest.raises(ConfigError, match=f"{size} ranks for nodes={n}"):
            Placement(n, size)
        return
    p = Placement(n, size)
    blocks = [p.block(r) for r in range(size)]
    assert [i for b in blocks for i in b] == list(range(n))
    sizes = [len(b) for b in blocks]
    assert max(sizes) - min(sizes) <= 1
    assert sizes == sorted(sizes, reverse=True)
    owners = p.owners(np.arange(n))
    for r, b in enumerate(blocks):
        assert all(p.owner(i) == r for i in b)
        assert (owners[b.start : b.stop] == r).all()


def test_uneven_example_and_description():
    p = Placement(10, 4)
    assert [len(p.block(r)) for r in range(4)] == [3, 3, 2, 2]
    assert p.describe()[2] == {"rank": 2, "first": 6, "last": 7, "count": 2}


def test_zero_processes_is_an_error():
    with pytest.raises(ConfigError, match="at least one process"):
        Placement(4, 0)
