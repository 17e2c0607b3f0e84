"""In-process communicator: every node lives in this one process (``P = 1``).

Nothing is sent, but every message is counted exactly as an MPI deployment with one node per
process would send it, so ``bytes_sent`` is honest in both modes.
"""

from __future__ import annotations

import copy
import sys

import numpy as np
import torch

from gossip.comm.base import (
    CommStats,
    Communicator,
    Delivery,
    Payload,
    payload_bytes,
    payload_row_bytes,
)
from gossip.comm.channel import deliver, deliver_messages
from gossip.comm.placement import Placement

__all__ = ["LocalComm"]


class LocalComm(Communicator):
    """All ``n`` nodes in one process; the embedded default."""

    def __init__(self, n: int) -> None:
        self.placement = Placement(n, 1)
        self.rank = 0
        self.size = 1
        self.stats = CommStats()

    def share(self, payload: Payload, W, t: int | None = None) -> Delivery:
        self.count_share(W, payload_row_bytes(payload))
        ids = np.arange(self.n, dtype=np.int64)
        return deliver(self.channel, self.nodes, ids, tuple(payload), W, t)

    def exchange(
        self, messages: dict[tuple[int, int], Payload], t: int | None = None
    ) -> dict[tuple[int, int], Payload]:
        for (src, dst), msg in messages.items():
            if src != dst:
                self.stats.messages += 1
                self.stats.bytes_sent += payload_bytes(msg)
        return deliver_messages(self.channel, dict(messages), t)

    def allreduce_sum(self, x: torch.Tensor) -> torch.Tensor:
        return x.clone()

    def allgather_rows(self, X: torch.Tensor) -> torch.Tensor:
        return X.clone()

    def broadcast_object(self, obj, root: int = 0):
        return copy.deepcopy(obj)

    def barrier(self) -> None:
        return None

    def abort(self, message: str, code: int = 1) -> None:
        print(message, file=sys.stderr, flush=True)
        raise SystemExit(code)
