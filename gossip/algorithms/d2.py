"""D^2 / exact diffusion: decentralized SGD exact on heterogeneous data.

Tang et al., 2018, "D^2: Decentralized Training over Decentralized Data" (Algorithm 1);
Yuan et al., 2019, "Exact Diffusion for Distributed Optimization and Learning"::

    X^1     = W (X^0 - eta G^0)
    X^{t+1} = W (2 X^t - X^{t-1} - eta G^t + eta G^{t-1}),     t >= 1

Its fixed point is the exact optimum. It needs ``W`` symmetric, doubly stochastic with
``lambda_min(W) > -1/3``: use ``lazy_metropolis`` / ``lazy_uniform`` weights (eigenvalues
in [0, 1]) or ``metropolis`` on graphs where it satisfies that bound; with plain weights
on bipartite graphs (even rings, chains) ``lambda_min`` can reach -1 and D^2 diverges.
Time-varying schedules run, but the exactness theory is for a fixed ``W``.
"""

from __future__ import annotations

from typing import NamedTuple

import torch

from gossip.algorithms.base import Algorithm, Context, register_algorithm

__all__ = ["D2", "D2State"]


class D2State(NamedTuple):
    X: torch.Tensor
    X_prev: torch.Tensor  # X^{t-1}
    G_prev: torch.Tensor  # G^{t-1}


@register_algorithm
class D2(Algorithm):
    """D^2 (exact diffusion) with one gradient step per gossip step."""

    name = "d2"

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
