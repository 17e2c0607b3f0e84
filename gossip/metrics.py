"""Metrics of a run: a timed communicator, the consensus distance, one record per evaluation.

A record (one line of ``metrics.jsonl``) holds ``round``, ``wall_time``, ``compute_time``,
``comm_time``, ``lr``, ``train_loss`` (mean over nodes of the round's losses),
``consensus_distance`` ``= 1/n sum_i ||x_i - x_bar||^2`` (Koloskova et al. 2020, the
quantity their rates bound), ``bytes_sent`` (all nodes so far), ``bytes_sent_per_node`` and
whatever ``problem.evaluate`` returns (``distance_to_optimum``, ``test_accuracy`` ...).
"""

from __future__ import annotations

import math
import time
from typing import Any

import numpy as np
import torch

from gossip.comm.base import Communicator, Delivery, Payload

__all__ = ["TimedComm", "consensus_distance", "finite", "make_record"]


class TimedComm(Communicator):
    """A communicator that adds the time spent inside ``inner``'s calls to ``seconds``.

    Every operation is delegated to ``inner`` (so its own ``mix`` and byte accounting are
    kept); ``paused`` stops the clock while the run loop measures metrics.
    """

    def __init__(self, inner: Communicator) -> None:
        self.inner = inner
        self.seconds = 0.0
        self.paused = False

    # attributes of the wrapped communicator
    placement = property(lambda self: self.inner.placement)
    rank = property(lambda self: self.inner.rank)
    size = property(lambda self: self.inner.size)

    @property
    def stats(self):
        return self.inner.stats

    @stats.setter
    def stats(self, value) -> None:
        self.inner.stats = value

    @property
    def channel(self):
        return self.inner.channel

    @channel.setter
    def channel(self, value) -> None:
        self.inner.channel = value

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def _timed(self, fn, *args):
        if self.paused:
            return fn(*args)
        start = time.perf_counter()
        try:
            return fn(*args)
        finally:
            self.seconds += time.perf_counter() - start

    def share(self, payload: Payload, W, t: int | None = None) -> Delivery:
        return self._timed(self.inner.share, payload, W, t)

    def mix(self, X: torch.Tensor, W, t: int | None = None) -> torch.Tensor:
        return self._timed(self.inner.mix, X, W, t)

    def exchange(self, messages, t: int | None = None):
        return self._timed(self.inner.exchange, messages, t)

    def upload_mean(self, X: torch.Tensor, row_bytes: int, senders=None, t: int | None = None):
        return self._timed(self.inner.upload_mean, X, row_bytes, senders, t)

    def gather_rows(self, X: torch.Tensor, row_bytes: int, senders, t: int | None = None):
        return self._timed(self.inner.gather_rows, X, row_bytes, senders, t)

    def broadcast(self, x: torch.Tensor, receivers=None) -> torch.Tensor:
        return self._timed(self.inner.broadcast, x, receivers)

    def allreduce_mean(self, X: torch.Tensor) -> torch.Tensor:
        return self._timed(self.inner.allreduce_mean, X)

    def allreduce_sum(self, x: torch.Tensor) -> torch.Tensor:
        return self._timed(self.inner.allreduce_sum, x)

    def sum_rows(self, X: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        return self._timed(self.inner.sum_rows, X, mask)

    def mean_rows(self, X: torch.Tensor) -> torch.Tensor:
        return self._timed(self.inner.mean_rows, X)

    def allgather_rows(self, X: torch.Tensor) -> torch.Tensor:
        return self._timed(self.inner.allgather_rows, X)

    def broadcast_object(self, obj, root: int = 0):
        return self._timed(self.inner.broadcast_object, obj, root)

    def barrier(self) -> None:
        return self._timed(self.inner.barrier)

    def abort(self, message: str, code: int = 1) -> None:
        return self.inner.abort(message, code)

    def total_stats(self):
        return self.inner.total_stats()

    def count_share(self, W, row_bytes: int) -> None:
        return self.inner.count_share(W, row_bytes)


def consensus_distance(X: torch.Tensor, comm: Communicator) -> float:
    """``1/n sum_i ||x_i - x_bar||^2`` over all nodes (collective; same on every rank).

    Computed in float64 so the value does not depend on how nodes are split over ranks
    beyond summation order.
    """
    X = X.reshape(X.shape[0], -1).to(torch.float64)
    x_bar = comm.mean_rows(X)
    local = ((X - x_bar) ** 2).sum().reshape(1)
    return float(comm.allreduce_sum(local)[0]) / comm.n


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
) -> dict[str, Any]:
    """One metrics line, in a fixed key order (problem metrics last)."""
    record: dict[str, Any] = {"round": round_}
    if epoch is not None:
        record["epoch"] = epoch
    record.update(
        wall_time=wall_time,
        compute_time=compute_time,
        comm_time=comm_time,
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
