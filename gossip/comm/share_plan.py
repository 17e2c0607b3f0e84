"""Which rows each rank sends to which in one gossip exchange (:class:`SharePlan`).

For ``x_i <- sum_j W[i, j] x_j`` with nodes in contiguous blocks (:class:`Placement`), rank
``r`` sends rank ``R`` the rows ``{ j in block(r) : W[i, j] != 0 for some i in block(R) }``.
The plan depends only on W's nonzero pattern and is pure numpy (no MPI): every rank computes
its own from the same ``W`` and the plans agree. :mod:`gossip.comm.mpi` caches and uses them.
"""

from __future__ import annotations

import hashlib
from typing import NamedTuple

import numpy as np
import scipy.sparse as sp

from gossip.comm.placement import Placement

__all__ = ["SharePlan", "pattern_key", "share_plan"]


class SharePlan(NamedTuple):
    """Who sends which rows to whom in one :meth:`MPIComm.share` of a nonzero pattern.

    Attributes
    ----------
    ids : ndarray of int64
        ``senders_to(W, nodes)``: sorted ids of the rows the hosted nodes need.
    local_offset : int
        Position in ``ids`` of the first hosted node (hosted rows are contiguous in ``ids``).
    send : tuple of (rank, ndarray)
        For every peer rank that needs hosted rows: the *local* row indices (sorted) to send.
    recv : tuple of (rank, count, offset)
        For every peer rank that sends rows here: how many, and where they start in ``ids``.
    messages : int
        Node-to-node messages sent by hosted nodes: off-diagonal nonzeros in hosted columns.
    """

    ids: np.ndarray
    local_offset: int
    send: tuple[tuple[int, np.ndarray], ...]
    recv: tuple[tuple[int, int, int], ...]
    messages: int


def share_plan(W: sp.csr_array, placement: Placement, rank: int) -> SharePlan:
    """The :class:`SharePlan` of ``rank`` for the nonzero pattern of ``W`` (``n x n`` CSR).

    Every rank computes its plan from the same ``W``, so what rank ``r`` sends to ``R``
    (columns of ``r``'s block that appear in rows of ``R``'s block) is exactly what ``R``
    expects from ``r``. Vectorised over the stored entries: ``O(nnz)``.
    """
    n = placement.n
    block = placement.block(rank)
    lo, hi = block.start, block.stop
    indptr = W.indptr.astype(np.int64)
    rows = np.repeat(np.arange(n, dtype=np.int64), np.diff(indptr))
    cols = W.indices.astype(np.int64)

    # what the other ranks' nodes need from the hosted columns
    mine = (cols >= lo) & (cols < hi)
    messages = int(np.count_nonzero(mine & (rows != cols)))
    r_owner = placement.owners(rows[mine])
    away = r_owner != rank
    keys = np.unique(r_owner[away] * n + cols[mine][away])
    peers, local = keys // n, keys % n - lo
    bounds = np.searchsorted(peers, np.arange(placement.size + 1))
    send = tuple(
        (int(R), local[bounds[R] : bounds[R + 1]])
        for R in range(placement.size)
        if bounds[R + 1] > bounds[R]
    )

    # what the hosted nodes need from the other ranks
    row_cols = cols[indptr[lo] : indptr[hi]]
    remote = np.unique(row_cols[(row_cols < lo) | (row_cols >= hi)])
    ids = np.union1d(remote, np.arange(lo, hi, dtype=np.int64))
    owners = placement.owners(remote)
    starts = placement.starts
    recv = tuple(
        (int(R), int(np.count_nonzero(owners == R)), int(np.searchsorted(ids, starts[R])))
        for R in range(placement.size)
        if R != rank and np.any(owners == R)
    )
    return SharePlan(ids, int(np.searchsorted(ids, lo)), send, recv, messages)


def pattern_key(W: sp.csr_array) -> bytes:
    """A 20-byte digest of ``W``'s shape and nonzero pattern (values ignored): plans are
    cached under it, so every ``W(t)`` with the same pattern reuses one plan."""
    h = hashlib.blake2b(digest_size=20)
    h.update(np.asarray(W.shape, dtype=np.int64).tobytes())
    h.update(W.indptr.astype(np.int64).tobytes())
    h.update(W.indices.astype(np.int64).tobytes())
    return h.digest()
