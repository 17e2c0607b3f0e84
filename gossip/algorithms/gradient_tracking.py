"""Gradient tracking (GT), and K-GT with local steps.

``local_steps = 1`` (Nedic et al., 2017, "Achieving Geometric Convergence for Distributed
Optimization over Time-Varying Graphs"; Koloskova et al., 2021, "An Improved Analysis of
Gradient Tracking for Decentralized Machine Learning")::

    X^{t+1} = W(t) (X^t - eta Y^t)
    Y^{t+1} = W(t) Y^t + G(X^{t+1}) - G(X^t),      Y^0 = G(X^0)

so ``sum_i y_i = sum_i g_i`` at every round (for doubly stochastic ``W``) and the fixed point
is the exact optimum even on heterogeneous data. One gradient per round: ``G(X^{t+1})`` is
taken with problem step ``t + 1`` and reused as ``G(X^t)`` of the next round.

``local_steps = K > 1``: K-GT (Liu et al., 2023, "Decentralized Gradient Tracking with Local
Steps", Algorithm 1, server step size 1). A correction ``c_i`` replaces the tracker::

    z_i^{0} = x_i^t;   z_i^{k+1} = z_i^k - eta (g_i(z_i^k) + c_i^t),   k < K
    y_i^t = (x_i^t - z_i^K) / (K eta)                   (average update direction)
    c_i^{t+1} = c_i^t - y_i^t + sum_j W_ij y_j^t
    x_i^{t+1} = sum_j W_ij z_j^K

with ``c^0 = (W(0) - I) G(X^0)`` (step index 0, the sample round 0 also takes at
``z^0 = x^0``), so ``sum_i c_i = 0`` throughout; for ``K = 1``
``y_i = g_i + c_i`` is exactly GT's tracker. Both vectors travel in one gossip
message (``2 d`` floats per edge and round).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import torch

from gossip.algorithms.base import Algorithm, Context, register_algorithm
from gossip.algorithms.local import sgd_steps
from gossip.options import at_least
from gossip.registry import option

__all__ = ["GTState", "GradientTracking", "KGTState"]


class GTState(NamedTuple):
    X: torch.Tensor
    Y: torch.Tensor  # gradient tracker
    G: torch.Tensor  # G(X) at the current X
    losses: torch.Tensor  # losses at the current X (reported by the next round)


class KGTState(NamedTuple):
    X: torch.Tensor
    C: torch.Tensor  # correction c_i, sum_i c_i = 0


@register_algorithm
class GradientTracking(Algorithm):
    """GT (``local_steps = 1``) or K-GT (``local_steps = K > 1``)."""

    name = "gradient_tracking"
    NODE_STATE = ("X", "Y", "G", "losses", "C")  # GT and K-GT

    @dataclass(frozen=True)
    class Config:
        local_steps: int = option(1, "local steps K (K > 1: K-GT)", check=at_least(1))

    def init(self, ctx: Context) -> GTState | KGTState:
        nodes = ctx.comm.nodes
        X = ctx.problem.init_params(nodes)
        if self.cfg.local_steps == 1:
            G, losses = ctx.problem.gradients(X, nodes, 0)
            return GTState(X, G.clone(), G, losses)
        G, _ = ctx.problem.gradients(X, nodes, 0)
        return KGTState(X, ctx.comm.mix(G, ctx.schedule.matrix(0), 0) - G)

    def round(self, state, t: int, ctx: Context):
        eta = float(ctx.lr(t))
        W = ctx.schedule.matrix(t)
        nodes = ctx.comm.nodes
        if isinstance(state, GTState):
            d = state.X.shape[1]
            mixed = ctx.comm.mix(torch.cat([state.X - eta * state.Y, state.Y], 1), W, t)
            X_new, WY = mixed[:, :d], mixed[:, d:]
            G_new, losses_new = ctx.problem.gradients(X_new, nodes, t + 1)
            # the gradient difference first: WY + G_new - G would round at the size of G,
            # not of Y, and leave float32 GT ~1e-10 from the optimum on a ring of 16
            Y_new = WY + (G_new - state.G)
            return GTState(X_new, Y_new, G_new, losses_new), state.losses
        K = self.cfg.local_steps
        C = state.C
        Z, losses = sgd_steps(state.X, ctx, t, K, eta, lambda G: G + C)
        Y = (state.X - Z) / (K * eta) if eta > 0 else torch.zeros_like(Z)
        d = Z.shape[1]
        mixed = ctx.comm.mix(torch.cat([Z, Y], 1), W, t)
        return KGTState(mixed[:, :d], C + (mixed[:, d:] - Y)), losses
