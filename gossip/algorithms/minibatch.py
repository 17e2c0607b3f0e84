"""Mini-batch SGD and accelerated mini-batch SGD with the sample budget of local SGD.

The baselines of Woodworth, Patel, Stich, Dai, Bullins, McMahan, Shamir, Srebro, 2020, "Is
Local SGD Better than Minibatch SGD?": in a round every client draws the samples that ``K``
local steps would use (problem steps ``s = t K + k``, ``K = budget``, exactly those of FedAvg
with ``local_steps = K``), but all at the same point, and the server takes one step with their
average::

    ghat = 1/|A_t| sum_{i in A_t} 1/K sum_k g_i(q; t K + k)

Plain (``accelerated = false``): ``q = x``, ``x <- x - eta ghat``.

Accelerated (``accelerated = true``): AC-SA of Lan, 2012, "An optimal method for stochastic
composite optimization" (the unconstrained Euclidean case, Woodworth et al.'s accelerated
baseline) with ``beta_t = (t + 2) / 2``, ``gamma_t = (t + 2) / 2 eta`` (the paper's
``t = 1, 2, ...`` is our round ``t + 1``)::

    q      = w / beta_t + (1 - 1 / beta_t) x      (the query point x^md)
    w     <- w - gamma_t ghat(q)
    x     <- w / beta_t + (1 - 1 / beta_t) x      (x^ag, the reported model)

Round 0 is one plain step (``beta_0 = 1``). Bytes per sampled client and round: the query
point down and ``ghat_i`` up, ``2 d`` floats in 2 messages. Where we depart: Lan's step
``gamma`` is tuned to the horizon; here ``eta`` is the run's ``lr`` (its schedule applies).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import torch

from gossip.algorithms.base import Algorithm, Context, register_algorithm
from gossip.algorithms.federated import configure_round, down, up
from gossip.options import at_least, fraction
from gossip.registry import option

__all__ = ["MinibatchSGD", "MinibatchState", "budget_gradients"]


class MinibatchState(NamedTuple):
    """``X`` the server model (``x^ag`` when accelerated) on every row; ``W`` ``(dim,)``
    AC-SA's ``w`` (``(0,)`` when not accelerated)."""

    X: torch.Tensor
    W: torch.Tensor


def budget_gradients(
    Q: torch.Tensor, ctx: Context, steps: range
) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean gradient and loss of every hosted row of ``Q`` over the problem steps ``steps``
    (all taken at ``Q``)."""
    G = torch.zeros_like(Q)
    loss = torch.zeros(Q.shape[0], dtype=Q.dtype, device=Q.device)
    for s in steps:
        g, losses = ctx.problem.gradients(Q, ctx.comm.nodes, s)
        G = G + g
        loss = loss + losses.to(loss.dtype)
    return G / len(steps), loss / len(steps)


@register_algorithm
class MinibatchSGD(Algorithm):
    """One averaged step per round on the samples of ``budget`` local steps."""

    name = "minibatch_sgd"
    FOLLOWS_SCHEDULE = False  # exact averages; no W(t)

    @dataclass(frozen=True)
    class Config:
        budget: int = option(1, "samples (mini-batches) K per client and round, all at the "
                             "server model (fedavg with local_steps = K draws the same)",
                             check=at_least(1))
        accelerated: bool = option(False, "AC-SA (Lan 2012) instead of plain SGD")
        client_fraction: float = option(1.0, "fraction of clients sampled per round",
                                        check=fraction)

    def init(self, ctx: Context) -> MinibatchState:
        X0 = ctx.problem.init_params(ctx.comm.nodes)
        x = ctx.comm.mean_rows(X0)
        W = x.clone() if self.cfg.accelerated else x.new_zeros(0)
        return MinibatchState(x.expand_as(X0).clone(), W)

    def round(
        self, state: MinibatchState, t: int, ctx: Context
    ) -> tuple[MinibatchState, torch.Tensor]:
        comm, o = ctx.comm, self.cfg
        K, eta = o.budget, float(ctx.lr(t))
        sampled = configure_round(comm.n, o.client_fraction, ctx.seed, t)
        x = state.X[0]
        if o.accelerated:
            beta = (t + 2) / 2
            q = state.W / beta + (1 - 1 / beta) * x
        else:
            q = x
        (q,) = down(comm, [q], sampled)
        G, losses = budget_gradients(q.expand_as(state.X), ctx, range(t * K, (t + 1) * K))
        (g,), _ = up(comm, [G], sampled, t)
        if o.accelerated:
            W = state.W - beta * eta * g
            x_new = W / beta + (1 - 1 / beta) * x
        else:
            W, x_new = state.W, x - eta * g
        return MinibatchState(x_new.expand_as(state.X).clone(), W), losses
