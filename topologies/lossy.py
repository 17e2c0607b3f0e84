"""Mixing under lost messages: ``W(t)`` with dropped links, and its expected consensus rate.

A message ``j -> i`` lost in round ``t`` gives its weight to the diagonal (the rule of the
simulator's channel, ``gossip.comm.channel``)::

    W_q(t)_ij = 0,   W_q(t)_ii = W_ii + sum_{j lost} W_ij.

:class:`DropSchedule` draws the losses of every round from the seed, independently per
undirected link (``symmetric``: ``W_q`` stays symmetric and doubly stochastic) or per
direction (``W_q`` only row stochastic). The expected rate of Koloskova et al. (2020,
Assumption 4) of D-SGD under drops, ``p = 1 - lambda_max(E[(W_q - J)^T (W_q - J)])`` with
``J = 11^T/n``, is measured by Monte Carlo with :func:`topologies.expected_rate` on a
``DropSchedule``; for symmetric drops it has a closed form, :func:`drop_rate`.

Examples
--------
>>> import topologies
>>> W = topologies.mixing_matrix(topologies.build("complete", 2))
>>> round(drop_rate(W, 0.3), 12)  # two nodes: p = 1 - q
0.7
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from topologies.errors import TopologyError
from topologies.schedules import Schedule, _read_only

__all__ = ["DropSchedule", "drop_gram", "drop_matrix", "drop_rate"]

_SALT = 0xD209


def _check_q(q: object) -> float:
    if isinstance(q, bool) or not isinstance(q, (int, float, np.floating)) or not 0 <= q <= 1:
        raise TopologyError(f"drop probability must be a number in [0, 1], got {q!r}")
    return float(q)


def drop_matrix(W, rows: np.ndarray, cols: np.ndarray, lost: np.ndarray) -> sp.csr_array:
    """``W`` with its off-diagonal entries ``(rows[k], cols[k])`` for which ``lost[k]`` is
    true moved to their row's diagonal (``W_ii += W_ij``, ``W_ij = 0``)."""
    A = sp.csr_array(W, dtype=np.float64)
    n = A.shape[0]
    i, j = rows[lost], cols[lost]
    w = A[i, j] if len(i) else np.zeros(0)
    diag = np.arange(n)
    moved = np.bincount(i, weights=w, minlength=n)
    coo = sp.coo_array(A)
    out = sp.csr_array((np.concatenate([coo.data, -w, moved]),
                        (np.concatenate([coo.row, i, diag]), np.concatenate([coo.col, j, diag]))),
                       shape=(n, n))
    out.sum_duplicates()
    out.eliminate_zeros()
    out.sort_indices()
    return out


class _Fixed(Schedule):
    """The same given ``W`` every round."""

    name = "fixed"
    is_static = True

    def __init__(self, W) -> None:
        self._W = _read_only(sp.csr_array(W, dtype=np.float64))
        super().__init__(self._W.shape[0])

    def _matrix(self, t: int) -> sp.csr_array:
        return self._W


class DropSchedule(Schedule):
    """``W_q(t)``: the base schedule's ``W(t)`` with each link lost with probability ``q``.

    Parameters
    ----------
    base : Schedule or sparse matrix
        The schedule without losses (a matrix: the same ``W`` every round).
    q : float
        Drop probability in ``[0, 1]``.
    seed : int
        Seed of the losses (``numpy.random.default_rng([seed, t, salt])`` per round).
    symmetric : bool
        One draw per undirected link (``i -> j`` lost exactly when ``j -> i`` is), else one
        per direction.
    """

    name = "drop"

    def __init__(self, base: Schedule, q: float, seed: int = 0, symmetric: bool = True) -> None:
        if not isinstance(base, Schedule):
            base = _Fixed(base)
        super().__init__(base.n, seed)
        self.base, self.q, self.symmetric = base, _check_q(q), bool(symmetric)
        self.is_static = base.is_static and self.q in (0.0, 1.0)

    def _matrix(self, t: int) -> sp.csr_array:
        W = self.base.matrix(t)
        if self.q == 0:
            return W
        coo = sp.coo_array(W)
        off = (coo.row != coo.col) & (coo.data != 0)
        rows, cols = coo.row[off].astype(np.int64), coo.col[off].astype(np.int64)
        order = np.lexsort((cols, rows))
        rows, cols = rows[order], cols[order]
        rng = np.random.default_rng([self.seed, t, _SALT])
        if self.symmetric:
            lo, hi = np.minimum(rows, cols), np.maximum(rows, cols)
            links, which = np.unique(lo * self.n + hi, return_inverse=True)
            lost = (rng.random(len(links)) < self.q)[which]
        else:
            lost = rng.random(len(rows)) < self.q
        return _read_only(drop_matrix(W, rows, cols, lost))


def drop_gram(W, q: float) -> np.ndarray:
    """``E[W_q^T W_q]`` for symmetric drops of the symmetric ``W`` (dense, exact).

    With ``W = I - sum_e w_e L_e`` over the links ``e = {i, j}`` (``w_e = W_ij``,
    ``L_e = (e_i - e_j)(e_i - e_j)^T``, ``L_e^2 = 2 L_e``), ``W_q = I - sum_e b_e w_e L_e``
    with independent ``b_e ~ Bernoulli(1 - q)``, so with ``A = I - W`` and
    ``B = sum_e w_e^2 L_e``::

        E[W_q^2] = (I - (1 - q) A)^2 + 2 q (1 - q) B.
    """
    q = _check_q(q)
    W = sp.csr_array(W).toarray().astype(np.float64)
    if not np.allclose(W, W.T, atol=1e-12):
        raise TopologyError("drop_gram needs a symmetric W (symmetric drops keep it symmetric)")
    n = W.shape[0]
    off = W - np.diag(np.diag(W))
    A = np.eye(n) - W
    B = np.diag((off**2).sum(1)) - off**2
    C = np.eye(n) - (1.0 - q) * A
    return C @ C + 2.0 * q * (1.0 - q) * B


def drop_rate(W, q: float) -> float:
    """The expected consensus rate of one D-SGD gossip step under symmetric drops,
    ``p = 1 - lambda_max(E[W_q^T W_q] - J)`` (:func:`drop_gram`; ``E[W_q^T W_q]`` fixes
    ``1``, so ``- J`` removes exactly the consensus direction). ``q = 0``: ``1 - rho(W)^2``;
    the complete graph with ``W = J``: ``1 - q^2 - 2 q (1 - q) / n``.

    >>> import topologies
    >>> W = topologies.mixing_matrix(topologies.build("complete", 4))
    >>> q = 0.5
    >>> bool(abs(drop_rate(W, q) - (1 - q**2 - 2 * q * (1 - q) / 4)) < 1e-12)
    True
    """
    E = drop_gram(W, q)
    n = E.shape[0]
    return float(1.0 - np.linalg.eigvalsh(E - np.full((n, n), 1.0 / n))[-1])
