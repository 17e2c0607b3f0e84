"""Mime and MimeLite: server momentum applied, unchanged, at every local step.

Karimireddy, Jaggi, Kale, Mohri, Reddi, Stich, Suresh, 2020, "Breaking the centralized
barrier for cross-device federated learning" (Mime; Algorithm 1 with SGD with momentum as
the base optimizer). The server holds ``x`` and the momentum ``m``. Round ``t``:

1. the server samples ``S_t`` (:func:`~gossip.algorithms.fedavg.configure_round`) and sends
   ``(x, m)`` (one message of ``2 d`` floats);
2. Mime only: every ``i in S_t`` uploads its full-batch gradient ``grad f_i(x)`` (``d``
   floats) and the server sends back ``c = 1/|A| sum_{i in A} grad f_i(x)`` (``d`` floats);
3. every ``i in S_t`` starts from ``y_i = x`` and runs ``K = local_steps`` steps on the
   samples ``z`` of step ``s = t K + k``::

       y_i <- y_i - eta ((1 - beta) g_i + beta m),
       g_i = grad f_i(y_i; z)                          (MimeLite)
       g_i = grad f_i(y_i; z) - grad f_i(x; z) + c     (Mime: SVRG correction, both
                                                        gradients on the same samples);

4. the clients upload ``Delta_i = x - y_i`` (MimeLite: together with ``grad f_i(x)``, one
   message of ``2 d`` floats); the server sets ``m <- (1 - beta) gbar + beta m`` with
   ``gbar`` the mean of the uploaded ``grad f_i(x)`` (Mime: ``c``) and
   ``x <- x - server_lr Delta`` (``server_lr = 1``: the paper's ``x <- mean y_i``).

The momentum is computed from gradients at ``x`` only, so it is the unbiased momentum of
centralised SGDm; the local steps never change it. With ``K = 1``, full participation and
full-batch gradients MimeLite *is* SGD with momentum,
``x <- x - eta ((1 - beta) grad f(x) + beta m)``, ``m <- (1 - beta) grad f(x) + beta m``
(lecture notes, eq. (2)).

Client drift, the lecture's Figure 2 (2 clients, ``f_i = a_i / 2 ||x - c_i||^2``, ``K`` full-
batch local steps of size ``eta``, full participation): FedAvg's pseudo-gradient is
``Delta_i = q_i (x - c_i)`` with ``q_i = 1 - (1 - eta a_i)^K``, so with or without server
momentum it converges to ``x_FedAvg = sum_i q_i c_i / sum_i q_i``, not to
``x* = sum_i a_i c_i / sum_i a_i``. MimeLite's fixed point solves ``m = grad f(x) =
abar (x - x*)`` and ``sum_i Delta_i = 0``; with ``p_i = 1 - (1 - (1 - beta) eta a_i)^K`` it is
``x_MimeLite = (sum_i p_i c_i + kappa x*) / (sum_i p_i + kappa)``,
``kappa = beta / (1 - beta) abar sum_i p_i / a_i``, between the local-SGD point and ``x*``.
Mime's fixed point is ``x*`` itself (at ``x = x*`` the corrected gradient is zero at every
local step). ``tests/algorithms/test_federated.py`` checks all three.

Bytes per sampled client and round: MimeLite ``4 d`` floats in 2 messages, Mime ``5 d``
floats in 4 messages. The full-batch gradients at ``x`` come from ``problem.full_gradients``
(a problem without them is refused). Where we depart: ``server_lr`` (default 1, the paper's
plain average) scales the server step.
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
    require_full_gradients,
    sampled_full_gradients,
    sampled_mask,
    up,
)
from gossip.registry import option

__all__ = ["Mime", "MimeLite", "MimeState"]


class MimeState(NamedTuple):
    """``X`` the server model on every row; ``M`` ``(dim,)`` the server momentum."""

    X: torch.Tensor
    M: torch.Tensor


def _beta(v: float) -> str | None:
    return None if 0 <= v < 1 else "must be in [0, 1)"


@register_algorithm
class MimeLite(Algorithm):
    """MimeLite: local steps ``y <- y - eta ((1 - beta) g_i(y) + beta m)``."""

    name = "mimelite"
    FOLLOWS_SCHEDULE = False  # exact averages; no W(t)
    #: Whether local gradients get the SVRG correction ``- grad f_i(x; z) + c`` (Mime).
    CORRECTED = False

    @dataclass(frozen=True)
    class Config(ClientRounds):
        beta: float = option(0.9, "momentum beta in [0, 1) of the server optimizer",
                             check=_beta)

    def init(self, ctx: Context) -> MimeState:
        require_full_gradients(ctx.problem, self.name)
        X0 = ctx.problem.init_params(ctx.comm.nodes)
        x = ctx.comm.mean_rows(X0)
        return MimeState(x.expand_as(X0).clone(), torch.zeros_like(x))

    def round(self, state: MimeState, t: int, ctx: Context) -> tuple[MimeState, torch.Tensor]:
        comm, o, beta = ctx.comm, self.cfg, self.cfg.beta
        sampled = configure_round(comm.n, o.client_fraction, ctx.seed, t)
        x, m = down(comm, [state.X[0], state.M], sampled)
        mask = sampled_mask(sampled, comm.nodes, state.X.device)
        G_x = sampled_full_gradients(ctx.problem, state.X, comm.nodes, mask)
        if self.CORRECTED:
            (c,), _ = up(comm, [G_x], sampled, t)
            (c,) = down(comm, [c], sampled)

            def direction(G: torch.Tensor, Y: torch.Tensor, s: int) -> torch.Tensor:
                G_xz, _ = ctx.problem.gradients(state.X, comm.nodes, s)
                return (1 - beta) * (G - G_xz + c) + beta * m
        else:
            def direction(G: torch.Tensor, Y: torch.Tensor, s: int) -> torch.Tensor:
                return (1 - beta) * G + beta * m

        Y, losses = client_steps(state.X, ctx, t, o.local_steps, float(ctx.lr(t)), mask,
                                 direction)
        if self.CORRECTED:
            (delta,), _ = up(comm, [x - Y], sampled, t)
            g_bar = c
        else:
            (delta, g_bar), _ = up(comm, [x - Y, G_x], sampled, t)
        M = (1 - beta) * g_bar + beta * m
        x_new = x - o.server_lr * delta
        return MimeState(x_new.expand_as(state.X).clone(), M), losses


@register_algorithm
class Mime(MimeLite):
    """Mime: MimeLite with the SVRG-corrected local gradient
    ``grad f_i(y; z) - grad f_i(x; z) + c``."""

    name = "mime"
    CORRECTED = True
