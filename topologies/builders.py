"""Graph builders: one short function per topology family.

Every builder returns a :class:`networkx.Graph` (:func:`exponential` a
:class:`networkx.DiGraph`) whose nodes are the integers ``0..n-1``, and validates its
arguments at the door with a :class:`~topologies.errors.TopologyError` that names the bad
value. Random families take an integer ``seed`` and are reproducible from it.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import networkx as nx
import numpy as np

from topologies.errors import TopologyError

__all__ = [
    "ring",
    "chain",
    "star",
    "complete",
    "torus",
    "grid",
    "hypercube",
    "exponential",
    "binary_tree",
    "BINARY_LAYOUTS",
    "erdos_renyi",
    "random_regular",
    "small_world",
    "MAX_DRAWS",
]

#: How many seeds (``seed, seed + 1, ...``) random builders try before giving up on
#: drawing a connected graph.
MAX_DRAWS = 100


def _check_int(value: object, what: str, family: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TopologyError(f"{family} needs an integer {what}, got {what}={value!r}")
    return int(value)


def _check_n(n: object, minimum: int, family: str) -> int:
    n = _check_int(n, "n", family)
    if n < minimum:
        raise TopologyError(f"{family} needs n >= {minimum}, got n={n}")
    return n


def _empty(n: int, name: str, directed: bool = False) -> nx.Graph:
    graph = nx.DiGraph() if directed else nx.Graph()
    graph.add_nodes_from(range(n))
    graph.graph["name"] = name
    return graph


def ring(n: int) -> nx.Graph:
    """Cycle ``0 - 1 - ... - (n-1) - 0``.

    Parameters
    ----------
    n : int
        Number of nodes, at least 3.

    Examples
    --------
    >>> sorted(ring(4).edges())
    [(0, 1), (0, 3), (1, 2), (2, 3)]
    """
    n = _check_n(n, 3, "ring")
    graph = _empty(n, "ring")
    graph.add_edges_from((i, (i + 1) % n) for i in range(n))
    return graph


def chain(n: int) -> nx.Graph:
    """Path ``0 - 1 - ... - (n-1)``.

    Parameters
    ----------
    n : int
        Number of nodes, at least 2.

    Examples
    --------
    >>> sorted(chain(3).edges())
    [(0, 1), (1, 2)]
    """
    n = _check_n(n, 2, "chain")
    graph = _empty(n, "chain")
    graph.add_edges_from((i, i + 1) for i in range(n - 1))
    return graph


def star(n: int) -> nx.Graph:
    """Star with hub 0 and leaves ``1..n-1`` (``n`` nodes in all).

    Parameters
    ----------
    n : int
        Number of nodes, at least 2.

    Examples
    --------
    >>> dict(star(4).degree())
    {0: 3, 1: 1, 2: 1, 3: 1}
    """
    n = _check_n(n, 2, "star")
    graph = _empty(n, "star")
    graph.add_edges_from((0, i) for i in range(1, n))
    return graph


def complete(n: int) -> nx.Graph:
    """Complete graph: every pair of nodes is linked.

    Parameters
    ----------
    n : int
        Number of nodes, at least 2.

    Examples
    --------
    >>> complete(5).number_of_edges()
    10
    """
    n = _check_n(n, 2, "complete")
    graph = _empty(n, "complete")
    graph.add_edges_from((i, j) for i in range(n) for j in range(i + 1, n))
    return graph


def _shape(n: object, shape: object, family: str) -> tuple[int, int]:
    n = _check_n(n, 2, family)
    if shape is None:
        side = math.isqrt(n)
        if side * side != n:
            raise TopologyError(
                f"{family} needs n to be a perfect square or an explicit "
                f"shape=(rows, cols), got n={n}"
            )
        return side, side
    if (
        not isinstance(shape, tuple | list)
        or len(shape) != 2
        or any(isinstance(s, bool) or not isinstance(s, (int, np.integer)) for s in shape)
        or any(s < 1 for s in shape)
    ):
        raise TopologyError(
            f"{family} needs shape=(rows, cols) with positive integers, got shape={shape!r}"
        )
    rows, cols = int(shape[0]), int(shape[1])
    if rows * cols != n:
        raise TopologyError(
            f"{family} needs rows * cols == n, got shape={(rows, cols)} "
            f"({rows * cols} nodes) for n={n}"
        )
    return rows, cols


def _lattice(n: int, shape: tuple[int, int] | None, periodic: bool, name: str) -> nx.Graph:
    rows, cols = _shape(n, shape, name)
    graph = _empty(rows * cols, name)
    graph.graph["shape"] = (rows, cols)
    for r in range(rows):
        for c in range(cols):
            i = r * cols + c
            if c + 1 < cols or (periodic and cols > 1):
                graph.add_edge(i, r * cols + (c + 1) % cols)
            if r + 1 < rows or (periodic and rows > 1):
                graph.add_edge(i, ((r + 1) % rows) * cols + c)
    graph.remove_edges_from(list(nx.selfloop_edges(graph)))
    return graph


def torus(n: int, shape: tuple[int, int] | None = None) -> nx.Graph:
    """Two-dimensional torus (grid with wrap-around); node ``r * cols + c`` is cell (r, c).

    Parameters
    ----------
    n : int
        Number of nodes: a perfect square unless ``shape`` is given.
    shape : tuple of int, optional
        ``(rows, cols)`` with ``rows * cols == n``.

    Examples
    --------
    >>> g = torus(9)
    >>> sorted(d for _, d in g.degree()) == [4] * 9
    True
    >>> torus(6, shape=(2, 3)).graph["shape"]
    (2, 3)
    """
    return _lattice(n, shape, True, "torus")


def grid(n: int, shape: tuple[int, int] | None = None) -> nx.Graph:
    """Two-dimensional grid (no wrap-around); node ``r * cols + c`` is cell (r, c).

    Parameters
    ----------
    n : int
        Number of nodes: a perfect square unless ``shape`` is given.
    shape : tuple of int, optional
        ``(rows, cols)`` with ``rows * cols == n``.

    Examples
    --------
    >>> grid(4).number_of_edges()
    4
    """
    return _lattice(n, shape, False, "grid")


def hypercube(n: int) -> nx.Graph:
    """Hypercube: nodes ``i`` and ``i ^ 2**b`` are linked, for every bit ``b``.

    Parameters
    ----------
    n : int
        Number of nodes, a power of two, at least 2.

    Examples
    --------
    >>> sorted(hypercube(4).edges())
    [(0, 1), (0, 2), (1, 3), (2, 3)]
    """
    n = _check_n(n, 2, "hypercube")
    if n & (n - 1):
        raise TopologyError(f"hypercube needs n to be a power of two, got n={n}")
    graph = _empty(n, "hypercube")
    bits = n.bit_length() - 1
    graph.add_edges_from((i, i ^ (1 << b)) for i in range(n) for b in range(bits))
    return graph


def exponential(n: int) -> nx.DiGraph:
    """Static exponential graph: edges ``i -> (i + 2**j) mod n`` for every ``2**j < n``.

    A directed graph in which every node sends to ``ceil(log2 n)`` peers; with the
    ``in_uniform`` mixing rule it is doubly stochastic (Ying et al., 2021, "Exponential
    graph is provably efficient for decentralized deep training").

    Parameters
    ----------
    n : int
        Number of nodes, at least 2.

    Examples
    --------
    >>> sorted(exponential(4).successors(0))
    [1, 2]
    """
    n = _check_n(n, 2, "exponential")
    graph = _empty(n, "exponential", directed=True)
    hops = [1 << j for j in range((n - 1).bit_length())]
    graph.add_edges_from((i, (i + h) % n) for i in range(n) for h in hops)
    return graph


#: Node orders of :func:`binary_tree`.
BINARY_LAYOUTS = ("heap", "relaysum")


def binary_tree(n: int, layout: str = "heap") -> nx.Graph:
    """Binary tree on ``0..n-1``, root 0, in one of two node orders (``layout``).

    - ``heap``: node ``i >= 1`` has parent ``(i - 1) // 2`` (children ``2i+1``, ``2i+2``).
    - ``relaysum``: node ``i >= 1`` has parent ``i // 2``, the ``BinaryTreeTopology`` of
      the RelaySum authors' code (epfml/relaysgd, ``topologies.py``; Vogels et al. 2021):
      the heap on ``1..n-1`` rooted at 1, with node 0 hanging from 1 as a third neighbour.

    At ``n = 2^k`` the ``relaysum`` tree is the perfect tree on ``2^k - 1`` nodes plus one leaf
    at the root, diameter ``2k - 2``, where ``heap`` hangs the extra node at depth ``k``,
    diameter ``2k - 1`` (6 vs 7 at ``n = 16``); both have maximum degree 3 (``n >= 5``).

    Parameters
    ----------
    n : int
        Number of nodes, at least 2.
    layout : str
        ``heap`` or ``relaysum``.

    Examples
    --------
    >>> sorted(binary_tree(5).edges())
    [(0, 1), (0, 2), (1, 3), (1, 4)]
    >>> sorted(binary_tree(5, layout="relaysum").edges())
    [(0, 1), (1, 2), (1, 3), (2, 4)]
    """
    n = _check_n(n, 2, "binary_tree")
    if layout not in BINARY_LAYOUTS:
        raise TopologyError(f"binary_tree layout must be one of {list(BINARY_LAYOUTS)}, "
                            f"got layout={layout!r}")
    graph = _empty(n, "binary_tree")
    graph.graph.update(root=0, layout=layout)
    shift = 1 if layout == "heap" else 0
    graph.add_edges_from(((i - shift) // 2, i) for i in range(1, n))
    return graph


def _check_seed(seed: object, family: str) -> int:
    return _check_int(seed, "seed", family)


def _first_connected(
    draw: Callable[[int], nx.Graph], seed: int, family: str, detail: str
) -> nx.Graph:
    for attempt in range(MAX_DRAWS):
        graph = draw(seed + attempt)
        if nx.is_connected(graph):
            graph.graph["seed"] = seed + attempt
            return graph
    raise TopologyError(
        f"{family} drew no connected graph with {detail} in {MAX_DRAWS} tries "
        f"(seeds {seed}..{seed + MAX_DRAWS - 1}); use a denser setting"
    )


def default_p(n: int) -> float:
    """Default edge probability of :func:`erdos_renyi`: ``min(1, 2 ln(n) / n)``."""
    return min(1.0, 2.0 * math.log(n) / n)


def check_p(p: object, n: int, family: str) -> float:
    """Return ``p`` as a float, or the default for ``None``; raise unless ``0 < p <= 1``."""
    if p is None:
        return default_p(n)
    if isinstance(p, bool) or not isinstance(p, (int, float, np.floating)) or not 0 < p <= 1:
        raise TopologyError(f"{family} needs an edge probability 0 < p <= 1, got p={p!r}")
    return float(p)


def check_degree(n: int, degree: object, family: str) -> int:
    """Return ``degree`` as an int; raise unless ``1 <= degree < n`` and ``n * degree`` even."""
    degree = _check_int(degree, "degree", family)
    if not 1 <= degree < n:
        raise TopologyError(f"{family} needs 1 <= degree < n={n}, got degree={degree}")
    if (n * degree) % 2:
        raise TopologyError(f"{family} needs n * degree to be even, got n={n}, degree={degree}")
    return degree


def erdos_renyi(n: int, p: float | None = None, seed: int = 0) -> nx.Graph:
    """Connected Erdős–Rényi graph G(n, p).

    Draws with seeds ``seed, seed + 1, ...`` until the graph is connected (at most
    :data:`MAX_DRAWS` tries); the seed that worked is stored in ``graph.graph["seed"]``.

    Parameters
    ----------
    n : int
        Number of nodes, at least 2.
    p : float, optional
        Edge probability in (0, 1]; default ``min(1, 2 ln(n) / n)`` (twice the
        connectivity threshold).
    seed : int
        First seed to try.

    Examples
    --------
    >>> g = erdos_renyi(20, seed=1)
    >>> nx.is_connected(g), g.number_of_nodes()
    (True, 20)
    """
    n = _check_n(n, 2, "erdos_renyi")
    p = check_p(p, n, "erdos_renyi")
    seed = _check_seed(seed, "erdos_renyi")

    def draw(s: int) -> nx.Graph:
        return nx.gnp_random_graph(n, p, seed=s)

    graph = _first_connected(draw, seed, "erdos_renyi", f"n={n}, p={p:.4g}")
    graph.graph["name"] = "erdos_renyi"
    return graph


def random_regular(n: int, degree: int = 4, seed: int = 0) -> nx.Graph:
    """Connected random ``degree``-regular graph (an expander with high probability).

    Parameters
    ----------
    n : int
        Number of nodes, at least 2.
    degree : int
        Degree of every node, ``1 <= degree < n`` with ``n * degree`` even.
    seed : int
        First seed to try (redrawn with the next seeds until connected).

    Examples
    --------
    >>> g = random_regular(10, degree=3)
    >>> {d for _, d in g.degree()}
    {3}
    """
    n = _check_n(n, 2, "random_regular")
    degree = check_degree(n, degree, "random_regular")
    seed = _check_seed(seed, "random_regular")

    def draw(s: int) -> nx.Graph:
        return nx.random_regular_graph(degree, n, seed=s)

    graph = _first_connected(draw, seed, "random_regular", f"n={n}, degree={degree}")
    graph.graph["name"] = "random_regular"
    return graph


def small_world(n: int, k: int = 4, p: float = 0.1, seed: int = 0) -> nx.Graph:
    """Connected Watts–Strogatz small-world graph.

    A ring where every node links to its ``k`` nearest neighbours, each edge rewired
    with probability ``p`` (redrawn with the next seeds until connected).

    Parameters
    ----------
    n : int
        Number of nodes, at least 3.
    k : int
        Neighbours in the starting ring lattice, ``2 <= k < n``.
    p : float
        Rewiring probability in [0, 1].
    seed : int
        First seed to try.

    Examples
    --------
    >>> small_world(10, k=2, p=0.0).number_of_edges()
    10
    """
    n = _check_n(n, 3, "small_world")
    k = _check_int(k, "k", "small_world")
    if not 2 <= k < n:
        raise TopologyError(f"small_world needs 2 <= k < n={n}, got k={k}")
    if isinstance(p, bool) or not isinstance(p, (int, float, np.floating)) or not 0 <= p <= 1:
        raise TopologyError(f"small_world needs a rewiring probability 0 <= p <= 1, got p={p!r}")
    seed = _check_seed(seed, "small_world")

    def draw(s: int) -> nx.Graph:
        return nx.watts_strogatz_graph(n, k, p, seed=s)

    graph = _first_connected(draw, seed, "small_world", f"n={n}, k={k}, p={p}")
    graph.graph["name"] = "small_world"
    return graph
