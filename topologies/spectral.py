"""Spectral quantities of mixing matrices and schedules.

For a doubly stochastic ``W`` the consensus error contracts by
``rho = ||W - 11^T/n||_2`` per round; ``p = 1 - rho**2`` is the consensus rate of
Koloskova et al. (2020, "A unified theory of decentralized SGD with changing topology
and local updates", Assumption 4). For schedules the rate is measured on products of
``tau`` consecutive rounds.

Matrices with ``n <= 512`` are decomposed densely; larger ones use ARPACK
(:func:`scipy.sparse.linalg.eigsh`) on the deflated operator ``W - 11^T/n`` applied
matrix-free, so ``n = 4096`` sparse graphs take about a second.
"""

from __future__ import annotations

import math

import networkx as nx
import numpy as np
import scipy.sparse as sp
import scipy.sparse.csgraph as csgraph
import scipy.sparse.linalg as sla

from topologies.errors import TopologyError
from topologies.schedules import Schedule

__all__ = [
    "rho",
    "spectral_gap",
    "consensus_rate",
    "lambda_2",
    "mixing_time",
    "graph_stats",
    "summary",
    "effective_rate",
    "expected_rate",
    "averages_exactly",
    "DENSE_MAX",
]

#: Largest ``n`` decomposed densely.
DENSE_MAX = 512
_TOL = 1e-12


def _square(W: sp.sparray | sp.spmatrix | np.ndarray) -> sp.csr_array | np.ndarray:
    shape = W.shape
    if len(shape) != 2 or shape[0] != shape[1] or shape[0] == 0:
        raise TopologyError(f"a mixing matrix must be square and non-empty, got shape {shape}")
    if sp.issparse(W):
        return sp.csr_array(W, dtype=np.float64)
    return np.asarray(W, dtype=np.float64)


def _dense(W: sp.csr_array | np.ndarray) -> np.ndarray:
    return W.toarray() if sp.issparse(W) else W


def _is_symmetric(W: sp.csr_array | np.ndarray, atol: float = 1e-12) -> bool:
    if sp.issparse(W):
        diff = abs(W - W.T)
        return diff.nnz == 0 or float(diff.max()) <= atol
    return bool(np.allclose(W, W.T, rtol=0.0, atol=atol))


def _v0(n: int) -> np.ndarray:
    return np.random.default_rng(0).standard_normal(n)


def _largest_eig(op: sla.LinearOperator, which: str = "LM") -> float:
    n = op.shape[0]
    v0 = _v0(n)
    if np.linalg.norm(op.matvec(v0)) <= 1e-14 * np.linalg.norm(v0):
        return 0.0  # the operator is zero (up to round-off): ARPACK cannot start from it
    values = sla.eigsh(
        op, k=1, which=which, v0=v0, tol=_TOL, ncv=min(n, 64), return_eigenvectors=False
    )
    return float(values[0])


def _deflated(W: sp.csr_array | np.ndarray) -> sla.LinearOperator:
    """``W - 11^T/n`` without forming it (``11^T/n x`` is the mean of ``x``)."""
    n = W.shape[0]
    return sla.LinearOperator(
        (n, n),
        matvec=lambda x: W @ x - x.mean(axis=0),
        rmatvec=lambda x: W.T @ x - x.mean(axis=0),
        matmat=lambda X: W @ X - X.mean(axis=0, keepdims=True),
        dtype=np.float64,
    )


def rho(W: sp.sparray | sp.spmatrix | np.ndarray) -> float:
    """``||W - 11^T/n||_2``: the per-round contraction of the consensus error.

    For symmetric ``W`` it is the largest ``|eigenvalue|`` of ``W`` once the eigenvalue
    1 of the all-ones vector is removed; otherwise the largest singular value.

    Examples
    --------
    >>> from topologies.builders import ring
    >>> from topologies.mixing import mixing_matrix
    >>> round(rho(mixing_matrix(ring(4))), 12)  # 1/3 + 2/3 cos(2 pi / 4)
    0.333333333333
    """
    W = _square(W)
    n = W.shape[0]
    if n == 1:
        return 0.0
    symmetric = _is_symmetric(W)
    if n <= DENSE_MAX:
        M = _dense(W) - 1.0 / n
        if symmetric:
            return float(np.abs(np.linalg.eigvalsh(M)).max())
        return float(np.linalg.norm(M, 2))
    op = _deflated(W)
    if symmetric:
        return abs(_largest_eig(op))
    gram = sla.LinearOperator((n, n), matvec=lambda x: op.rmatvec(op.matvec(x)), dtype=float)
    return math.sqrt(max(_largest_eig(gram), 0.0))


def spectral_gap(W: sp.sparray | sp.spmatrix | np.ndarray) -> float:
    """``1 - rho(W)``.

    Examples
    --------
    >>> from topologies.builders import complete
    >>> from topologies.mixing import mixing_matrix
    >>> round(spectral_gap(mixing_matrix(complete(5), "uniform")), 12)
    1.0
    """
    return 1.0 - rho(W)


def consensus_rate(W: sp.sparray | sp.spmatrix | np.ndarray) -> float:
    """``p = 1 - rho(W)**2``, the consensus rate of Koloskova et al. (2020).

    ``||W X - Xbar||_F^2 <= (1 - p) ||X - Xbar||_F^2`` for every ``X``.
    """
    return 1.0 - rho(W) ** 2


def lambda_2(W: sp.sparray | sp.spmatrix | np.ndarray) -> float:
    """Second largest eigenvalue of a symmetric ``W`` (signed, not in absolute value).

    Examples
    --------
    >>> from topologies.builders import star
    >>> from topologies.mixing import mixing_matrix
    >>> round(lambda_2(mixing_matrix(star(5))), 12)  # leaves keep 1 - 1/n
    0.8
    """
    W = _square(W)
    n = W.shape[0]
    if n < 2:
        raise TopologyError(f"lambda_2 needs n >= 2, got n={n}")
    if not _is_symmetric(W):
        raise TopologyError("lambda_2 needs a symmetric mixing matrix; use rho for others")
    if n <= DENSE_MAX:
        return float(np.linalg.eigvalsh(_dense(W))[-2])
    ones = np.ones(n)
    if np.abs(W @ ones - ones).max() <= 1e-10:
        # 1 is an eigenvector: deflate it (its eigenvalue 1 becomes 0) and take the
        # largest eigenvalue of what is left, which is lambda_2 when lambda_2 > 0. ARPACK
        # converges much faster on this than on the top two eigenvalues of W.
        top = _largest_eig(_deflated(W), which="LA")
        if top > 1e-8:
            return top
    values = sla.eigsh(
        W, k=2, which="LA", v0=_v0(n), tol=_TOL, ncv=min(n, 64), return_eigenvectors=False
    )
    return float(np.min(values))


def mixing_time(W: sp.sparray | sp.spmatrix | np.ndarray, tol: float = 1e-3) -> float:
    """Smallest ``t`` with ``rho(W)**t <= tol`` (``math.inf`` when ``rho >= 1``).

    Examples
    --------
    >>> import numpy as np
    >>> mixing_time(np.full((4, 4), 0.25))
    1
    """
    if not 0 < tol < 1:
        raise TopologyError(f"mixing_time needs 0 < tol < 1, got tol={tol!r}")
    return _rounds_to(rho(W), tol)


def _rounds_to(r: float, tol: float) -> float:
    if r >= 1.0 - 1e-15:
        return math.inf
    if r <= 0.0:
        return 1
    t = max(1, math.ceil(math.log(tol) / math.log(r) - 1e-9))
    while r**t > tol * (1 + 1e-9):  # tolerate round-off in rho
        t += 1
    return t


def graph_stats(graph: nx.Graph) -> dict:
    """Diameter, degrees and edge count (self-loops ignored; in-degrees for digraphs).

    The diameter is ``math.inf`` for a disconnected (not strongly connected) graph.

    Examples
    --------
    >>> from topologies.builders import chain
    >>> graph_stats(chain(4))
    {'diameter': 3, 'max_degree': 2, 'min_degree': 1, 'mean_degree': 1.5, 'edges': 3}
    """
    n = graph.number_of_nodes()
    if n == 0:
        raise TopologyError("the graph has no nodes")
    index = {node: i for i, node in enumerate(graph.nodes())}
    pairs = [(index[u], index[v]) for u, v in graph.edges() if u != v]
    src = np.array([u for u, _ in pairs], dtype=np.int64)
    dst = np.array([v for _, v in pairs], dtype=np.int64)
    degree = np.bincount(dst, minlength=n)
    if not graph.is_directed():  # both directions: BFS on a symmetric digraph is faster
        degree = degree + np.bincount(src, minlength=n)
        src, dst = np.concatenate([src, dst]), np.concatenate([dst, src])
    adjacency = sp.csr_array((np.ones(len(src)), (src, dst)), shape=(n, n))
    diameter = 0
    for start in range(0, n, 256):  # all-pairs BFS in blocks of sources, in C
        dist = csgraph.shortest_path(
            adjacency,
            method="D",
            directed=True,
            unweighted=True,
            indices=np.arange(start, min(n, start + 256)),
        )
        longest = dist.max()
        if np.isinf(longest):
            diameter = math.inf
            break
        diameter = max(diameter, int(longest))
    return {
        "diameter": diameter,
        "max_degree": int(degree.max()),
        "min_degree": int(degree.min()),
        "mean_degree": float(degree.mean()),
        "edges": len(pairs),
    }


def summary(graph: nx.Graph, W: sp.sparray | sp.spmatrix | np.ndarray) -> dict:
    """Spectral and graph numbers of one topology in one dict.

    Keys: ``rho``, ``spectral_gap``, ``p``, ``lambda_2`` (``None`` when ``W`` is not
    symmetric), ``mixing_time`` (tol 1e-3), ``diameter``, ``max_degree``, ``edges``.
    """
    W = _square(W)
    if W.shape[0] != graph.number_of_nodes():
        raise TopologyError(
            f"the graph has {graph.number_of_nodes()} nodes but W is {W.shape[0]} x {W.shape[0]}"
        )
    r = rho(W)
    stats = graph_stats(graph)
    return {
        "rho": r,
        "spectral_gap": 1.0 - r,
        "p": 1.0 - r**2,
        "lambda_2": lambda_2(W) if W.shape[0] >= 2 and _is_symmetric(W) else None,
        "mixing_time": _rounds_to(r, 1e-3),
        "diameter": stats["diameter"],
        "max_degree": stats["max_degree"],
        "edges": stats["edges"],
    }


def _check_window(schedule: Schedule, tau: object, start: object) -> tuple[int, int]:
    if isinstance(tau, bool) or not isinstance(tau, (int, np.integer)) or tau < 1:
        raise TopologyError(f"tau must be an integer >= 1, got tau={tau!r}")
    if isinstance(start, bool) or not isinstance(start, (int, np.integer)) or start < 0:
        raise TopologyError(f"start must be an integer >= 0, got start={start!r}")
    return int(tau), int(start)


def _window(schedule: Schedule, first: int, tau: int) -> list[sp.csr_array]:
    return [schedule.matrix(t) for t in range(first, first + tau)]


def _window_norm(Ws: list[sp.csr_array], n: int) -> float:
    """``||W_last ... W_first - 11^T/n||_2`` of one window."""
    if n <= DENSE_MAX:
        M = np.eye(n)
        for W in Ws:
            M = W @ M
        return float(np.linalg.norm(M - 1.0 / n, 2))

    def apply(X: np.ndarray) -> np.ndarray:
        for W in Ws:
            X = W @ X
        return X - X.mean(axis=0)

    def apply_t(X: np.ndarray) -> np.ndarray:
        for W in reversed(Ws):
            X = W.T @ X
        return X - X.mean(axis=0)

    gram = sla.LinearOperator((n, n), matvec=lambda x: apply_t(apply(x)), dtype=np.float64)
    return math.sqrt(max(_largest_eig(gram), 0.0))


def effective_rate(
    schedule: Schedule, tau: int, *, rounds: int | None = None, start: int = 0
) -> float:
    """Worst-window consensus rate ``p`` of a schedule over windows of ``tau`` rounds.

    For windows ``k = 0..K-1`` the product ``M_k = W(s+tau-1) ... W(s)`` with
    ``s = start + k * tau`` is formed (matrix-free for ``n > 512``) and
    ``p = 1 - max_k ||M_k - 11^T/n||_2**2`` (Koloskova et al., 2020, Assumption 4 with
    ``tau``, required of every window). ``K = rounds // tau`` (default
    ``rounds = 8 * tau``); static schedules need only one window. For random schedules
    this is the worst of ``K`` draws: it falls as ``K`` grows and is not the expected rate
    of Assumption 4; use :func:`expected_rate` for that.

    Examples
    --------
    >>> from topologies.schedules import make_schedule
    >>> round(effective_rate(make_schedule("one_peer_exponential", 8), 3), 12)
    1.0
    """
    tau, start = _check_window(schedule, tau, start)
    if rounds is None:
        rounds = 8 * tau
    if isinstance(rounds, bool) or not isinstance(rounds, (int, np.integer)) or rounds < tau:
        raise TopologyError(f"rounds must be an integer >= tau={tau}, got rounds={rounds!r}")
    windows = 1 if schedule.is_static else int(rounds) // tau
    worst = max(
        _window_norm(_window(schedule, start + k * tau, tau), schedule.n) for k in range(windows)
    )
    return 1.0 - worst**2


def expected_rate(
    schedule: Schedule, tau: int, *, windows: int = 256, start: int = 0
) -> tuple[float, float]:
    """Expected consensus rate ``p`` of a schedule over ``tau`` rounds, and its standard error.

    Koloskova et al. (2020), Assumption 4:
    ``E ||X M - X_bar||_F^2 <= (1 - p) ||X - X_bar||_F^2`` for the window product
    ``M = W(s+tau-1) ... W(s)``, so ``p = 1 - lambda_max(E[(M - 11^T/n)^T (M - 11^T/n)])``.
    The expectation is estimated from the ``windows`` consecutive windows
    ``s = start + k * tau`` (all from the schedule's seed, so the estimate is
    deterministic), split in two halves: the top eigenvector ``v`` of the first half's
    mean ``G_1`` of ``(M_k - 11^T/n)^T (M_k - 11^T/n)``, then ``p = 1 - mean_k q_k`` and
    its standard error ``std_k(q_k) / sqrt(K_2)`` over the second half's
    ``q_k = ||(M_k - 11^T/n) v||^2``. The halves are independent for schedules drawn
    afresh each round, so this is unbiased for ``1 - v^T E[G] v >= p`` (the plain
    ``1 - lambda_max(G)`` is biased low by the noise of ``G``: about ``-0.04`` for
    random matching on 16 nodes with 500 windows). A static schedule has one window
    and error ``0``. For a uniformly random
    perfect matching (even ``n``, ``W = (I + P)/2``, ``E[P] = (J - I)/(n - 1)``)
    ``p = n / (2 (n - 1))`` at ``tau = 1``; with odd ``n`` one node idles,
    ``E[P] = J/n`` and ``p = 1/2``.

    Examples
    --------
    >>> from topologies.schedules import make_schedule
    >>> p, se = expected_rate(make_schedule("random_matching", 16), 1, windows=2000)
    >>> abs(p - 16 / 30) < 4 * se
    True
    """
    tau, start = _check_window(schedule, tau, start)
    if isinstance(windows, bool) or not isinstance(windows, (int, np.integer)) or windows < 4:
        raise TopologyError(f"windows must be an integer >= 4, got windows={windows!r}")
    n = schedule.n
    K = 1 if schedule.is_static else int(windows)
    prods = [_window(schedule, start + k * tau, tau) for k in range(K)]

    def deviation(Ws: list[sp.csr_array], X: np.ndarray) -> np.ndarray:
        """``(M - 11^T/n) X`` for the window ``Ws``."""
        for W in Ws:
            X = W @ X
        return X - X.mean(axis=0)

    def gram(part: list[list[sp.csr_array]], X: np.ndarray) -> np.ndarray:
        """Mean of ``(M_k - 11^T/n)^T (M_k - 11^T/n) X`` over the windows ``part``."""
        total = np.zeros_like(X)
        for Ws in part:
            Y = deviation(Ws, X)
            for W in reversed(Ws):
                Y = W.T @ Y
            total += Y - Y.mean(axis=0)
        return total / len(part)

    first = prods[: max(1, K // 2)]
    if n <= DENSE_MAX:
        values, vectors = np.linalg.eigh(gram(first, np.eye(n)))
        top, v = float(values[-1]), vectors[:, -1]
    else:
        op = sla.LinearOperator(
            (n, n), matvec=lambda x: gram(first, x), matmat=lambda X: gram(first, X), dtype=float
        )
        values, vectors = sla.eigsh(op, k=1, which="LA", v0=_v0(n), tol=_TOL, ncv=min(n, 64))
        top, v = float(values[0]), vectors[:, 0]
    if K == 1:
        return 1.0 - top, 0.0
    samples = np.array([np.sum(deviation(Ws, v) ** 2) for Ws in prods[K // 2 :]])
    return 1.0 - float(samples.mean()), float(samples.std(ddof=1) / math.sqrt(len(samples)))


def averages_exactly(schedule: Schedule, tau: int, start: int = 0, atol: float = 1e-10) -> bool:
    """Whether ``W(start+tau-1) ... W(start)`` equals ``11^T/n`` (entrywise within ``atol``).

    For ``n > 512`` the product is applied to a seeded random vector and its transpose
    instead of being formed; a product that is not exact fails that test with
    probability 1.

    Examples
    --------
    >>> from topologies.schedules import make_schedule
    >>> s = make_schedule("one_peer_exponential", 16)
    >>> averages_exactly(s, 4), averages_exactly(s, 3)
    (True, False)
    """
    tau, start = _check_window(schedule, tau, start)
    Ws = _window(schedule, start, tau)
    n = schedule.n
    if n <= DENSE_MAX:
        M = np.eye(n)
        for W in Ws:
            M = W @ M
        return bool(np.abs(M - 1.0 / n).max() <= atol)
    x = _v0(n)
    forward, backward = x, x
    for W in Ws:
        forward = W @ forward
    for W in reversed(Ws):
        backward = W.T @ backward
    bound = atol * np.abs(x).sum()
    return bool(
        np.abs(forward - x.mean()).max() <= bound and np.abs(backward - x.mean()).max() <= bound
    )
