"""A communicator that measures the time spent communicating (the run's ``comm_time``).

:class:`TimedComm` wraps any :class:`~gossip.comm.base.Communicator` and delegates every
operation to it, adding the seconds spent inside each call to ``seconds``; the run loop
pauses it while it evaluates metrics, so ``comm_time`` counts only the algorithm's rounds.
"""

from __future__ import annotations

import time
from typing import Any

import torch

from gossip.comm.base import Communicator, Delivery, Payload

__all__ = ["TimedComm"]


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

    def upload_sum(self, X: torch.Tensor, row_bytes: int, senders, t: int | None = None):
        return self._timed(self.inner.upload_sum, X, row_bytes, senders, t)

    def count_messages(self, senders, row_bytes: int, down: bool = False) -> None:
        return self.inner.count_messages(senders, row_bytes, down)

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
