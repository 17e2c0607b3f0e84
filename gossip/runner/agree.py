"""Errors met on some ranks, raised on every rank: no rank is left waiting in a collective.

A write fails on the rank that makes it (rank 0's ``metrics.jsonl``, one rank's checkpoint on a
full disk). :func:`raise_together` is a collective every rank calls after such a step with the
error it met (or ``None``): when any rank met one, every rank raises the first rank's error,
so all stop together with the same one line instead of the others hanging in their next
collective.
"""

from __future__ import annotations

import torch

from gossip.comm.base import Communicator
from gossip.errors import GossipError

__all__ = ["attempt", "raise_together"]


def attempt(fn, *args, **kwargs) -> GossipError | None:
    """``fn(*args, **kwargs)``; the :class:`~gossip.errors.GossipError` it raised, else None."""
    try:
        fn(*args, **kwargs)
    except GossipError as err:
        return err
    return None


def raise_together(comm: Communicator, error: GossipError | None) -> None:
    """Raise on every rank the error of the first rank that met one (collective).

    One ``allreduce`` of a flag per rank; only when a flag is set, the failing rank broadcasts
    its error. In one process: raise ``error`` when given.
    """
    if comm.size == 1:
        if error is not None:
            raise error
        return
    flags = torch.zeros(comm.size, dtype=torch.float64)
    flags[comm.rank] = float(error is not None)
    failed = torch.nonzero(comm.allreduce_sum(flags)).flatten().tolist()
    if not failed:
        return
    first = failed[0]
    raise comm.broadcast_object(error if comm.rank == first else None, root=first)
