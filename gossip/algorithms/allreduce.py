"""All-reduce mini-batch SGD: the centralized reference.

Every step every node applies the exact average gradient to the exact average model::

    x <- x_bar - eta g_bar,    g_bar = 1/n sum_i g_i(x)

(with optional heavy-ball momentum on ``g_bar``: ``m <- beta m + g_bar``, step ``m``, or
``g_bar + beta m`` for Nesterov).

Bytes: ``g_bar`` comes from ``comm.allreduce_mean``, counted as a ring all-reduce would send
it (Patarasuk & Yuan, 2009): ``2 (d - d_i)`` floats and ``2 (n - 1)`` messages per node and
step, ``d_i`` the size of chunk ``i``; summed over nodes ``2 (n - 1) d`` floats, the familiar
``2 (n - 1) / n * d`` floats per node.

Compressed (the run has a ``[compression]`` operator ``C``): node ``i`` sends
``q_i = C(e_i + g_i)`` and keeps ``e_i <- e_i + g_i - D(q_i)`` when error feedback is on
(:mod:`gossip.compression.uploads`; by default for biased operators), else
``q_i = C(g_i)``; the applied gradient is ``g_bar = 1/n sum_i D(q_i)``, the exact mean of what
was sent. A compressed payload cannot be summed chunk by chunk along a ring (a sum of top-k
vectors is not top-k), so the bytes follow an aggregator: every node uploads its payload
(``comm.upload_mean``: ``payload_row_bytes``, 1 message) and downloads the dense mean
(``comm.broadcast``: ``d`` floats, 1 message),
``payload_row_bytes + 4 d`` bytes per node and step in fp32, the model ``fedavg`` counts with
every client sampled. Against the ring's ``2 (n - 1) / n * 4 d`` this pays off only when
``payload_row_bytes < (1 - 2/n) 4 d``: the dense download bounds the saving by 2x.

Robust (``algorithm.aggregator`` other than ``mean``, ``algorithm.worker_momentum > 0``, or a
Byzantine ``[attack]``, whose messages the exact ring would not carry): the gradients (or the
workers' momenta) go to a server that applies the rule
(:mod:`gossip.algorithms.robust_server`) and broadcasts the result, counted like the
compressed upload; ``g_bar = agg({m_i})``. Not combined with compression.

Secure (``algorithm.secure_aggregation``): the gradients go to a server through the simulated
protocol of Bonawitz et al. 2017 (:mod:`gossip.privacy.secure_aggregation`), which learns only
their mean (to within ``2^{-f-1}`` per entry) and broadcasts it (``d`` floats per node); with
``[faults] drop`` the mean is over the gradients that arrived, and a step with fewer than ``t``
of them aborts and changes nothing (counted in ``secure_aggregation_aborted``). Not combined
with compression or the robust server.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
import torch

from gossip.algorithms.base import Algorithm, Context, register_algorithm
from gossip.algorithms.dsgd import momentum_option, nesterov_option
from gossip.algorithms.robust_server import (
    RobustServerOptions,
    init_robust,
    robust_aggregate,
)
from gossip.compression.uploads import compress_rows, init_upload
from gossip.errors import ConfigError
from gossip.privacy.secure_aggregation import (
    SecureAggregationOptions,
    aborted_metrics,
    init_secure,
    make_secagg,
    secure_mean,
)

__all__ = ["AllReduce", "AllReduceState"]


class AllReduceState(NamedTuple):
    """``X`` the model on every row; ``M`` ``(dim,)`` momentum of the averaged gradient;
    ``E`` the error memory ``(b, dim)`` (``(b, 0)`` without error feedback or compression);
    ``C`` the compressor's state (``()`` without compression); ``R`` the robust server's
    ``(worker momenta, previous aggregate)`` (``()`` when not robust); ``S`` the number of
    aborted secure-aggregation steps (``()`` without secure aggregation)."""

    X: torch.Tensor
    M: torch.Tensor
    E: torch.Tensor
    C: tuple = ()
    R: tuple = ()
    S: torch.Tensor | tuple = ()


@register_algorithm
class AllReduce(Algorithm):
    """Mini-batch SGD with an exact all-reduce of the gradients every step."""

    name = "allreduce"
    USES_COMPRESSION = True
    FOLLOWS_SCHEDULE = False  # exact averages; no W(t)
    INFORMS_ADVERSARY = True

    @dataclass(frozen=True)
    class Config(RobustServerOptions, SecureAggregationOptions):
        momentum: float = momentum_option()
        nesterov: bool = nesterov_option()

    def init(self, ctx: Context) -> AllReduceState:
        X0 = ctx.problem.init_params(ctx.comm.nodes)
        x_bar = ctx.comm.mean_rows(X0)
        X = x_bar.expand_as(X0).clone()
        if ctx.compressor is None:
            E, C = X0.new_zeros((X0.shape[0], 0)), ()
        else:
            E, C = init_upload(ctx.compressor, X0, ctx.comm.nodes, ctx.problem.layout, ctx.seed)
        R = init_robust(self.cfg, X0, ctx.comm)
        if R and ctx.compressor is not None:
            raise ConfigError("algorithm.aggregator / worker_momentum / [attack] with allreduce "
                              "need compression.name='none'")
        S = init_secure(self.cfg, ctx.comm.n, ctx, self.name, bool(R))
        return AllReduceState(X, torch.zeros_like(x_bar), E, C, R, S)

    def round(
        self, state: AllReduceState, t: int, ctx: Context
    ) -> tuple[AllReduceState, torch.Tensor]:
        beta = self.cfg.momentum
        eta = float(ctx.lr(t))
        comm = ctx.comm
        G, losses = ctx.problem.gradients(state.X, comm.nodes, t)
        E, C, R = state.E, state.C, state.R
        if R:
            row = G.shape[1] * G.element_size()
            g_bar, R = robust_aggregate(self.cfg, G, R, comm, row, None, t, seed=ctx.seed)
            g_bar = comm.broadcast(g_bar)
        elif self.cfg.secure_aggregation:
            p = make_secagg(self.cfg, comm.n, ctx.seed, self.name)
            g_bar = secure_mean(p, comm, G, np.arange(comm.n), t).mean
            if g_bar is None:  # aborted: the step changes nothing
                return state._replace(S=state.S + 1), losses
            g_bar = comm.broadcast(g_bar)
        elif ctx.compressor is None:
            g_bar = comm.allreduce_mean(G)
        else:
            Q, E, C = compress_rows(ctx.compressor, G, E, C, t)
            row = ctx.compressor.payload_row_bytes(G.shape[1], ctx.problem.layout, G.dtype)
            g_bar, _ = comm.upload_mean(Q, row, t=t)
            g_bar = comm.broadcast(g_bar)
        x_bar = comm.mean_rows(state.X)
        M = state.M
        if beta > 0:
            M = beta * M + g_bar
            d = g_bar + beta * M if self.cfg.nesterov else M
        else:
            d = g_bar
        x = x_bar - eta * d
        return AllReduceState(x.expand_as(state.X).clone(), M, E, C, R, state.S), losses

    def metrics(self, state: AllReduceState) -> dict:
        """``secure_aggregation_aborted`` with secure aggregation (else nothing)."""
        return aborted_metrics(state.S)
