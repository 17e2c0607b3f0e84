"""D^2 / exact diffusion: decentralized SGD exact on heterogeneous data.

Tang et al., 2018, "D^2: Decentralized Training over Decentralized Data" (Algorithm 1);
Yuan et al., 2019, "Exact Diffusion for Distributed Optimization and Learning"::

    X^1     = W (X^0 - eta G^0)
    X^{t+1} = W (2 X^t - X^{t-1} - eta G^t + eta G^{t-1}),     t >= 1

Its fixed point is the exact optimum. It needs ``W`` symmetric, doubly stochastic with
``lambda_min(W) > -1/3``: use ``lazy_metropolis`` / ``lazy_uniform`` weights (eigenvalues
in [0, 1]) or ``metropolis`` on graphs where it satisfies that bound; with plain weights
on bipartite graphs (even rings, chains) ``lambda_min`` can reach -1 and D^2 diverges.
A static ``W`` outside that class (not symmetric, or ``lambda_min(W) <= -1/3``: an even ring
with Metropolis weights sits exactly on the bound, where the mode ``z = -1`` of
``z^2 - 2 lambda z + lambda = 0`` never decays) is rejected when the run starts
(:meth:`D2.check_network`). Time-varying schedules run unchecked, but the exactness theory is
for a fixed ``W``.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import scipy.sparse as sp
import torch

from gossip.algorithms.base import Algorithm, Context, register_algorithm
from gossip.errors import ConfigError

__all__ = ["D2", "D2State", "check_d2_weights", "lambda_min"]

#: Largest ``n`` whose ``lambda_min`` is taken from a dense eigendecomposition.
DENSE_UP_TO = 2048


def lambda_min(W) -> float:
    """The smallest eigenvalue of the symmetric ``W`` (dense up to :data:`DENSE_UP_TO` nodes,
    else Lanczos on the sparse matrix).

    >>> import topologies
    >>> round(lambda_min(topologies.mixing_matrix(topologies.build("ring", 8), "metropolis")), 6)
    -0.333333
    """
    n = W.shape[0]
    if n <= DENSE_UP_TO:
        dense = W.toarray() if sp.issparse(W) else np.asarray(W)
        return float(np.linalg.eigvalsh(dense)[0])
    from scipy.sparse.linalg import eigsh

    return float(eigsh(sp.csr_array(W, dtype=np.float64), k=1, which="SA",
                       return_eigenvectors=False)[0])


def check_d2_weights(W, tol: float = 1e-9) -> None:
    """ConfigError unless ``W`` is symmetric with ``lambda_min(W) > -1/3`` (Tang et al., 2018,
    Assumption 1), with ``tol`` of slack for rounding on the bound itself."""
    A = sp.csr_array(W, dtype=np.float64)
    asymmetry = abs(A - A.T)
    if asymmetry.nnz and asymmetry.max() > 1e-12:
        raise ConfigError("algorithm.name='d2' needs a symmetric W, but this topology.weights "
                          "gives a non-symmetric one: use lazy_metropolis or lazy_uniform")
    low = lambda_min(A)
    if low <= -1.0 / 3.0 + tol:
        raise ConfigError(
            f"algorithm.name='d2' needs lambda_min(W) > -1/3, but this topology.weights gives "
            f"{low:.6g}; use topology.weights=lazy_metropolis or lazy_uniform (eigenvalues in "
            "[0, 1])"
        )


class D2State(NamedTuple):
    X: torch.Tensor
    X_prev: torch.Tensor  # X^{t-1}
    G_prev: torch.Tensor  # G^{t-1}


@register_algorithm
class D2(Algorithm):
    """D^2 (exact diffusion) with one gradient step per gossip step."""

    name = "d2"
    NODE_STATE = ("X", "X_prev", "G_prev")

    @classmethod
    def check_network(cls, schedule, graph) -> None:
        """A static ``W`` must pass :func:`check_d2_weights`."""
        if schedule.is_static:
            check_d2_weights(schedule.matrix(0))

    def init(self, ctx: Context) -> D2State:
        X = ctx.problem.init_params(ctx.comm.nodes)
        return D2State(X, X.clone(), torch.zeros_like(X))

    def round(self, state: D2State, t: int, ctx: Context) -> tuple[D2State, torch.Tensor]:
        eta = float(ctx.lr(t))
        G, losses = ctx.problem.gradients(state.X, ctx.comm.nodes, t)
        if t == 0:
            half = state.X - eta * G
        else:
            # X^t + (X^t - X^{t-1}) - eta (G^t - G^{t-1}): at a fixed point both differences
            # are exactly 0 and half == X^t bit for bit (2 X - X_prev - eta G + eta G_prev
            # rounds at the size of eta G, every round in the same direction)
            half = state.X + ((state.X - state.X_prev) - eta * (G - state.G_prev))
        X_new = ctx.comm.mix(half, ctx.schedule.matrix(t), t)
        return D2State(X_new, state.X, G), losses
