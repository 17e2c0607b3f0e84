"""BEER: compressed gradient tracking with public copies (Zhao, Li, Li, Richtárik & Chi 2022,
"BEER: Fast O(1/T) Rate for Decentralized Nonconvex Optimization with Communication
Compression", NeurIPS 2022, Algorithm 1).

Round ``t`` with consensus step ``gamma``, step size ``eta`` and compressor ``C``, in matrix
form on node blocks (rows are nodes, ``x_i <- x_i + gamma sum_j W_ij (h_j - h_i) - eta v_i``)::

    X_{t+1} = X_t + gamma (W - I) H_t - eta V_t
    H_{t+1} = H_t + C(X_{t+1} - H_t)              (public copies of X)
    V_{t+1} = V_t + gamma (W - I) G_t + grad F(X_{t+1}) - grad F(X_t)
    G_{t+1} = G_t + C(V_{t+1} - G_t)              (public copies of V)

Initialisation as in the paper and its reference code: ``V_0 = grad F(X_0)`` and
``H_0 = G_0 = 0``, so no uncompressed exchange is needed; every holder starts its copies at
zero and the first messages carry ``C(X_1)`` and ``C(V_1)``.

Messages. Node ``j`` sends ``q^H_j = C(x_j - h_j)`` and ``q^G_j = C(v_j - g_j)``; every holder
of the copies of ``j`` (itself included) adds the decoded ``q_j``, so all copies of ``j`` stay
equal. Both payloads travel in one :meth:`~gossip.comm.base.Communicator.share` (their tensor
tuples concatenated), so a message costs ``2 x`` the operator's ``payload_row_bytes``. Each
copy has its own compressor state; randomised operators draw with step ``2t`` for ``H`` and
``2t + 1`` for ``G``, so the two streams differ and sender and receiver agree.
Which copies a process keeps, and who receives ``q_j`` on a time-varying schedule, follows
:mod:`gossip.algorithms.choco`: the neighbours of ``j`` in ``W`` (static) or in the run's base
graph ``ctx.graph`` (time-varying; every ``W(t)`` must mix only along its edges).

Invariants for a column-stochastic ``W`` and any compressor: ``1^T (W - I) = 0`` gives
``sum_i v_i = sum_i grad f_i(x_i)`` every round (the tracker) and
``x_bar_{t+1} = x_bar_t - eta v_bar_t``. With ``C`` the identity and ``gamma = 1``,
``H_t = X_t`` and ``G_t = V_t`` from round 1 on, and BEER is gradient tracking in the DIGing
form (Nedic, Olshevsky & Shi 2017) ``X <- W X - eta V``, ``V <- W V + grad F(X_new) - grad F(X)``
after a first round that is one local step ``X_1 = X_0 - eta V_0`` (the copies start at zero).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
import torch

from gossip.algorithms.base import Algorithm, Context, register_algorithm
from gossip.algorithms.consensus_step import WithConsensusStep, gamma_check
from gossip.algorithms.public_copies import (
    check_within,
    compressor_of,
    receivers,
    share_copies,
)
from gossip.comm.mixing import mix_delta, senders_to
from gossip.registry import option

__all__ = ["Beer", "BeerState"]


class BeerState(NamedTuple):
    """``X`` hosted models and ``V`` trackers ``(b, d)``; ``H``, ``G`` public copies of ``X``
    and ``V`` for the ``known`` nodes ``(len(known), d)``; ``grad`` = ``grad F(X)`` and
    ``losses`` at the current ``X`` (reported by the next round); ``CH``, ``CG`` the
    compressor states of the two copies."""

    X: torch.Tensor
    V: torch.Tensor
    H: torch.Tensor
    G: torch.Tensor
    grad: torch.Tensor
    losses: torch.Tensor
    known: torch.Tensor
    CH: NamedTuple
    CG: NamedTuple


@register_algorithm
class Beer(WithConsensusStep, Algorithm):
    """BEER: gradient tracking with compressed public copies ``H`` (of ``X``) and ``G``
    (of ``V``), consensus step ``gamma``."""

    name = "beer"
    USES_COMPRESSION = True
    SURVIVES_LOSS = False  # public copies H, G must reach every holder
    ROWS_PER_MESSAGE = 2  # q^H and q^G travel in one message

    @dataclass(frozen=True)
    class Config:
        gamma: float | str = option(
            "auto", "consensus step gamma in (0, 1], auto = min(1, 2 omega / ||I - W||_2), or "
            "tune (the CHOCO authors' grid search on the run's W and compressor)",
            check=gamma_check(1.0))

    def init(self, ctx: Context) -> BeerState:
        self.resolve_consensus_step(ctx)
        nodes = ctx.comm.nodes
        X = ctx.problem.init_params(nodes)
        grad, losses = ctx.problem.gradients(X, nodes, 0)
        known = senders_to(receivers(ctx, "beer"), nodes)
        compressor = compressor_of(ctx)
        CH, CG = (
            compressor.init(X.shape[1], nodes, ctx.problem.layout, ctx.seed, dtype=X.dtype,
                            device=X.device)
            for _ in range(2)
        )
        zeros = torch.zeros((len(known), X.shape[1]), dtype=X.dtype, device=X.device)
        return BeerState(X, grad.clone(), zeros, zeros.clone(), grad, losses,
                         torch.from_numpy(known), CH, CG)

    def round(self, state: BeerState, t: int, ctx: Context) -> tuple[BeerState, torch.Tensor]:
        comm, compressor = ctx.comm, compressor_of(ctx)
        nodes = comm.nodes
        gamma, eta = self.consensus_step(ctx).gamma, float(ctx.lr(t))
        W = ctx.schedule.matrix(t)
        base = receivers(ctx, "beer")
        if not ctx.schedule.is_static:  # a static W(t) is the pattern of base itself
            check_within(W, base, "beer", t)
        known = state.known.numpy()
        own = torch.from_numpy(np.searchsorted(known, np.arange(nodes.start, nodes.stop)))

        # X_{t+1} = X_t + gamma (W - I) H_t - eta V_t
        X = state.X + gamma * mix_delta(W, nodes, known, state.H) - eta * state.V
        grad, losses = ctx.problem.gradients(X, nodes, t + 1)
        # V_{t+1} = V_t + gamma (W - I) G_t + grad F(X_{t+1}) - grad F(X_t)
        V = state.V + gamma * mix_delta(W, nodes, known, state.G) + (grad - state.grad)

        # q^H = C(X_{t+1} - H_t), q^G = C(V_{t+1} - G_t): one share carries both payloads
        payload_h, CH = compressor.encode(X - state.H[own], state.CH, 2 * t)
        payload_g, CG = compressor.encode(V - state.G[own], state.CG, 2 * t + 1)
        H, G = share_copies(comm, compressor, base, known, t,
                            [(payload_h, CH, 2 * t, state.H), (payload_g, CG, 2 * t + 1, state.G)])
        return BeerState(X, V, H, G, grad, losses, state.known, CH, CG), state.losses
