"""The communicator interface: the only code that knows about processes.

All operations act on *blocks*: tensors whose leading axis runs over the nodes hosted by this
process (``comm.nodes``, a contiguous ``range``). A *payload* is a tuple of tensors that all
share that leading row axis (row ``k`` of every tensor belongs to node ``nodes[k]``); a
compressor encodes a block into a payload and decodes it back, and the communicator moves rows
of payloads between processes without looking inside them.

Mixing convention: ``x_i <- sum_j W[i, j] x_j``; node ``j`` *sends* to node ``i`` exactly when
``W[i, j] != 0`` and ``i != j``.

Byte accounting (``CommStats``):

- ``bytes_sent``: the bytes of every node-to-node message, counted as if each node were its own
  process (what a real deployment would send). It does not depend on the placement, so a run
  reports the same number in process and under ``mpiexec``.
- ``mpi_bytes_sent``: the bytes this process actually handed to MPI (0 in process).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass

import numpy as np
import torch

from gossip.comm.mixing import apply_rows, messages_from
from gossip.placement import Placement

__all__ = [
    "CommStats",
    "Communicator",
    "Payload",
    "payload_bytes",
    "payload_row_bytes",
]

Payload = tuple[torch.Tensor, ...]


@dataclass
class CommStats:
    """Counters of what this process sent (sum over ranks with ``Communicator.total_stats``)."""

    bytes_sent: int = 0
    mpi_bytes_sent: int = 0
    messages: int = 0

    def as_dict(self) -> dict[str, int]:
        return {
            "bytes_sent": self.bytes_sent,
            "mpi_bytes_sent": self.mpi_bytes_sent,
            "messages": self.messages,
        }


def payload_row_bytes(payload: Payload) -> int:
    """Bytes of one row of a payload (every tensor's row, summed)."""
    return sum(t[0].numel() * t.element_size() if t.shape[0] else 0 for t in payload)


def payload_bytes(payload: Payload) -> int:
    """Bytes of a whole payload (every tensor, summed)."""
    return sum(t.numel() * t.element_size() for t in payload)


class Communicator(ABC):
    """Moves rows of node blocks between the processes of a run.

    Attributes
    ----------
    placement : Placement
        Which process hosts which contiguous block of nodes.
    rank, size : int
        This process and the number of processes.
    stats : CommStats
        What this process sent so far.
    """

    placement: Placement
    rank: int
    size: int
    stats: CommStats

    @property
    def n(self) -> int:
        """Total number of nodes."""
        return self.placement.n

    @property
    def nodes(self) -> range:
        """The nodes hosted by this process."""
        return self.placement.block(self.rank)

    # -- neighbour communication ---------------------------------------------------------
    @abstractmethod
    def share(self, payload: Payload, W) -> tuple[np.ndarray, Payload]:
        """Send each hosted node's payload row to every node that mixes it under ``W``.

        Collective: every process calls it with the same ``W`` (an ``n x n`` scipy sparse
        matrix; only its nonzero pattern matters here). Each off-diagonal nonzero ``W[i, j]``
        with ``j`` hosted here is one node-to-node message of one payload row, counted in
        ``stats.bytes_sent``.

        Returns
        -------
        ids : ndarray of int64
            ``senders_to(W, self.nodes)`` (:mod:`gossip.comm.mixing`): the sorted ids of
            every node whose row the hosted nodes need, hosted nodes included.
        rows : Payload
            The payload rows of those nodes, in the order of ``ids``.
        """

    def mix(self, X: torch.Tensor, W) -> torch.Tensor:
        """Rows ``i in nodes`` of ``W @ X``: ``x_i <- sum_j W[i, j] x_j``.

        ``X`` is the hosted block ``(b, *shape)``. Remote rows travel uncompressed (their own
        dtype); compressed gossip goes through :meth:`share` with an encoded payload.
        """
        ids, (rows,) = self.share((X,), W)
        return apply_rows(W, self.nodes, ids, rows)

    @abstractmethod
    def exchange(self, messages: dict[tuple[int, int], Payload]) -> dict[tuple[int, int], Payload]:
        """Deliver point-to-point messages along edges.

        Collective: every process calls it (possibly with no messages). ``messages`` maps
        ``(src, dst)`` to a payload (any tensors, no shared row axis needed); every ``src`` must
        be hosted here. Returns every message whose ``dst`` is hosted here, keyed the same way.
        Each message counts its bytes in ``stats.bytes_sent`` (``src == dst`` is free).
        """

    # -- collectives -----------------------------------------------------------------------
    @abstractmethod
    def allreduce_sum(self, x: torch.Tensor) -> torch.Tensor:
        """Elementwise sum of ``x`` over processes (``x`` itself in process)."""

    def sum_rows(self, X: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """Sum over *all* nodes of their rows (optionally only rows where ``mask`` is true).

        Used for the node average ``x_bar`` and for metrics; not counted as gossip bytes.
        """
        local = X.sum(0) if mask is None else X[mask].sum(0)
        return self.allreduce_sum(local)

    def mean_rows(self, X: torch.Tensor) -> torch.Tensor:
        """The average over all ``n`` nodes of their rows: ``x_bar = 1/n sum_i x_i``."""
        return self.sum_rows(X) / self.n

    @abstractmethod
    def allgather_rows(self, X: torch.Tensor) -> torch.Tensor:
        """Every node's row on every process, ``(n, *shape)``: for checkpoints and tests only."""

    @abstractmethod
    def broadcast_object(self, obj, root: int = 0):
        """``obj`` from ``root`` on every process (pickled; small objects only)."""

    @abstractmethod
    def barrier(self) -> None:
        """Wait for every process."""

    @abstractmethod
    def abort(self, message: str, code: int = 1) -> None:
        """End every process of the run now, with ``message`` on stderr and exit ``code``."""

    def total_stats(self) -> CommStats:
        """``stats`` summed over processes (collective)."""
        v = torch.tensor(
            [self.stats.bytes_sent, self.stats.mpi_bytes_sent, self.stats.messages],
            dtype=torch.float64,
        )
        s = self.allreduce_sum(v)
        return CommStats(int(s[0]), int(s[1]), int(s[2]))

    def count_share(self, W, row_bytes: int) -> None:
        """Add the node-to-node messages of one :meth:`share` of ``W`` to ``stats``.

        Hosted node ``j`` sends one row to every ``i != j`` with ``W[i, j] != 0``.
        """
        count = messages_from(W, self.nodes)
        self.stats.messages += count
        self.stats.bytes_sent += count * row_bytes
