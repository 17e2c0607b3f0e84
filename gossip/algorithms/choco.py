"""CHOCO-SGD: compressed gossip with public copies (Koloskova, Stich & Jaggi 2019,
"Decentralized Stochastic Optimization and Gossip Algorithms with Compressed Communication",
Algorithm 2), and naive compressed D-SGD as the baseline it fixes.

Round ``t`` with ``H = local_steps`` and consensus step ``gamma``::

    x_i <- x_i - eta g_i                          (H times)
    q_i  = C(x_i - x_hat_i)                       (encoded, sent to every neighbour)
    x_hat_j <- x_hat_j + q_j                      (for i itself and every neighbour j)
    x_i <- x_i + gamma sum_j W_ij (x_hat_j - x_hat_i)

In matrix form ``X <- X + gamma (W - I) X_hat``. With ``C`` the identity and ``gamma = 1``,
``X_hat = X`` after the update and the round is exactly D-SGD, ``X <- W (X - eta G)``.
Because every holder of ``x_hat_j`` adds the same ``q_j``, all copies of node ``j`` stay equal,
and for a column-stochastic ``W`` (every symmetric or doubly stochastic one)
``sum_i sum_j W_ij x_hat_j = sum_j x_hat_j``: the gossip step leaves ``sum_i x_i`` unchanged,
so the node average moves only by the gradients, whatever the compression.

Public copies and memory: a process keeps ``x_hat_j`` for every node ``j`` its hosted nodes
may mix with (``known``, hosted nodes included): ``len(known) x dim`` values, e.g. ``3b x d``
on a ring, ``n x d`` with every node in one process. On a time-varying schedule a copy must
stay exact between the rounds in which it is used, so ``q_j`` goes every round to every node
that may ever mix ``j``: the neighbours of ``j`` in the run's base graph ``ctx.graph`` (both
directions) plus those of the current ``W(t)``; every ``W(t)`` must mix only along base-graph
edges (checked). The bytes reported are those messages, honestly more than ``W(t)`` alone
would need.

``naive_compressed_dsgd`` sends ``C(x_j)`` instead and mixes
``x_i <- W_ii x_i + sum_{j != i} W_ij C(x_j)``: no public copies, so compression errors enter
the models directly, the average drifts and the nodes do not reach the true average (the
baseline of Koloskova et al. 2019, Section 5). Under a lossy channel it mixes as
``Communicator.mix`` does (a lost ``C(x_j)`` gives its weight to ``x_i``); CHOCO refuses lost or
replaced messages, which would make the copies of a node differ between its holders.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
import torch

from gossip.algorithms.base import Algorithm, Context, register_algorithm
from gossip.algorithms.consensus_step import WithConsensusStep, gamma_check
from gossip.algorithms.local import sgd_steps
from gossip.algorithms.public_copies import (
    check_within,
    compressor_of,
    receivers,
    share_copies,
)
from gossip.comm.channel import repair_mix
from gossip.comm.mixing import apply_rows, mix_delta, senders_to
from gossip.options import at_least
from gossip.registry import option

__all__ = ["Choco", "ChocoState", "CompressedGossipNaive", "NaiveState"]


class ChocoState(NamedTuple):
    """``X`` hosted models ``(b, d)``; ``X_hat`` public copies of the ``known`` nodes
    ``(len(known), d)``; ``known`` their sorted ids; ``C`` the compressor's state."""

    X: torch.Tensor
    X_hat: torch.Tensor
    known: torch.Tensor
    C: NamedTuple


class NaiveState(NamedTuple):
    """``X`` hosted models and the compressor's state ``C``."""

    X: torch.Tensor
    C: NamedTuple


@register_algorithm
class Choco(WithConsensusStep, Algorithm):
    """CHOCO-SGD with public copies ``X_hat`` and consensus step ``gamma``."""

    name = "choco"
    USES_COMPRESSION = True
    SURVIVES_LOSS = False  # public copies X_hat must reach every holder

    @dataclass(frozen=True)
    class Config:
        gamma: float | str = option(
            "auto", "consensus step gamma: a number in (0, 1], auto = min(1, 2 omega / "
            "||I - W||_2), or tune (the authors' grid search on the run's W and compressor)",
            check=gamma_check(1.0))
        local_steps: int = option(1, "local SGD steps H between gossip steps", check=at_least(1))

    def init(self, ctx: Context) -> ChocoState:
        self.resolve_consensus_step(ctx)
        nodes = ctx.comm.nodes
        X = ctx.problem.init_params(nodes)
        known = senders_to(receivers(ctx, "choco"), nodes)
        C = compressor_of(ctx).init(
            X.shape[1], nodes, ctx.problem.layout, ctx.seed, dtype=X.dtype, device=X.device
        )
        X_hat = torch.zeros((len(known), X.shape[1]), dtype=X.dtype, device=X.device)
        return ChocoState(X, X_hat, torch.from_numpy(known), C)

    def round(self, state: ChocoState, t: int, ctx: Context) -> tuple[ChocoState, torch.Tensor]:
        comm, compressor = ctx.comm, compressor_of(ctx)
        nodes = comm.nodes
        gamma = self.consensus_step(ctx).gamma
        W = ctx.schedule.matrix(t)
        base = receivers(ctx, "choco")
        if not ctx.schedule.is_static:  # a static W(t) is the pattern of base itself
            check_within(W, base, "choco", t)
        known = state.known.numpy()
        own = np.searchsorted(known, np.arange(nodes.start, nodes.stop))

        X, losses = sgd_steps(state.X, ctx, t, self.cfg.local_steps, float(ctx.lr(t)))
        payload, C = compressor.encode(X - state.X_hat[own], state.C, t)
        (X_hat,) = share_copies(comm, compressor, base, known, t, [(payload, C, t, state.X_hat)])
        X = X + gamma * mix_delta(W, nodes, known, X_hat)
        return ChocoState(X, X_hat, state.known, C), losses


@register_algorithm
class CompressedGossipNaive(Algorithm):
    """Naive compressed D-SGD (baseline): ``x_i <- W_ii x_i + sum_{j != i} W_ij C(x_j)``."""

    name = "naive_compressed_dsgd"
    USES_COMPRESSION = True

    @dataclass(frozen=True)
    class Config:
        local_steps: int = option(1, "local SGD steps H between gossip steps", check=at_least(1))

    def init(self, ctx: Context) -> NaiveState:
        nodes = ctx.comm.nodes
        X = ctx.problem.init_params(nodes)
        C = compressor_of(ctx).init(
            X.shape[1], nodes, ctx.problem.layout, ctx.seed, dtype=X.dtype, device=X.device
        )
        return NaiveState(X, C)

    def round(self, state: NaiveState, t: int, ctx: Context) -> tuple[NaiveState, torch.Tensor]:
        comm, compressor = ctx.comm, compressor_of(ctx)
        nodes = comm.nodes
        W = ctx.schedule.matrix(t)
        X, losses = sgd_steps(state.X, ctx, t, self.cfg.local_steps, float(ctx.lr(t)))
        payload, C = compressor.encode(X, state.C, t)
        got = comm.share(payload, W, t)
        ids = got.ids
        Q = compressor.decode(got.rows, C, ids, t).to(X.dtype)
        own = np.searchsorted(ids, np.arange(nodes.start, nodes.stop))
        diag = torch.as_tensor(W.diagonal()[nodes.start : nodes.stop], dtype=X.dtype,
                               device=X.device)
        X_new = apply_rows(W, nodes, ids, Q) + diag[:, None] * (X - Q[own])
        if not got.complete:  # as mix: a lost C(x_j) gives W_ij to x_i, a replaced one enters
            replaced = ()
            if len(got.replaced):
                replaced = (compressor.decode(got.replaced_rows, C, got.replaced[:, 1], t)
                            .to(X.dtype),)
            decoded = got._replace(rows=(Q,), replaced_rows=replaced)
            X_new = repair_mix(X_new, W, nodes, X, decoded)
        X = X_new
        return NaiveState(X, C), losses
