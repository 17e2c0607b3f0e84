"""The per-round training loss and stop flags of the loop, with host syncs only where needed.

Every round ``t`` the loop needs two things from the node block's losses ``l_i(t)``: the mean
``L(t) = (sum_i l_i(t)) / n_loss`` (recorded at evaluation rounds; a NaN or infinite one ends
the run as diverged) and the stop flags every rank agrees on (:mod:`gossip.runner.interrupt`).

With peers (``comm.size > 1``) or on the CPU, :meth:`RoundLosses.push` does what the loop
always did: one ``allreduce_sum`` of ``[sum_i l_i, SIGINT flag, SIGTERM flag]`` per round, the
loss read on the host at once. That is free on the CPU and needed under MPI (the flags must be
agreed every round, and a non-CUDA-aware MPI stages through the host anyway).

In one process on a GPU (``comm.size == 1``, losses on a CUDA device) reading ``L(t)`` each
round would block the host until the GPU has finished the round (``float(tensor)`` is a device
synchronisation), so nothing can be queued ahead. There the flags are this process's own (an
allreduce over one process is the identity), and the loss sums stay on the device as 1-element
float64 tensors until :meth:`RoundLosses.flush`, which the loop calls at every record,
checkpoint, stop signal, the last round and after :data:`MAX_PENDING` rounds: one
``torch.cat(...).tolist()`` reads them all. The floats are the same as the per-round reads
(the same float64 sum, read exactly, divided by ``n_loss`` on the host), so records are
bit-identical. What differs: a divergence is found at the next flush, not in its round; the
rounds in between run on non-finite numbers and are discarded (the run still stops as
diverged at the first non-finite round, with that round's loss, and no checkpoint or record is
written after it).
"""

from __future__ import annotations

import math

import torch

from gossip.comm.base import Communicator
from gossip.runner.interrupt import StopSignals, agreed_signal

__all__ = ["MAX_PENDING", "RoundLosses"]

#: Most rounds whose loss stays unread on the device (bounds the work lost after a divergence).
MAX_PENDING = 32


class RoundLosses:
    """Per-round loss sums and agreed stop signals (see the module docstring).

    ``deferred`` (default: one process and a CUDA block) keeps the losses on their device until
    :meth:`flush`; it needs ``comm.size == 1``.
    """

    def __init__(self, comm: Communicator, n_loss: int, stop: StopSignals,
                 device: torch.device, deferred: bool | None = None) -> None:
        self.comm, self.n_loss, self.stop = comm, n_loss, stop
        if deferred is None:
            deferred = comm.size == 1 and torch.device(device).type == "cuda"
        if deferred and comm.size != 1:
            raise ValueError(f"deferred loss reads need one process, not {comm.size}")
        self.deferred = deferred
        self._pending: list[tuple[int, torch.Tensor | float]] = []
        #: ``(t, L(t))`` of the newest round read by :meth:`flush`.
        self.last: tuple[int, float] | None = None

    def push(self, t: int, losses: torch.Tensor) -> int:
        """Take round ``t``'s node losses; return the signal every rank stops for (0: none)."""
        local = losses.detach().to(torch.float64).sum().reshape(1)
        if self.deferred:
            self._pending.append((t, local))
            return agreed_signal(self.stop.flags())
        flags = torch.tensor(self.stop.flags(), dtype=torch.float64, device=local.device)
        summed = self.comm.allreduce_sum(torch.cat([local, flags]))
        self._pending.append((t, float(summed[0]) / self.n_loss))
        return agreed_signal(summed[1:].tolist())

    def due(self) -> bool:
        """Whether the loop must :meth:`flush` now even without a record or checkpoint."""
        return not self.deferred or len(self._pending) >= MAX_PENDING

    def flush(self) -> tuple[int, float] | None:
        """Read the pending losses; the first non-finite ``(t, L(t))``, else ``None``.

        ``last`` becomes the newest ``(t, L(t))`` (the first non-finite one on divergence).
        """
        if not self._pending:
            return None
        if self.deferred:
            sums = torch.cat([v for _, v in self._pending]).tolist()  # the one host sync
            values = [(t, s / self.n_loss) for (t, _), s in zip(self._pending, sums)]
        else:
            values = self._pending
        self._pending = []
        for t, loss in values:
            if not math.isfinite(loss):
                self.last = (t, loss)
                return self.last
        self.last = values[-1]
        return None
