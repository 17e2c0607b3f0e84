"""Mixing (gossip) matrices of graphs, and their validation.

Convention: ``W[i, j]`` is the weight node ``i`` gives to node ``j``'s value, so one
gossip step is ``x_i <- sum_j W[i, j] x_j`` (``X <- W X``). In a
:class:`networkx.DiGraph` an edge ``j -> i`` means ``j`` sends to ``i``, so
``W[i, j] > 0``. Self-loops in the graph are ignored; the diagonal holds what is left
of each row.

Rules
-----
``metropolis``
    Metropolis–Hastings weights ``W[i, j] = 1 / (1 + max(d_i, d_j))`` on edges
    (Xiao & Boyd, 2004): symmetric and doubly stochastic on any undirected graph.
``uniform`` (alias ``max_degree``)
    ``W[i, j] = 1 / (1 + d_max)`` on edges: symmetric and doubly stochastic.
``lazy_metropolis``, ``lazy_uniform``
    The lazy versions ``(I + W) / 2``: all eigenvalues in [0, 1].
``in_uniform``
    For digraphs: row ``i`` averages itself and its in-neighbours,
    ``W[i, j] = 1 / (1 + indeg_i)``: row stochastic, and doubly stochastic on regular
    digraphs such as :func:`~topologies.builders.exponential`.
"""

from __future__ import annotations

import networkx as nx
import numpy as np
import scipy.sparse as sp

from topologies.errors import TopologyError

__all__ = ["mixing_matrix", "edge_mixing_matrix", "lazy", "rules", "check_mixing",
           "check_connected"]

_UNDIRECTED_RULES = ("metropolis", "uniform", "max_degree", "lazy_metropolis", "lazy_uniform")
_RULES = (*_UNDIRECTED_RULES, "in_uniform")


def rules() -> list[str]:
    """Names accepted by :func:`mixing_matrix`."""
    return list(_RULES)


def _edges(graph: nx.Graph) -> tuple[int, np.ndarray, np.ndarray]:
    """Number of nodes and the (sender, receiver) arrays of non-loop edges."""
    n = graph.number_of_nodes()
    if n == 0:
        raise TopologyError("the graph has no nodes")
    if set(graph.nodes()) != set(range(n)):
        bad = next(node for node in graph.nodes() if node not in range(n))
        raise TopologyError(
            f"graph nodes must be the integers 0..{n - 1}, found node {bad!r}; "
            "relabel with networkx.convert_node_labels_to_integers"
        )
    pairs = np.array([(u, v) for u, v in graph.edges() if u != v], dtype=np.int64)
    pairs = pairs.reshape(-1, 2)
    return n, pairs[:, 0], pairs[:, 1]


def lazy(W: sp.sparray | np.ndarray) -> sp.csr_array:
    """The lazy version ``(I + W) / 2`` of a mixing matrix.

    Examples
    --------
    >>> lazy(np.zeros((2, 2))).toarray()
    array([[0.5, 0. ],
           [0. , 0.5]])
    """
    W = sp.csr_array(W, dtype=np.float64)
    return sp.csr_array((sp.eye_array(W.shape[0], format="csr") + W) / 2)


def mixing_matrix(graph: nx.Graph, rule: str = "metropolis") -> sp.csr_array:
    """Mixing matrix of ``graph`` under ``rule``.

    Parameters
    ----------
    graph : networkx.Graph or networkx.DiGraph
        Nodes ``0..n-1``. Connectivity is not required (see :func:`check_connected`).
    rule : str
        One of :func:`rules`. Digraphs need ``in_uniform``.

    Returns
    -------
    scipy.sparse.csr_array
        ``n x n`` float64 matrix with ``x_i <- sum_j W[i, j] x_j``.

    Examples
    --------
    >>> from topologies.builders import ring
    >>> mixing_matrix(ring(3)).toarray() * 3
    array([[1., 1., 1.],
           [1., 1., 1.],
           [1., 1., 1.]])
    """
    if rule not in _RULES:
        raise TopologyError(f"unknown mixing rule {rule!r}; choose one of {rules()}")
    directed = graph.is_directed()
    if directed and rule != "in_uniform":
        raise TopologyError(
            f"mixing rule {rule!r} needs an undirected graph; for a directed graph "
            "use rule='in_uniform'"
        )
    n, senders, receivers = _edges(graph)
    return edge_mixing_matrix(n, senders, receivers, rule, directed=directed)


def edge_mixing_matrix(n: int, senders: np.ndarray, receivers: np.ndarray,
                       rule: str = "metropolis", *, directed: bool = False) -> sp.csr_array:
    """:func:`mixing_matrix` of the graph on nodes ``0..n-1`` whose non-loop edges are
    ``senders[k] -> receivers[k]`` (each undirected edge once unless ``directed``), without
    building the graph. In the order of ``graph.edges()`` it gives :func:`mixing_matrix`'s
    matrix to the last bit (the row sums add in that order).

    >>> edge_mixing_matrix(3, np.array([0, 1]), np.array([1, 2])).toarray() * 3
    array([[2., 1., 0.],
           [1., 1., 1.],
           [0., 1., 2.]])
    """
    if rule not in _RULES:
        raise TopologyError(f"unknown mixing rule {rule!r}; choose one of {rules()}")
    if not directed:
        senders, receivers = (
            np.concatenate([senders, receivers]),
            np.concatenate([receivers, senders]),
        )
    # Row i = receiver; degree counts distinct in-neighbours (undirected: neighbours).
    indeg = np.bincount(receivers, minlength=n).astype(np.float64)
    base = rule.removeprefix("lazy_")
    if base == "metropolis":
        weights = 1.0 / (1.0 + np.maximum(indeg[receivers], indeg[senders]))
    elif base in ("uniform", "max_degree"):
        weights = np.full(len(senders), 1.0 / (1.0 + (indeg.max() if n else 0.0)))
    else:  # in_uniform
        weights = 1.0 / (1.0 + indeg[receivers])
    off = sp.csr_array((weights, (receivers, senders)), shape=(n, n))
    diagonal = 1.0 - np.asarray(off.sum(axis=1)).ravel()
    W = sp.csr_array(off + sp.diags_array(diagonal, format="csr"))
    if rule.startswith("lazy_"):
        W = lazy(W)
    W.sort_indices()
    return W


def check_mixing(
    W: sp.sparray | sp.spmatrix | np.ndarray,
    *,
    symmetric: bool = True,
    doubly_stochastic: bool = True,
    atol: float = 1e-10,
) -> sp.csr_array:
    """Check that ``W`` is a valid mixing matrix; return it as a csr_array.

    Checks, in order: square, finite, no negative weight, every row sums to 1, every
    column sums to 1 (if ``doubly_stochastic``), ``W == W.T`` (if ``symmetric``).

    Raises
    ------
    TopologyError
        Naming the first problem found (the entry, row or column and its value).

    Examples
    --------
    >>> check_mixing(np.array([[0.5, 0.5], [0.5, 0.5]])).shape
    (2, 2)
    >>> check_mixing(np.array([[1.0, 0.1], [0.0, 1.0]]))
    Traceback (most recent call last):
    ...
    topologies.errors.TopologyError: row 0 of the mixing matrix sums to 1.1, not 1 (atol=1e-10)
    """
    M = sp.csr_array(W, dtype=np.float64)
    if M.ndim != 2 or M.shape[0] != M.shape[1]:
        raise TopologyError(f"a mixing matrix must be square, got shape {M.shape}")
    if not np.all(np.isfinite(M.data)):
        raise TopologyError("the mixing matrix holds NaN or infinite weights")
    if M.nnz and M.data.min() < -atol:
        k = int(np.argmin(M.data))
        i = int(np.searchsorted(M.indptr, k, side="right") - 1)
        j = int(M.indices[k])
        raise TopologyError(
            f"negative weight W[{i}, {j}] = {M.data[k]:.6g}; mixing weights must be >= 0"
        )
    rows = np.asarray(M.sum(axis=1)).ravel()
    bad = np.flatnonzero(np.abs(rows - 1.0) > atol)
    if bad.size:
        i = int(bad[0])
        raise TopologyError(
            f"row {i} of the mixing matrix sums to {rows[i]:.10g}, not 1 (atol={atol:g})"
        )
    if doubly_stochastic:
        cols = np.asarray(M.sum(axis=0)).ravel()
        bad = np.flatnonzero(np.abs(cols - 1.0) > atol)
        if bad.size:
            j = int(bad[0])
            raise TopologyError(
                f"column {j} of the mixing matrix sums to {cols[j]:.10g}, not 1 "
                f"(atol={atol:g}); it is not doubly stochastic"
            )
    if symmetric:
        diff = sp.csr_array(abs(M - M.T))
        if diff.nnz and diff.data.max() > atol:
            k = int(np.argmax(diff.data))
            i = int(np.searchsorted(diff.indptr, k, side="right") - 1)
            j = int(diff.indices[k])
            raise TopologyError(
                f"the mixing matrix is not symmetric: W[{i}, {j}] = {M[i, j]:.6g} but "
                f"W[{j}, {i}] = {M[j, i]:.6g}"
            )
    return M


def check_connected(graph: nx.Graph) -> None:
    """Raise :class:`TopologyError` unless ``graph`` is connected.

    Digraphs must be strongly connected (every node reaches every other), which is what
    gossip needs to reach consensus.

    Examples
    --------
    >>> check_connected(nx.Graph([(0, 1), (2, 3)]))  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    topologies.errors.TopologyError: the graph is disconnected: 2 components; ...
    """
    n = graph.number_of_nodes()
    if n == 0:
        raise TopologyError("the graph has no nodes")
    if graph.is_directed():
        parts = list(nx.strongly_connected_components(graph))
        kind = "not strongly connected"
    else:
        parts = list(nx.connected_components(graph))
        kind = "disconnected"
    if len(parts) == 1:
        return
    source = next(iter(graph.nodes()))
    reach = nx.descendants(graph, source) | {source}
    if len(reach) < n:
        target = next(node for node in graph.nodes() if node not in reach)
    else:  # a digraph where source reaches everyone: someone cannot reach source
        target = source
        reached_by = nx.ancestors(graph, source) | {source}
        source = next(node for node in graph.nodes() if node not in reached_by)
    raise TopologyError(
        f"the graph is {kind}: {len(parts)} components; node {source} cannot reach node {target}"
    )
