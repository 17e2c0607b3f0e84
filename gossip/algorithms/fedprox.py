"""FedProx: FedAvg whose clients minimise a proximal local objective.

Li, Sahu, Zaheer, Sanjabi, Talwalkar, Smith, 2020, "Federated Optimization in Heterogeneous
Networks" (Algorithm 2). Round ``t`` with server model ``x``:

1. the server samples ``S_t`` (:func:`~gossip.algorithms.fedavg.configure_round`) and sends
   them ``x`` (``comm.broadcast``, ``d`` floats);
2. every ``i in S_t`` starts from ``y_i = x`` and runs ``K = local_steps`` SGD steps on
   ``h_i(y) = f_i(y) + mu / 2 ||y - x||^2``::

       y_i <- y_i - eta (g_i(y_i; s) + mu (y_i - x)),     s = t K + k;

3. the clients upload ``Delta_i = x - y_i`` (``comm.upload_mean``, ``d`` floats) and
   ``x <- x - server_lr Delta``, ``Delta = 1/|A_t| sum_{i in A_t} Delta_i`` over the uploads
   that arrived.

``mu = 0`` is FedAvg without server momentum, bit for bit. Bytes: ``2 d`` floats per sampled
client and round (2 messages). Where we depart: the paper's inexact local solver is a fixed
number ``K`` of SGD steps (its experiments do the same) and its devices that do "variable
amounts of work" are not modelled; ``server_lr`` (default 1, the paper's plain average) is
FedAvg's server step. Uploads are averaged with equal weights, as FedAvg here does.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import torch

from gossip.algorithms.base import Algorithm, Context, register_algorithm
from gossip.algorithms.federated import (
    ClientRounds,
    client_steps,
    configure_round,
    down,
    sampled_mask,
    up,
)
from gossip.options import non_negative
from gossip.registry import option

__all__ = ["FedProx", "FedProxState"]


class FedProxState(NamedTuple):
    """``X`` the server model on every row."""

    X: torch.Tensor


@register_algorithm
class FedProx(Algorithm):
    """FedAvg with the proximal local objective ``f_i(y) + mu / 2 ||y - x||^2``."""

    name = "fedprox"
    FOLLOWS_SCHEDULE = False  # exact averages; no W(t)

    @dataclass(frozen=True)
    class Config(ClientRounds):
        mu: float = option(0.01, "proximal weight mu (0: FedAvg)", check=non_negative)

    def init(self, ctx: Context) -> FedProxState:
        X0 = ctx.problem.init_params(ctx.comm.nodes)
        return FedProxState(ctx.comm.mean_rows(X0).expand_as(X0).clone())

    def round(self, state: FedProxState, t: int, ctx: Context) -> tuple[FedProxState, torch.Tensor]:
        comm, o = ctx.comm, self.cfg
        sampled = configure_round(comm.n, o.client_fraction, ctx.seed, t)
        (x,) = down(comm, [state.X[0]], sampled)
        mask = sampled_mask(sampled, comm.nodes, state.X.device)
        mu = o.mu

        def prox(G: torch.Tensor, Y: torch.Tensor, s: int) -> torch.Tensor:
            return G + mu * (Y - x)

        Y, losses = client_steps(state.X, ctx, t, o.local_steps, float(ctx.lr(t)), mask,
                                 prox if mu else None)
        (delta,), _ = up(comm, [x - Y], sampled, t)
        x_new = x - o.server_lr * delta
        return FedProxState(x_new.expand_as(state.X).clone()), losses
