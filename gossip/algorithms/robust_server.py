"""Robust aggregation at the server of ``allreduce`` and ``fedavg``, with worker momentum.

The server step ``w <- w - gamma agg({u_i})`` over the uploads ``u_i`` of the senders (the
gradients of ``allreduce``, the updates ``Delta_i`` of ``fedavg``), ``agg`` one of
:mod:`gossip.robust.aggregators` (``algorithm.aggregator`` with ``algorithm.aggregator_options``).
With worker momentum ``beta`` (``algorithm.worker_momentum``) every worker sends its momentum
instead (Karimireddy, He, Jaggi 2021, "Learning from History for Byzantine Robust
Optimization", Algorithm 1)::

    m_i <- (1 - beta) u_i + beta m_i,        w <- w - gamma agg({m_i})

(a fedavg client updates ``m_i`` only in the rounds it is sampled). With
``algorithm.bucketing = s`` the rule sees the means of random buckets of ``s`` rows
(:func:`buckets`), the fix for heterogeneous data of Karimireddy, He, Jaggi 2022. The lecture's
point: a
robust rule on gradients alone is beaten by time-coupled attacks ("A Little Is Enough",
Baruch et al. 2019); on momenta, whose honest spread is ``(1 - beta)`` smaller, it is not.

Bytes: a robust rule needs the rows one by one, so the senders upload them
(``comm.gather_rows``: one message of a row per sender, the same count as ``upload_mean``)
and the server sends the result down (``allreduce``: ``comm.broadcast`` after the step;
``fedavg``: its model at the next round's start). ``mean`` averages what arrived
(``comm.upload_mean``). The server's ``center`` (the previous aggregate, where centered
clipping starts) and the momenta are part of the algorithm's state.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from gossip.errors import ConfigError
from gossip.options import non_negative
from gossip.registry import option
from gossip.robust.aggregators import AGGREGATORS, make_aggregator
from gossip.robust.attacks import adversary, inform_adversary

__all__ = ["RobustServerOptions", "buckets", "init_robust", "is_robust", "robust_aggregate"]


def _beta(v: float) -> str | None:
    return None if 0 <= v < 1 else "must be in [0, 1)"


@dataclass(frozen=True)
class RobustServerOptions:
    """``[algorithm]`` keys of the robust server (``allreduce``, ``fedavg``)."""

    aggregator: str = option("mean", "server's aggregation rule (gossip.robust.aggregators)",
                             choices=AGGREGATORS)
    aggregator_options: dict = option({}, "options of the aggregator, e.g. {f = 3} for krum")
    worker_momentum: float = option(0.0, "beta of the momentum m_i = (1 - beta) u_i + beta m_i "
                                    "the workers send instead of u_i", check=_beta)
    bucketing: int = option(0, "bucket size s: the rule sees the means of s randomly grouped "
                            "rows (0: off)", check=non_negative)

    def __post_init__(self) -> None:
        AGGREGATORS.config(self.aggregator, self.aggregator_options)
        if self.bucketing and self.aggregator == "mean":
            raise ConfigError(f"algorithm.bucketing={self.bucketing} has no effect with "
                              "algorithm.aggregator='mean'")


def is_robust(cfg: RobustServerOptions, comm) -> bool:
    """Whether the server path is needed: a rule other than the mean, worker momentum, or a
    Byzantine channel (the exact ring all-reduce does not pass the channel)."""
    return (cfg.aggregator != "mean" or cfg.worker_momentum > 0
            or adversary(comm.channel) is not None)


def init_robust(cfg: RobustServerOptions, X0: torch.Tensor, comm) -> tuple:
    """``(m, center)``: the hosted workers' momenta ``(b, d)`` and the server's previous
    aggregate ``(d,)``, zeros; ``()`` when the run does not need them."""
    if not is_robust(cfg, comm):
        return ()
    return (torch.zeros_like(X0), X0.new_zeros(X0.shape[1:]))


def buckets(rows: torch.Tensor, s: int, seed: int, t: int) -> torch.Tensor:
    """Bucketing (Karimireddy, He, Jaggi 2022, "Byzantine-Robust Learning on Heterogeneous
    Datasets via Bucketing", Algorithm 1): the ``k`` rows in a random order (seeded by
    ``(seed, t)``, the same on every process), cut into ``ceil(k / s)`` buckets of ``s``
    consecutive rows (the last one may be smaller), each replaced by its mean."""
    k = rows.shape[0]
    perm = np.random.default_rng([seed, t, 0xB0C7]).permutation(k)
    shuffled = rows[torch.as_tensor(perm, device=rows.device)]
    return torch.stack([shuffled[a : a + s].mean(0) for a in range(0, k, s)])


def robust_aggregate(
    cfg: RobustServerOptions, U: torch.Tensor, state: tuple, comm, row_bytes: int,
    senders: np.ndarray | None, t: int, mask: torch.Tensor | None = None, seed: int = 0,
) -> tuple[torch.Tensor, tuple]:
    """``(agg({m_i}), (m, center))`` for the uploads ``U`` (hosted block) of ``senders``
    (``None``: every node; ``mask`` the hosted senders' rows, for the momentum update;
    ``seed`` the run's, for bucketing)."""
    M, center = state
    beta = cfg.worker_momentum
    if beta > 0:
        new = (1 - beta) * U + beta * M
        M = new if mask is None else torch.where(mask.unsqueeze(1), new, M)
        U = M
    inform_adversary(comm, U, t, senders)
    if cfg.aggregator == "mean":
        out, _ = comm.upload_mean(U, row_bytes, senders, t)
    else:
        everyone = np.arange(comm.n) if senders is None else senders
        ids, rows, _ = comm.gather_rows(U, row_bytes, everyone, t)
        agg = make_aggregator(cfg.aggregator, cfg.aggregator_options)
        if cfg.bucketing > 1 and len(ids):
            rows = buckets(rows, cfg.bucketing, seed, t)
        out = agg(rows, center) if len(ids) else torch.zeros_like(center)
    return out, (M, out)
