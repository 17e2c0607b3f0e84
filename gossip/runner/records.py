"""Metrics of a run: the consensus distance and one record per evaluation.

A record (one line of ``metrics.jsonl``) holds ``round``, ``wall_time``, ``compute_time``,
``comm_time``, ``sim_time`` (with a ``[time]`` section), ``lr``, ``train_loss`` (mean over
nodes of the round's losses),
``consensus_distance`` ``= 1/n sum_i ||x_i - x_bar||^2`` (Koloskova et al. 2020, the
quantity their rates bound), ``bytes_sent`` (all nodes so far), ``bytes_sent_per_node`` and
whatever ``problem.evaluate`` returns (``distance_to_optimum``, ``test_accuracy`` ...).

Under an ``[attack]`` (``problem.honest`` set) ``train_loss`` and ``consensus_distance`` are
over the honest nodes ``H`` only (``1/|H| sum_{i in H}``, ``x_bar`` their mean), like the
problem's metrics; ``bytes_sent`` still counts every sender.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch

from gossip.comm.base import Communicator

__all__ = ["consensus_distance", "finite", "honest_rows", "make_record"]


def honest_rows(honest: np.ndarray | None, nodes: range, device) -> torch.Tensor | None:
    """The mask of the hosted ``nodes`` that are honest (``None``: no attack, every node)."""
    if honest is None:
        return None
    here = honest[(honest >= nodes.start) & (honest < nodes.stop)] - nodes.start
    mask = torch.zeros(len(nodes), dtype=torch.bool, device=device)
    mask[torch.as_tensor(here, dtype=torch.long, device=device)] = True
    return mask


def consensus_distance(X: torch.Tensor, comm: Communicator,
                       honest: np.ndarray | None = None) -> float:
    """``1/n sum_i ||x_i - x_bar||^2`` over all nodes (collective; same on every rank), or over
    the ``honest`` ids only (their own mean ``x_bar``).

    Computed in float64 so the value does not depend on how nodes are split over ranks
    beyond summation order.
    """
    X = X.reshape(X.shape[0], -1).to(torch.float64)
    mask = honest_rows(honest, comm.nodes, X.device)
    if mask is None:
        x_bar = comm.mean_rows(X)
        local = ((X - x_bar) ** 2).sum().reshape(1)
        return float(comm.allreduce_sum(local)[0]) / comm.n
    x_bar = comm.sum_rows(X, mask) / len(honest)
    local = ((X[mask] - x_bar) ** 2).sum().reshape(1)
    return float(comm.allreduce_sum(local)[0]) / len(honest)


def finite(x: float | None) -> bool:
    """True for a finite float (None counts as finite: nothing measured)."""
    return x is None or math.isfinite(x)


def make_record(
    *,
    round_: int,
    wall_time: float,
    comm_time: float,
    compute_time: float,
    lr: float,
    train_loss: float,
    consensus: float,
    bytes_sent: int,
    n: int,
    evaluation: dict[str, Any],
    epoch: float | None = None,
    sim_time: float | None = None,
) -> dict[str, Any]:
    """One metrics line, in a fixed key order (problem metrics last); ``sim_time`` (the
    ``[time]`` model's seconds, :mod:`gossip.network.sim_time`) only when given."""
    record: dict[str, Any] = {"round": round_}
    if epoch is not None:
        record["epoch"] = epoch
    record.update(
        wall_time=wall_time,
        compute_time=compute_time,
        comm_time=comm_time,
    )
    if sim_time is not None:
        record["sim_time"] = sim_time
    record.update(
        lr=lr,
        train_loss=train_loss,
        consensus_distance=consensus,
        bytes_sent=bytes_sent,
        bytes_sent_per_node=bytes_sent / n,
    )
    for key, value in evaluation.items():
        record.setdefault(key, _plain(value))
    return record


def _plain(value: Any) -> Any:
    if isinstance(value, torch.Tensor):
        return value.tolist() if value.numel() != 1 else value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    return value
