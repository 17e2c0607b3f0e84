"""SCAFFOLD: local steps corrected by control variates.

Karimireddy, Kale, Mohri, Reddi, Stich, Suresh, 2020, "SCAFFOLD: Stochastic Controlled
Averaging for Federated Learning" (Algorithm 1). The server holds ``x`` and ``c``, client
``i`` its control variate ``c_i`` (all zero at the start). Round ``t``:

1. the server samples ``S_t`` (:func:`~gossip.algorithms.fedavg.configure_round`) and sends
   ``(x, c)`` (one message of ``2 d`` floats, ``comm.broadcast``);
2. every ``i in S_t`` starts from ``y_i = x`` and runs ``K = local_steps`` steps::

       y_i <- y_i - eta (g_i(y_i; s) - c_i + c),     s = t K + k,

   then sets ``c_i^+ = c_i - c + (x - y_i) / (K eta)`` (option II, the default), or
   ``c_i^+ = g_i(x)`` (option I);
3. it uploads ``(Delta y_i, Delta c_i) = (y_i - x, c_i^+ - c_i)`` (one message of ``2 d``
   floats, ``comm.upload_mean``) and keeps ``c_i <- c_i^+``;
4. ``x <- x + server_lr Delta y``, ``c <- c + |A_t| / n Delta c``, the means over the uploads
   ``A_t`` that arrived (``A_t = S_t`` on a lossless channel).

With full participation ``c`` stays ``1/n sum_i c_i``; at the optimum ``c_i = grad f_i(x*)``
and ``c = 0``, so local steps no longer drift and, with full gradients, the method converges
to ``x*`` exactly where FedAvg stalls. Bytes: ``4 d`` floats per sampled client and round.

Where we depart: option I's ``g_i(x)`` is the gradient of the first local step (taken at
``y_i = x`` on that step's samples), not an extra pass over the local data; a client whose
upload is lost still keeps ``c_i^+`` (it cannot know), so under a lossy channel ``c`` drifts
from the clients' mean, as it would in a deployment.
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
from gossip.registry import option

__all__ = ["Scaffold", "ScaffoldState"]


class ScaffoldState(NamedTuple):
    """``X`` the server model on every row; ``c`` ``(dim,)`` the server control variate;
    ``C`` ``(b, dim)`` the hosted clients' control variates ``c_i``."""

    X: torch.Tensor
    c: torch.Tensor
    C: torch.Tensor


@register_algorithm
class Scaffold(Algorithm):
    """SCAFFOLD with option I or II control variates."""

    name = "scaffold"
    FOLLOWS_SCHEDULE = False  # exact averages; no W(t)

    @dataclass(frozen=True)
    class Config(ClientRounds):
        control: str = option("ii", "client control variate update: ii (from the local "
                              "progress) or i (gradient at the server model)",
                              choices=("i", "ii"))

    def init(self, ctx: Context) -> ScaffoldState:
        X0 = ctx.problem.init_params(ctx.comm.nodes)
        x = ctx.comm.mean_rows(X0)
        return ScaffoldState(x.expand_as(X0).clone(), torch.zeros_like(x), torch.zeros_like(X0))

    def round(
        self, state: ScaffoldState, t: int, ctx: Context
    ) -> tuple[ScaffoldState, torch.Tensor]:
        comm, o = ctx.comm, self.cfg
        K, eta = o.local_steps, float(ctx.lr(t))
        sampled = configure_round(comm.n, o.client_fraction, ctx.seed, t)
        x, c = down(comm, [state.X[0], state.c], sampled)
        mask = sampled_mask(sampled, comm.nodes, state.X.device)
        first: list[torch.Tensor] = []

        def corrected(G: torch.Tensor, Y: torch.Tensor, s: int) -> torch.Tensor:
            if not first:
                first.append(G)
            return G - state.C + c

        Y, losses = client_steps(state.X, ctx, t, K, eta, mask, corrected)
        if o.control == "ii":
            C_plus = state.C - c + (state.X - Y) / (K * eta)
        else:
            C_plus = first[0]
        C_new = torch.where(mask.unsqueeze(1), C_plus, state.C)
        (dy, dc), failed = up(comm, [Y - state.X, C_new - state.C], sampled, t)
        arrived = len(sampled) - len(failed)
        x_new = x + o.server_lr * dy
        c_new = c + (arrived / comm.n) * dc
        return ScaffoldState(x_new.expand_as(state.X).clone(), c_new, C_new), losses
