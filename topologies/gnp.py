"""G(n, p) drawn with NumPy, edge for edge the graph of ``networkx.gnp_random_graph``.

``networkx.gnp_random_graph(n, p, seed=s)`` (undirected, an integer ``s``) visits the pairs
``(i, j)``, ``i < j``, in the order of ``itertools.combinations(range(n), 2)`` and keeps a pair
when the next ``random.Random(s).random()`` is below ``p``: ``n (n - 1) / 2`` Python calls,
about 0.2 s at ``n = 512``, paid every round by the ``random_graph`` schedule. CPython's
``random()`` is MT19937 with ``(a * 2**26 + b) / 2**53``, ``a``, ``b`` the top 27 and 26 bits
of two 32-bit outputs, and NumPy's ``MT19937`` bit generator makes its doubles the same way,
so :func:`gnp_pairs` copies the state of ``random.Random(s)`` into it and draws the same
numbers a block at a time: the same pairs in the same order, so :func:`gnp_graph` inserts the
same edges in the same order (same adjacency order, hence the same mixing matrix to the last
bit). ``tests/topologies/test_gnp.py`` compares both with networkx.

>>> import networkx as nx
>>> list(gnp_graph(30, 0.2, 7).edges()) == list(nx.gnp_random_graph(30, 0.2, seed=7).edges())
True
"""

from __future__ import annotations

import random

import networkx as nx
import numpy as np

__all__ = ["gnp_graph", "gnp_pairs"]

#: Uniform draws per block (8 MB of doubles), so memory stays bounded at large ``n``.
BLOCK = 1 << 20


def _python_stream(seed: int) -> np.random.Generator:
    """A NumPy generator whose ``random()`` doubles are those of ``random.Random(seed)``."""
    _, state, _ = random.Random(seed).getstate()
    bits = np.random.MT19937()
    bits.state = {"bit_generator": "MT19937",
                  "state": {"key": np.array(state[:624], dtype=np.uint32), "pos": state[624]}}
    return np.random.Generator(bits)


def gnp_pairs(n: int, p: float, seed: int) -> np.ndarray:
    """The edges ``(i, j)``, ``i < j``, of ``networkx.gnp_random_graph(n, p, seed=seed)``, in
    its order, as an ``(m, 2)`` int64 array (``p >= 1``: all pairs; ``p <= 0``: none)."""
    total = n * (n - 1) // 2
    # row i's pairs start at flat index start[i] = i (n - 1) - i (i - 1) / 2
    rows = np.arange(n, dtype=np.int64)
    start = rows * (n - 1) - rows * (rows - 1) // 2
    if p >= 1 or p <= 0:
        kept = np.arange(total if p >= 1 else 0, dtype=np.int64)
    else:
        stream, parts = _python_stream(seed), []
        for offset in range(0, total, BLOCK):
            draws = stream.random(min(BLOCK, total - offset))
            parts.append(offset + np.flatnonzero(draws < p))
        kept = np.concatenate(parts) if parts else np.zeros(0, dtype=np.int64)
    i = np.searchsorted(start, kept, side="right") - 1
    return np.stack([i, i + 1 + kept - start[i]], axis=1)


def gnp_graph(n: int, p: float, seed: int) -> nx.Graph:
    """``networkx.gnp_random_graph(n, p, seed=seed)`` for an integer ``seed``: the same nodes,
    and the same edges added in the same order (see the module docstring)."""
    graph = nx.empty_graph(n)
    graph.add_edges_from(gnp_pairs(n, p, seed).tolist())
    return graph
