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

The centralized modes talk to a server through counted collectives: :meth:`~Communicator.
upload_mean` and :meth:`~Communicator.gather_rows` (each sender's payload row up, one message),
:meth:`~Communicator.broadcast` (the server's vector down to each receiver, one message) and
:meth:`~Communicator.allreduce_mean` (counted as a ring all-reduce); :meth:`~Communicator.
upload_sum` sums the uploads and :meth:`~Communicator.count_messages` counts messages a
simulated protocol does not carry. Algorithms never write
``stats`` themselves.

Every node-to-node and node-to-server message passes through the communicator's ``channel``
(:mod:`gossip.comm.channel`; the identity by default), which may drop it or replace its payload;
calls take the round ``t`` for its decisions.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass

import numpy as np
import torch

from gossip.comm.channel import IDENTITY, Channel, Delivery, repair_mix, upload_rows
from gossip.comm.mixing import apply_rows, messages_from
from gossip.comm.placement import Placement

__all__ = [
    "CommStats",
    "Communicator",
    "Delivery",
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
    channel : Channel
        What happens to messages on the way (:mod:`gossip.comm.channel`); set it in code,
        e.g. ``comm.channel = DropChannel(0.1, seed=3)``. Default: the identity.
    """

    placement: Placement
    rank: int
    size: int
    stats: CommStats
    channel: Channel = IDENTITY

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
    def share(self, payload: Payload, W, t: int | None = None) -> Delivery:
        """Send each hosted node's payload row to every node that mixes it under ``W``.

        Collective: every process calls it with the same ``W`` (an ``n x n`` scipy sparse
        matrix; only its nonzero pattern matters here). Each off-diagonal nonzero ``W[i, j]``
        with ``j`` hosted here is one node-to-node message of one payload row, counted in
        ``stats.bytes_sent`` (also when the channel loses it). ``t`` is the round, needed by a
        channel other than the identity.

        Returns
        -------
        Delivery
            ``ids``: ``senders_to(W, self.nodes)`` (:mod:`gossip.comm.mixing`), the sorted ids
            of every node whose row the hosted nodes need, hosted nodes included; ``rows``:
            their payload rows as sent, in the order of ``ids``; ``failed`` / ``replaced``
            (+ ``replaced_rows``): the messages to hosted nodes that the channel lost or
            changed (empty for the identity).
        """

    def mix(self, X: torch.Tensor, W, t: int | None = None) -> torch.Tensor:
        """Rows ``i in nodes`` of ``W @ X``: ``x_i <- sum_j W[i, j] x_j``.

        ``X`` is the hosted block ``(b, *shape)``. Remote rows travel uncompressed (their own
        dtype); compressed gossip goes through :meth:`share` with an encoded payload. A message
        ``j -> i`` the channel lost gives its weight to the diagonal (``W_ij x_i``); a replaced
        one enters with its replaced row (:func:`~gossip.comm.channel.repair_mix`).
        """
        got = self.share((X,), W, t)
        Y = apply_rows(W, self.nodes, got.ids, got.rows[0])
        return Y if got.complete else repair_mix(Y, W, self.nodes, X, got)

    @abstractmethod
    def exchange(
        self, messages: dict[tuple[int, int], Payload], t: int | None = None
    ) -> dict[tuple[int, int], Payload]:
        """Deliver point-to-point messages along edges.

        Collective: every process calls it (possibly with no messages). ``messages`` maps
        ``(src, dst)`` to a payload (any tensors, no shared row axis needed); every ``src`` must
        be hosted here. Returns every message whose ``dst`` is hosted here and that arrived
        (a message the channel lost is absent; a replaced one carries its new payload), keyed
        the same way. Each message counts its bytes in ``stats.bytes_sent`` (``src == dst`` is
        free and never passes the channel).
        """

    # -- the server of the centralized modes (counted collectives) -----------------------
    def upload_mean(
        self,
        X: torch.Tensor,
        row_bytes: int,
        senders: np.ndarray | None = None,
        t: int | None = None,
    ) -> tuple[torch.Tensor, np.ndarray]:
        """Every sender uploads its row to a server, which averages what arrived.

        ``X`` is the hosted block ``(b, d)``; ``senders`` the sorted ids of the sending nodes
        (the same on every process; ``None``: every node). Returns ``(mean, failed)``:
        ``1/|A| sum_{i in A} x_i`` over the senders ``A`` whose upload arrived (zeros when none
        did) on every process, and the sorted ids of the senders whose upload was lost. Each
        hosted sender sends one message of ``row_bytes`` (the size of its encoded row: the
        channel sees and replaces the decoded row ``x_i``, what the server averages).
        """
        self._count_senders(senders, row_bytes)
        rows, mask, failed, arrived = upload_rows(self.channel, self.nodes, self.n, X, senders, t)
        total = self.sum_rows(rows, mask)
        return (total / arrived if arrived else torch.zeros_like(total)), failed

    def upload_sum(
        self, X: torch.Tensor, row_bytes: int, senders: np.ndarray, t: int | None = None
    ) -> tuple[torch.Tensor, np.ndarray]:
        """Every sender uploads its row to a server, which sums what arrived (no division):
        ``(sum_{i in A} x_i, failed)`` on every process. Counted like :meth:`upload_mean`.
        An integer block sums exactly (secure aggregation's int64 rows: the caller keeps the
        sum within range and reduces it modulo its ring)."""
        self._count_senders(senders, row_bytes)
        rows, mask, failed, _ = upload_rows(self.channel, self.nodes, self.n, X, senders, t)
        return self.sum_rows(rows, mask), failed

    def count_messages(self, senders: np.ndarray | None, row_bytes: int,
                       down: bool = False) -> None:
        """Count one message of ``row_bytes`` per hosted node of ``senders`` (``None``: every
        node), to the server (``down``: from it), without moving anything: the messages of a
        protocol the simulation computes in place (secure aggregation's key agreement and
        secret shares, :mod:`gossip.privacy.secure_aggregation`)."""
        self._count_senders(senders, row_bytes)

    def gather_rows(
        self, X: torch.Tensor, row_bytes: int, senders: np.ndarray, t: int | None = None
    ) -> tuple[np.ndarray, torch.Tensor, np.ndarray]:
        """Every sender uploads its row to a server, which keeps the rows apart (robust
        aggregation needs them one by one).

        Returns ``(ids, rows, failed)`` on every process: the sorted ids of the senders whose
        upload arrived, their rows ``(len(ids), d)`` as the server received them, and the ids
        of the senders whose upload was lost. Counted like :meth:`upload_mean`.
        """
        senders = np.asarray(senders, dtype=np.int64)
        self._count_senders(senders, row_bytes)
        rows, _, failed, _ = upload_rows(self.channel, self.nodes, self.n, X, senders, t)
        ids = np.setdiff1d(senders, failed)
        every = self.allgather_rows(rows)
        return ids, every[torch.as_tensor(ids, dtype=torch.long, device=every.device)], failed

    def broadcast(self, x: torch.Tensor, receivers: np.ndarray | None = None) -> torch.Tensor:
        """The server sends the vector ``x`` (the same on every process) to every node of
        ``receivers`` (sorted ids; ``None``: every node); returns ``x``. One message of
        ``x``'s bytes per hosted receiver. Downloads do not pass the channel."""
        self._count_senders(receivers, x.numel() * x.element_size())
        return x

    def allreduce_mean(self, X: torch.Tensor) -> torch.Tensor:
        """``x_bar = 1/n sum_i x_i`` on every process, counted as a ring all-reduce.

        Ring all-reduce (Patarasuk & Yuan, 2009): the vector is cut into ``n`` chunks
        (``numpy.array_split`` sizes); in reduce-scatter and in all-gather node ``i`` sends
        every chunk but its own once, ``2 (d - d_i)`` values and ``2 (n - 1)`` messages per
        node, ``2 (n - 1) / n * d`` values per node on average. An exact collective: the
        channel does not apply (a lost chunk would break every node's result).
        """
        n, nodes = self.n, self.nodes
        row = X.reshape(X.shape[0], -1)
        dim = row.shape[1]
        chunk = np.array([len(c) for c in np.array_split(np.arange(dim), n)], dtype=np.int64)
        values = int(2 * (dim * len(nodes) - chunk[nodes.start : nodes.stop].sum()))
        self.stats.bytes_sent += values * X.element_size()
        self.stats.messages += 2 * (n - 1) * len(nodes)
        return self.mean_rows(X)

    def _count_senders(self, senders: np.ndarray | None, row_bytes: int) -> None:
        """One message of ``row_bytes`` per hosted node of ``senders`` (``None``: all)."""
        nodes = self.nodes
        if senders is None:
            count = len(nodes)
        else:
            s = np.asarray(senders)
            count = int(np.count_nonzero((s >= nodes.start) & (s < nodes.stop)))
        self.stats.messages += count
        self.stats.bytes_sent += count * int(row_bytes)

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
