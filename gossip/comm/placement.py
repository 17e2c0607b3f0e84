"""Placement of ``n`` nodes on ``P`` processes as contiguous blocks.

Rank ``r`` hosts nodes ``block(r) = range(start_r, start_r + b_r)``; the first ``n mod P``
ranks host one node more than the others, so blocks differ in size by at most one.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np

from gossip.errors import ConfigError

__all__ = ["Placement"]


@dataclass(frozen=True)
class Placement:
    """Contiguous, balanced blocks of ``n`` nodes over ``size`` processes.

    Examples
    --------
    >>> p = Placement(10, 4)
    >>> [list(p.block(r)) for r in range(4)]
    [[0, 1, 2], [3, 4, 5], [6, 7], [8, 9]]
    >>> p.owner(7)
    2
    """

    n: int
    size: int

    def __post_init__(self) -> None:
        if self.size < 1:
            raise ConfigError(f"need at least one process, got {self.size}")
        if self.n < self.size:
            raise ConfigError(
                f"more processes than nodes: {self.size} ranks for nodes={self.n}; "
                f"use at most {self.n} ranks or more nodes"
            )

    @cached_property
    def starts(self) -> np.ndarray:
        """``starts[r]`` is the first node of rank ``r``; ``starts[size] == n`` (computed once,
        read-only: communicators ask for it on every exchange)."""
        base, extra = divmod(self.n, self.size)
        sizes = np.full(self.size, base, dtype=np.int64)
        sizes[:extra] += 1
        starts = np.concatenate([[0], np.cumsum(sizes)])
        starts.flags.writeable = False
        return starts

    def block(self, rank: int) -> range:
        """The nodes hosted by ``rank``."""
        s = self.starts
        return range(int(s[rank]), int(s[rank + 1]))

    def owner(self, node: int) -> int:
        """The rank hosting ``node``."""
        return int(np.searchsorted(self.starts, node, side="right") - 1)

    def owners(self, nodes: np.ndarray) -> np.ndarray:
        """Vectorised :meth:`owner`."""
        return np.searchsorted(self.starts, np.asarray(nodes), side="right") - 1

    def describe(self) -> list[dict]:
        """One entry per rank: ``{"rank", "first", "last", "count"}`` (for summaries)."""
        return [
            {"rank": r, "first": b.start, "last": b.stop - 1, "count": len(b)}
            for r in range(self.size)
            for b in [self.block(r)]
        ]
