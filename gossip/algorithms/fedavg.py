"""Federated averaging with client sampling and server momentum.

McMahan et al., 2017, "Communication-Efficient Learning of Deep Networks from Decentralized
Data" (FedAvg); server momentum as in Hsu et al., 2019, "Measuring the Effects of
Non-Identical Data Distribution for Federated Visual Classification" (FedAvgM). Round ``t``:

1. :func:`configure_round` samples ``S_t``: ``max(1, round(client_fraction * n))`` clients,
   from a generator seeded by ``(seed, t)`` (identical on every process); the server sends
   them its model (``comm.broadcast``);
2. every ``i in S_t`` runs ``H`` local SGD steps from the server model, ``x_i = z_i^H``;
3. :func:`aggregate_round`: the clients upload ``Delta_i = x_server - x_i``
   (``comm.upload_mean``) and ``Delta = 1/|A_t| sum_{i in A_t} Delta_i`` over the uploads
   ``A_t`` that arrived (all of ``S_t`` unless the communicator's channel loses some; none
   arrived: ``Delta = 0``);
4. ``v <- beta v + Delta``,  ``x_server <- x_server - server_lr v``; every node holds
   ``x_server`` afterwards.

With ``client_fraction = 1``, ``H = 1``, ``server_lr = 1`` and ``beta = 0`` this is
all-reduce mini-batch SGD. Bytes: each sampled client downloads and uploads ``d`` values
(``2 d`` floats per sampled client and round).

Compressed (the run has a ``[compression]`` operator ``C``): sampled client ``i`` uploads
``q_i = C(e_i + Delta_i)``, ``Delta_i = x_server - x_i``, and keeps
``e_i <- e_i + Delta_i - D(q_i)`` with error feedback (per-client memory, untouched in rounds
the client is not sampled; on by default for biased operators,
:mod:`gossip.compression.uploads`), else ``q_i = C(Delta_i)``; the server averages the
decoded uploads, ``Delta = 1/|S_t| sum_{i in S_t} D(q_i)``. Bytes per sampled client: the
payload (``payload_row_bytes``) up and the dense model (``d`` floats) down, 2 messages.

Robust (``algorithm.aggregator``, ``algorithm.worker_momentum``, an ``[attack]``): step 3
gathers the sampled clients' ``Delta_i`` (or their momenta) and applies the rule,
:mod:`gossip.algorithms.robust_server`; not combined with compression.

Secure (``algorithm.secure_aggregation``): step 3 runs the simulated protocol of Bonawitz et
al. 2017 (:mod:`gossip.privacy.secure_aggregation`): the server sees only masked fixed-point
``Delta_i`` and learns their mean over the survivors, ``Delta`` to within ``2^{-f-1}`` per
entry; a round with fewer than ``t`` survivors aborts and changes nothing (``X``, ``V``), and
is counted in ``secure_aggregation_aborted``. Not combined with compression or the robust
server (a robust rule needs the rows the protocol hides).

Reported losses: sampled clients' mean over their local steps; the others' (which compute
nothing in a real deployment) are the loss of the server model at the round's first step.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
import torch

from gossip.algorithms.base import Algorithm, Context, register_algorithm
from gossip.algorithms.local import sgd_steps
from gossip.algorithms.robust_server import RobustServerOptions, init_robust, robust_aggregate
from gossip.compression.uploads import compress_rows, init_upload
from gossip.errors import ConfigError
from gossip.options import at_least, fraction, positive
from gossip.privacy.secure_aggregation import (
    SecureAggregationOptions,
    aborted_metrics,
    init_secure,
    make_secagg,
    secure_mean,
)
from gossip.registry import option

__all__ = ["FedAvg", "FedAvgState", "aggregate_round", "configure_round"]


class FedAvgState(NamedTuple):
    """``X`` the server model on every row; ``V`` ``(dim,)`` server momentum; ``E`` the
    clients' error memory ``(b, dim)`` (``(b, 0)`` without error feedback or compression);
    ``C`` the compressor's state (``()`` without compression); ``R`` the robust server's
    ``(client momenta, previous aggregate)`` (``()`` when not robust); ``S`` the number of
    aborted secure-aggregation rounds (``()`` without secure aggregation)."""

    X: torch.Tensor
    V: torch.Tensor
    E: torch.Tensor
    C: tuple = ()
    R: tuple = ()
    S: torch.Tensor | tuple = ()


def configure_round(n: int, client_fraction: float, seed: int, t: int) -> np.ndarray:
    """Sorted ids of the clients sampled in round ``t`` (the same on every process)."""
    m = max(1, int(round(client_fraction * n)))
    rng = np.random.default_rng([seed, t, 0xFEDA])
    return np.sort(rng.choice(n, size=m, replace=False))


def aggregate_round(
    deltas: torch.Tensor, sampled: np.ndarray, comm, row_bytes: int, t: int
) -> tuple[torch.Tensor, np.ndarray]:
    """The sampled clients upload their rows of ``deltas`` (``row_bytes`` each); returns
    ``(Delta, failed)``: the mean of the uploads that arrived and the clients whose upload was
    lost (:meth:`~gossip.comm.base.Communicator.upload_mean`)."""
    return comm.upload_mean(deltas, row_bytes, sampled, t)


@register_algorithm
class FedAvg(Algorithm):
    """FedAvg / FedAvgM on the hosted block."""

    name = "fedavg"
    USES_COMPRESSION = True
    FOLLOWS_SCHEDULE = False  # exact averages; no W(t)
    INFORMS_ADVERSARY = True

    @dataclass(frozen=True)
    class Config(RobustServerOptions, SecureAggregationOptions):
        client_fraction: float = option(0.1, "fraction of clients sampled per round",
                                         check=fraction)
        local_steps: int = option(1, "local SGD steps H per round", check=at_least(1))
        server_lr: float = option(1.0, "server step size on the averaged update",
                                  check=positive)
        server_momentum: float = option(0.0, "server momentum beta in [0, 1)",
                                        check=lambda v: None if 0 <= v < 1 else "must be in [0, 1)")

    def init(self, ctx: Context) -> FedAvgState:
        X0 = ctx.problem.init_params(ctx.comm.nodes)
        x = ctx.comm.mean_rows(X0)
        if ctx.compressor is None:
            E, C = X0.new_zeros((X0.shape[0], 0)), ()
        else:
            E, C = init_upload(ctx.compressor, X0, ctx.comm.nodes, ctx.problem.layout, ctx.seed)
        R = init_robust(self.cfg, X0, ctx.comm)
        if R and ctx.compressor is not None:
            raise ConfigError("algorithm.aggregator / worker_momentum / [attack] with fedavg "
                              "need compression.name='none'")
        m = len(configure_round(ctx.comm.n, self.cfg.client_fraction, ctx.seed, 0))
        S = init_secure(self.cfg, m, ctx, self.name, bool(R))
        return FedAvgState(x.expand_as(X0).clone(), torch.zeros_like(x), E, C, R, S)

    def round(self, state: FedAvgState, t: int, ctx: Context) -> tuple[FedAvgState, torch.Tensor]:
        comm, o = ctx.comm, self.cfg
        sampled = configure_round(comm.n, o.client_fraction, ctx.seed, t)
        x_server = comm.broadcast(state.X[0], sampled)
        nodes = comm.nodes
        hosted = sampled[(sampled >= nodes.start) & (sampled < nodes.stop)] - nodes.start
        mask = torch.zeros(len(nodes), dtype=torch.bool, device=state.X.device)
        mask[torch.as_tensor(hosted, dtype=torch.long)] = True
        X_local, losses = sgd_steps(
            state.X, ctx, t, o.local_steps, float(ctx.lr(t)), mask=mask
        )
        E, C = state.E, state.C
        d = x_server.numel()
        if ctx.compressor is None:
            deltas, row = x_server - X_local, d * x_server.element_size()
        else:
            deltas, E, C = compress_rows(ctx.compressor, x_server - X_local, E, C, t, mask=mask)
            row = ctx.compressor.payload_row_bytes(d, ctx.problem.layout, x_server.dtype)
        R = state.R
        if R:
            delta, R = robust_aggregate(o, deltas, R, comm, row, sampled, t, mask, ctx.seed)
        elif o.secure_aggregation:
            delta = secure_mean(self.secagg(ctx), comm, deltas, sampled, t).mean
            if delta is None:  # aborted: the round changes nothing
                return state._replace(S=state.S + 1), losses
        else:
            delta, _ = aggregate_round(deltas, sampled, comm, row, t)
        V = o.server_momentum * state.V + delta
        x_new = x_server - o.server_lr * V
        return FedAvgState(x_new.expand_as(state.X).clone(), V, E, C, R, state.S), losses

    def secagg(self, ctx: Context):
        """The run's secure-aggregation parameters (:func:`~gossip.privacy.
        secure_aggregation.make_secagg`) for the round's sampled clients."""
        m = len(configure_round(ctx.comm.n, self.cfg.client_fraction, ctx.seed, 0))
        return make_secagg(self.cfg, m, ctx.seed, self.name)

    def metrics(self, state: FedAvgState) -> dict:
        """``secure_aggregation_aborted`` with secure aggregation (else nothing)."""
        return aborted_metrics(state.S)
