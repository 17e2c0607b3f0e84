"""Time-varying mixing: ``W(t)`` for every round ``t``, the same on every rank.

Every schedule computes ``matrix(t)`` from its seed and ``t`` alone (the round's random
generator is ``numpy.random.default_rng([seed, t])``), so MPI ranks agree on ``W(t)``
without talking and the order of calls does not matter.

``matrix(t)`` is read-only (its ``data``, ``indices`` and ``indptr`` arrays are not writeable),
and a schedule whose rounds repeat a matrix hands out the same object each time (``Static``
every round, ``Cycle`` every ``len(graphs)`` rounds, ``OnePeerExponential`` every ``tau``
rounds). Consumers may therefore cache what they derive from a ``W(t)`` under the object itself
(``gossip.comm`` caches its mixing operators and MPI share plans so, holding ``W`` in the
entry): a static run builds them once. Copy the matrix (``W.copy()``) to change it.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence

import networkx as nx
import numpy as np
import scipy.sparse as sp

from topologies.builders import check_degree, check_p
from topologies.errors import TopologyError
from topologies.gnp import gnp_graph, gnp_pairs
from topologies.mixing import edge_mixing_matrix, mixing_matrix

__all__ = [
    "Schedule",
    "Static",
    "OnePeerExponential",
    "RandomMatching",
    "RandomGraph",
    "Cycle",
    "Churn",
    "make_schedule",
    "schedule_names",
]


def _rng(seed: int, t: int) -> np.random.Generator:
    return np.random.default_rng([seed, t])


def _check_n(n: object, name: str) -> int:
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 2:
        raise TopologyError(f"schedule {name!r} needs an integer n >= 2, got n={n!r}")
    return int(n)


def _read_only(W: sp.csr_array) -> sp.csr_array:
    """``W`` with its ``data``, ``indices`` and ``indptr`` made non-writeable (in place)."""
    for a in (W.data, W.indices, W.indptr):
        a.flags.writeable = False
    return W


def _pairs_matrix(n: int, pairs: np.ndarray) -> sp.csr_array:
    """Matched pairs average 1/2-1/2; unmatched nodes keep their value."""
    pairs = np.asarray(pairs, dtype=np.int64).reshape(-1, 2)
    diagonal = np.ones(n)
    diagonal[pairs.ravel()] = 0.5
    rows = np.concatenate([np.arange(n), pairs[:, 0], pairs[:, 1]])
    cols = np.concatenate([np.arange(n), pairs[:, 1], pairs[:, 0]])
    data = np.concatenate([diagonal, np.full(2 * len(pairs), 0.5)])
    W = sp.csr_array((data, (rows, cols)), shape=(n, n))
    W.sort_indices()
    return W


class Schedule(ABC):
    """Base class: a mixing matrix ``W(t)`` per round ``t = 0, 1, ...``.

    Attributes
    ----------
    n : int
        Number of nodes.
    name : str
        Schedule name (as in :func:`schedule_names`).
    is_static : bool
        True when ``W(t)`` is the same for every ``t``.
    """

    name = "schedule"
    is_static = False

    def __init__(self, n: int, seed: int = 0) -> None:
        self.n = n
        self.seed = int(seed)

    def matrix(self, t: int) -> sp.csr_array:
        """Mixing matrix of round ``t`` (``n x n`` csr_array, float64, read-only; possibly the
        same object as an earlier round's)."""
        if isinstance(t, bool) or not isinstance(t, (int, np.integer)) or t < 0:
            raise TopologyError(f"round t must be an integer >= 0, got t={t!r}")
        return _read_only(self._matrix(int(t)))

    @abstractmethod
    def _matrix(self, t: int) -> sp.csr_array:
        """``W(t)`` for a validated round ``t``."""

    def graph(self, t: int) -> nx.DiGraph:
        """Communication graph of round ``t``: edge ``j -> i`` when ``W(t)[i, j] != 0``."""
        W = sp.coo_array(self.matrix(t))
        keep = (W.row != W.col) & (W.data != 0)
        graph = nx.DiGraph()
        graph.add_nodes_from(range(self.n))
        graph.add_edges_from(zip(W.col[keep].tolist(), W.row[keep].tolist(), strict=True))
        return graph

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, n={self.n}, seed={self.seed})"


class Static(Schedule):
    """The same ``mixing_matrix(graph, rule)`` every round (one read-only object)."""

    name = "static"
    is_static = True

    def __init__(self, graph: nx.Graph, rule: str = "metropolis") -> None:
        super().__init__(graph.number_of_nodes())
        self.rule = rule
        self._W = _read_only(mixing_matrix(graph, rule))

    def _matrix(self, t: int) -> sp.csr_array:
        return self._W


class OnePeerExponential(Schedule):
    """One-peer exponential graph (Ying et al., 2021).

    In round ``t`` node ``i`` averages with node ``(i + 2**k) mod n``, where
    ``k = t mod tau`` and ``tau = ceil(log2 n)``:
    ``W(t) = (I + P**(2**k)) / 2`` with ``P`` the cyclic shift. Every ``W(t)`` is doubly
    stochastic (not symmetric). When ``n`` is a power of two the product of any ``tau``
    consecutive rounds is exactly ``11^T / n``; for other ``n`` it is only close. The ``tau``
    matrices are built once each, on first use.
    """

    name = "one_peer_exponential"

    def __init__(self, n: int) -> None:
        super().__init__(_check_n(n, self.name))
        self.tau = max(1, (self.n - 1).bit_length())
        self._Ws: dict[int, sp.csr_array] = {}

    def _matrix(self, t: int) -> sp.csr_array:
        k = t % self.tau
        if k not in self._Ws:
            n = self.n
            rows = np.concatenate([np.arange(n), np.arange(n)])
            cols = np.concatenate([np.arange(n), (np.arange(n) + (1 << k)) % n])
            W = sp.csr_array((np.full(2 * n, 0.5), (rows, cols)), shape=(n, n))
            W.sort_indices()
            self._Ws[k] = _read_only(W)
        return self._Ws[k]


class RandomMatching(Schedule):
    """A fresh random matching every round; matched pairs average 1/2-1/2.

    Without ``graph``: a uniformly random perfect matching of all nodes (one node idles
    when ``n`` is odd). With ``graph``: a random maximal matching of its edges (edges
    taken greedily in a random order).
    """

    name = "random_matching"

    def __init__(self, n: int, graph: nx.Graph | None = None, seed: int = 0) -> None:
        super().__init__(_check_n(n, self.name), seed)
        self._edges = None
        if graph is not None:
            if set(graph.nodes()) != set(range(self.n)):
                raise TopologyError(
                    f"random_matching needs a graph on nodes 0..{self.n - 1}, "
                    f"got {graph.number_of_nodes()} nodes"
                )
            pairs = [(min(u, v), max(u, v)) for u, v in graph.edges() if u != v]
            self._edges = np.array(sorted(set(pairs)), dtype=np.int64).reshape(-1, 2)

    def matching(self, t: int) -> np.ndarray:
        """The matched pairs of round ``t``, an ``(m, 2)`` int array."""
        rng = _rng(self.seed, t)
        if self._edges is None:
            order = rng.permutation(self.n)
            half = self.n // 2
            return np.stack([order[:half], order[half : 2 * half]], axis=1)
        matched = np.zeros(self.n, dtype=bool)
        chosen = []
        for u, v in self._edges[rng.permutation(len(self._edges))]:
            if not matched[u] and not matched[v]:
                matched[u] = matched[v] = True
                chosen.append((u, v))
        return np.array(chosen, dtype=np.int64).reshape(-1, 2)

    def _matrix(self, t: int) -> sp.csr_array:
        return _pairs_matrix(self.n, self.matching(t))


class RandomGraph(Schedule):
    """A fresh random graph every round (not necessarily connected), mixed with ``rule``.

    ``kind="erdos_renyi"`` draws G(n, p) (default ``p = min(1, 2 ln(n) / n)``);
    ``kind="random_regular"`` draws a random ``degree``-regular graph.
    """

    name = "random_graph"
    _KINDS = ("erdos_renyi", "random_regular")

    def __init__(
        self,
        n: int,
        kind: str = "erdos_renyi",
        p: float | None = None,
        degree: int = 4,
        rule: str = "metropolis",
        seed: int = 0,
    ) -> None:
        super().__init__(_check_n(n, self.name), seed)
        if kind not in self._KINDS:
            raise TopologyError(
                f"random_graph has no kind {kind!r}; choose one of {list(self._KINDS)}"
            )
        self.kind = kind
        self.rule = rule
        if kind == "erdos_renyi":
            self.p = check_p(p, self.n, "random_graph")
        else:
            self.degree = check_degree(self.n, degree, "random_graph")
        mixing_matrix(nx.empty_graph(2), rule)  # fail early on a bad rule

    def _seed(self, t: int) -> int:
        return int(_rng(self.seed, t).integers(2**32))

    def draw(self, t: int) -> nx.Graph:
        """The graph of round ``t`` (``erdos_renyi``: ``networkx.gnp_random_graph``'s graph with
        the round's seed, drawn by :mod:`topologies.gnp`)."""
        if self.kind == "erdos_renyi":
            return gnp_graph(self.n, self.p, self._seed(t))
        return nx.random_regular_graph(self.degree, self.n, seed=self._seed(t))

    def _matrix(self, t: int) -> sp.csr_array:
        if self.kind == "erdos_renyi":  # the matrix of draw(t)'s edges, without the graph
            pairs = gnp_pairs(self.n, self.p, self._seed(t))
            return edge_mixing_matrix(self.n, pairs[:, 0], pairs[:, 1], self.rule)
        return mixing_matrix(self.draw(t), self.rule)


class Cycle(Schedule):
    """Go through ``graphs`` in order, one per round: ``W(t) = W_{t mod len(graphs)}``."""

    name = "cycle"

    def __init__(self, graphs: Sequence[nx.Graph], rule: str = "metropolis") -> None:
        graphs = list(graphs) if graphs is not None else []
        if not graphs:
            raise TopologyError("schedule 'cycle' needs graphs=[at least one graph]")
        sizes = sorted({g.number_of_nodes() for g in graphs})
        if len(sizes) != 1:
            raise TopologyError(f"schedule 'cycle' needs graphs of one size, got sizes {sizes}")
        super().__init__(sizes[0])
        self.rule = rule
        self._Ws = [_read_only(mixing_matrix(g, rule)) for g in graphs]
        self.is_static = len(self._Ws) == 1

    def _matrix(self, t: int) -> sp.csr_array:
        return self._Ws[t % len(self._Ws)]


class Churn(Schedule):
    """Node churn on a base graph: each round ``round(offline * n)`` random nodes are off.

    Offline nodes lose their edges and keep their own value (``W[i, i] = 1``); the
    remaining graph is mixed again with ``rule`` (so Metropolis weights use the degrees
    that remain).
    """

    name = "churn"

    def __init__(
        self, graph: nx.Graph, offline: float = 0.1, rule: str = "metropolis", seed: int = 0
    ) -> None:
        super().__init__(graph.number_of_nodes(), seed)
        if (
            isinstance(offline, bool)
            or not isinstance(offline, (int, float, np.floating))
            or not 0 <= offline < 1
        ):
            raise TopologyError(f"churn needs 0 <= offline < 1, got offline={offline!r}")
        self.offline = float(offline)
        self.rule = rule
        self._graph = graph.copy()
        mixing_matrix(self._graph, rule)  # fail early on a bad rule or labels

    def offline_nodes(self, t: int) -> np.ndarray:
        """Sorted ids of the nodes offline in round ``t``."""
        count = int(round(self.offline * self.n))
        return np.sort(_rng(self.seed, t).choice(self.n, size=count, replace=False))

    def _matrix(self, t: int) -> sp.csr_array:
        off = set(self.offline_nodes(t).tolist())
        remaining = self._graph.copy()
        remaining.remove_edges_from(
            [(u, v) for u, v in self._graph.edges() if u in off or v in off]
        )
        return mixing_matrix(remaining, self.rule)


_NAMES = ("static", "one_peer_exponential", "random_matching", "random_graph", "cycle", "churn")
_OPTIONS = {
    "static": (),
    "one_peer_exponential": (),
    "random_matching": (),
    "random_graph": ("kind", "p", "degree"),
    "cycle": ("graphs",),
    "churn": ("offline",),
}
_USES_GRAPH = {"static": True, "churn": True, "random_matching": None}


def schedule_names() -> list[str]:
    """Names accepted by :func:`make_schedule`."""
    return list(_NAMES)


def make_schedule(
    name: str,
    n: int | None,
    *,
    graph: nx.Graph | None = None,
    rule: str = "metropolis",
    seed: int = 0,
    **options: object,
) -> Schedule:
    """Build the schedule ``name`` on ``n`` nodes.

    Parameters
    ----------
    name : str
        One of :func:`schedule_names`.
    n : int or None
        Number of nodes; may be ``None`` when ``graph`` (or ``graphs``) fixes it.
    graph : networkx.Graph, optional
        Needed by ``static`` and ``churn``; optional for ``random_matching`` (match
        along its edges); refused by the others, which fix their own graphs.
    rule : str
        Mixing rule for ``static``, ``random_graph``, ``cycle`` and ``churn``.
        ``one_peer_exponential`` and ``random_matching`` always average pairs 1/2-1/2.
    seed : int
        Seed of the random schedules.
    **options
        ``kind``, ``p``, ``degree`` for ``random_graph``; ``graphs`` for ``cycle``;
        ``offline`` for ``churn``.

    Examples
    --------
    >>> s = make_schedule("one_peer_exponential", 8)
    >>> s.matrix(1).toarray()[0, [0, 2]]
    array([0.5, 0.5])
    """
    if name not in _NAMES:
        raise TopologyError(f"unknown schedule {name!r}; choose one of {schedule_names()}")
    for option in options:
        if option not in _OPTIONS[name]:
            allowed = ", ".join(_OPTIONS[name]) or "none"
            raise TopologyError(
                f"schedule {name!r} has no option {option!r}; accepted options: {allowed}"
            )
    uses_graph = _USES_GRAPH.get(name, False)
    if uses_graph and graph is None:
        raise TopologyError(f"schedule {name!r} needs graph=<networkx graph>")
    if uses_graph is False and graph is not None:
        raise TopologyError(
            f"schedule {name!r} fixes its own communication graphs; do not pass graph="
        )
    if graph is not None:
        size = graph.number_of_nodes()
        if n is not None and n != size:
            raise TopologyError(f"schedule {name!r} got n={n} but its graph has {size} nodes")
        n = size
    if name == "static":
        return Static(graph, rule)
    if name == "churn":
        return Churn(graph, offline=options.get("offline", 0.1), rule=rule, seed=seed)
    if name == "cycle":
        schedule = Cycle(options.get("graphs"), rule)
        if n is not None and n != schedule.n:
            raise TopologyError(f"schedule 'cycle' got n={n} but its graphs have {schedule.n}")
        return schedule
    if n is None:
        raise TopologyError(f"schedule {name!r} needs the number of nodes n, got n=None")
    if name == "one_peer_exponential":
        return OnePeerExponential(n)
    if name == "random_matching":
        return RandomMatching(n, graph=graph, seed=seed)
    return RandomGraph(n, rule=rule, seed=seed, **options)
