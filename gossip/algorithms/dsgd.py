"""Decentralized SGD (D-SGD) with local steps and local or quasi-global momentum.

Round ``t`` with ``H = local_steps`` (Lian et al., 2017, "Can Decentralized Algorithms
Outperform Centralized Algorithms?"; Koloskova et al., 2020, "A Unified Theory of
Decentralized SGD with Changing Topology and Local Updates"), adapt-then-combine::

    x_i <- x_i - eta d_i          (H times, d_i from the stochastic gradient g_i)
    X   <- W(t) X                 (one gossip step)

so with ``H = 1`` and no momentum ``X <- W (X - eta G)``.

Momentum ``beta`` (``momentum_kind``):

``local``
    heavy ball per node, ``m_i <- beta m_i + g_i``, ``d_i = m_i`` (Nesterov:
    ``d_i = g_i + beta m_i``); the buffer persists across rounds.
``quasi_global``
    QG-DSGDm (Lin et al., 2021, "Quasi-global Momentum: Accelerating Decentralized Deep
    Learning on Heterogeneous Data", Algorithm 1): local steps use
    ``m_i = beta m_hat_i + g_i`` with the buffer ``m_hat_i`` frozen during the round
    (Nesterov: ``d_i = g_i + beta m_i``); after gossip the buffer tracks the model
    difference across the whole round, ``d_i = (x_i^t - x_i^{t+1}) / (H eta)``,
    ``m_hat_i <- beta m_hat_i + (1 - beta) d_i``. (Normalising by ``H eta`` with local steps
    is our choice; the paper has ``H = 1``.)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import torch

from gossip.algorithms.base import Algorithm, Context, register_algorithm
from gossip.algorithms.local import sgd_steps
from gossip.options import at_least
from gossip.registry import option

__all__ = ["DSGD", "DSGDState", "momentum_option", "nesterov_option"]


def _beta(v: float) -> str | None:
    return None if 0 <= v < 1 else "must be in [0, 1)"


def momentum_option() -> float:
    """The ``momentum`` field (D-SGD, all-reduce): heavy-ball ``beta`` in [0, 1)."""
    return option(0.0, "momentum beta in [0, 1)", check=_beta)


def nesterov_option() -> bool:
    """The ``nesterov`` field (D-SGD, all-reduce)."""
    return option(False, "Nesterov form of the momentum step")


class DSGDState(NamedTuple):
    X: torch.Tensor
    M: torch.Tensor  # momentum buffer (local m_i or quasi-global m_hat_i); zeros when unused


@register_algorithm
class DSGD(Algorithm):
    """D-SGD: ``H`` local (momentum) SGD steps, then ``X <- W(t) X``."""

    name = "dsgd"
    NODE_STATE = ("X", "M")  # a crashed node keeps its model and momentum

    @dataclass(frozen=True)
    class Config:
        local_steps: int = option(1, "local SGD steps H between gossip steps", check=at_least(1))
        momentum: float = momentum_option()
        momentum_kind: str = option("local", "heavy ball per node, or quasi-global "
                                    "(Lin et al. 2021)", choices=("local", "quasi_global"))
        nesterov: bool = nesterov_option()

    def init(self, ctx: Context) -> DSGDState:
        X = ctx.problem.init_params(ctx.comm.nodes)
        return DSGDState(X, torch.zeros_like(X))

    def round(self, state: DSGDState, t: int, ctx: Context) -> tuple[DSGDState, torch.Tensor]:
        H = self.cfg.local_steps
        beta = self.cfg.momentum
        nesterov = self.cfg.nesterov
        quasi_global = self.cfg.momentum_kind == "quasi_global"
        eta = float(ctx.lr(t))
        W = ctx.schedule.matrix(t)
        M = state.M

        if beta == 0:
            direction = None
        elif quasi_global:
            frozen = state.M

            def direction(G: torch.Tensor) -> torch.Tensor:
                m = beta * frozen + G
                return G + beta * m if nesterov else m
        else:
            def direction(G: torch.Tensor) -> torch.Tensor:
                nonlocal M
                M = beta * M + G
                return G + beta * M if nesterov else M

        X_half, losses = sgd_steps(state.X, ctx, t, H, eta, direction)
        X_new = ctx.comm.mix(X_half, W, t)
        if beta > 0 and quasi_global and eta > 0:
            d = (state.X - X_new) / (H * eta)
            M = beta * state.M + (1 - beta) * d
        return DSGDState(X_new, M), losses
