"""MPI communicator: the nodes of a run spread over the ranks of an ``mpiexec`` launch.

Rank ``r`` hosts the contiguous block ``Placement(n, P).block(r)`` and exchanges with another
rank only the rows that rank's nodes mix, never the whole model. For a gossip step
``x_i <- sum_j W[i, j] x_j`` (the mixing convention of :mod:`gossip.comm.base`), rank ``r``
sends to rank ``R`` the rows

    S(r -> R) = { j in block(r) : W[i, j] != 0 for some i in block(R) },

one contiguous byte buffer per peer rank holding the selected rows of every payload tensor
(``Isend`` / ``Irecv``, receives posted first). The per-peer row lists depend only on W's
nonzero pattern, so they are computed once per pattern and cached: a static topology pays for
them once, a time-varying schedule once per distinct ``W(t)`` pattern (LRU of
``PLAN_CACHE_SIZE`` patterns).

Results equal :class:`gossip.comm.local.LocalComm`'s up to float summation order, and
``stats.bytes_sent`` / ``stats.messages`` summed over ranks equal LocalComm's exactly, for any
placement. ``stats.mpi_bytes_sent`` counts the data buffers of :meth:`share` and
:meth:`exchange` handed to MPI (the gossip traffic between ranks); the small collectives
(``allreduce_sum``, ``allgather_rows``, broadcasts, exchange headers) are not counted.

Tensors travel as raw bytes, so every dtype works (bfloat16, float16, packed uint8, int
indices, ...). CUDA tensors go through :mod:`gossip.comm.device`: straight to MPI when the
library reports CUDA support, else staged through pinned host memory.

Only this module and :mod:`gossip.comm.factory` import ``mpi4py``.
"""

from __future__ import annotations

import sys
from collections import OrderedDict

import numpy as np
import scipy.sparse as sp
import torch
from mpi4py import MPI

from gossip.comm import device as dev
from gossip.comm.base import (
    CommStats,
    Communicator,
    Delivery,
    Payload,
    payload_bytes,
    payload_row_bytes,
)
from gossip.comm.channel import deliver, deliver_messages
from gossip.comm.mixing import accumulation_dtype, apply_rows, remember
from gossip.comm.mixing_ops import RowsOperator, add_rows, rows_operator
from gossip.comm.placement import Placement
from gossip.comm.share_plan import SharePlan, pattern_key, share_plan

__all__ = ["PLAN_CACHE_SIZE", "MPIComm", "SharePlan", "share_plan"]

PLAN_CACHE_SIZE = 256
_BY_ID_SIZE = 16  # W objects remembered by identity (each entry holds W alive)
_TAG_SHARE = 11
_TAG_EXCHANGE = 12


def _as_bytes(t: torch.Tensor) -> torch.Tensor:
    """The raw bytes of ``t`` as a flat ``uint8`` tensor on ``t``'s device."""
    return t.contiguous().reshape(-1).view(torch.uint8)


def _from_bytes(buf: torch.Tensor, start: int, dtype: torch.dtype, shape: tuple) -> torch.Tensor:
    """Reinterpret ``buf[start : start + nbytes]`` as a tensor of ``dtype`` and ``shape``."""
    nbytes = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    seg = buf[start : start + nbytes]
    if start % dtype.itemsize:  # unaligned: torch views need the offset aligned to the dtype
        seg = seg.clone()
    return seg.view(dtype).reshape(shape)


def _byte_rows(t: torch.Tensor) -> np.ndarray:
    """A NumPy ``(rows, row bytes)`` uint8 view of a contiguous CPU tensor (any dtype)."""
    per_row = int(np.prod(t.shape[1:], dtype=np.int64))
    return t.detach().reshape(t.shape[0], per_row).view(torch.uint8).numpy()


def _select_rows(t: torch.Tensor, local: np.ndarray) -> torch.Tensor:
    """Rows ``local`` (sorted, distinct) of ``t``: a view when they are a contiguous range."""
    if local[-1] - local[0] + 1 == len(local):
        return t[int(local[0]) : int(local[-1]) + 1]
    return t.index_select(0, torch.from_numpy(local).to(t.device))


def _recv_device(kind: str) -> torch.device:
    if kind == "cuda" and torch.cuda.is_available():
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


class MPIComm(Communicator):
    """The nodes of a run spread over MPI ranks as contiguous blocks.

    Parameters
    ----------
    n : int
        Total number of nodes; a :class:`~gossip.errors.ConfigError` if fewer than ranks.
    comm : mpi4py communicator, optional
        The ranks to use. Default: a ``Dup()`` of ``MPI.COMM_WORLD``, so this communicator's
        messages never match a user's.
    """

    def __init__(self, n: int, comm=None) -> None:
        self.mpi = MPI.COMM_WORLD.Dup() if comm is None else comm
        self.rank = int(self.mpi.Get_rank())
        self.size = int(self.mpi.Get_size())
        self.placement = Placement(n, self.size)
        self.stats = CommStats()
        self.cuda_aware = dev.cuda_aware(MPI)
        self._nodes = self.placement.block(self.rank)
        self._plans: OrderedDict[bytes, SharePlan] = OrderedDict()
        self._by_id: dict[int, tuple[object, SharePlan]] = {}
        self._recv_bufs: dict[int, torch.Tensor] = {}
        self._mix_rows: torch.Tensor | None = None
        self._remote_ops: dict[tuple, tuple[object, tuple]] = {}

    @property
    def nodes(self) -> range:
        """The nodes hosted by this rank (computed once: the placement never changes)."""
        return self._nodes

    # -- neighbour communication ---------------------------------------------------------
    def plan(self, W) -> SharePlan:
        """The (cached) :class:`SharePlan` of this rank for ``W``'s nonzero pattern.

        The same ``W`` object coming back (a static topology, every round) is found by
        ``id(W)`` before any conversion or hashing; the entry holds ``W`` itself, so its id
        cannot be reused by another matrix while the entry lives. A new object with a known
        nonzero pattern (a time-varying schedule's ``W(t)``) reuses the plan of that pattern.
        """
        hit = self._by_id.get(id(W))
        if hit is not None and hit[0] is W:
            return hit[1]
        A = sp.csr_array(W)
        if A.shape != (self.n, self.n):
            raise ValueError(f"W must be {self.n} x {self.n}, got {A.shape[0]} x {A.shape[1]}")
        key = pattern_key(A)
        plan = self._plans.get(key)
        if plan is None:
            plan = share_plan(A, self.placement, self.rank)
            self._plans[key] = plan
            if len(self._plans) > PLAN_CACHE_SIZE:
                self._plans.popitem(last=False)
        else:
            self._plans.move_to_end(key)
        remember(self._by_id, id(W), (W, plan), _BY_ID_SIZE)
        return plan

    def share(self, payload: Payload, W, t: int | None = None) -> Delivery:
        payload = tuple(payload)
        plan = self.plan(W)
        self._check_rows(payload)
        out = tuple(
            torch.empty((len(plan.ids),) + tuple(t.shape[1:]), dtype=t.dtype, device=t.device)
            for t in payload
        )
        self._gather(payload, plan, out)
        return deliver(self.channel, self.nodes, plan.ids, out, W, t)

    def mix(self, X: torch.Tensor, W, t: int | None = None) -> torch.Tensor:
        """Rows ``i in nodes`` of ``W @ X`` (see :meth:`Communicator.mix`).

        Split as ``y_i = sum_{j hosted} W_ij x_j + sum_{j remote} W_ij x_j``: the hosted part
        (:func:`~gossip.comm.mixing.apply_rows` on ``X`` itself, no copy of the hosted rows) is
        computed while the remote rows travel; they are received into an internal buffer reused
        by the next call of the same shape and dtype (on the CPU only: on a GPU, kernels of
        the previous call may still be reading it), and added, in place, only to the rows that
        have remote neighbours. Both parts are summed in
        :func:`~gossip.comm.mixing.accumulation_dtype` and rounded once, as in process. The
        result is always a new tensor. With a channel other than the
        identity, the generic :meth:`Communicator.mix` (share, then repair what it changed).
        """
        if not self.channel.is_identity:
            return Communicator.mix(self, X, W, t)
        plan = self.plan(W)
        self._check_rows((X,))
        if not X.is_floating_point() or (X.device.type != "cpu" and not self.cuda_aware):
            got = self.share((X,), W)
            return apply_rows(W, self.nodes, got.ids, got.rows[0])
        X = X.contiguous()
        b, lo = len(self.nodes), plan.local_offset
        shape = (len(plan.ids) - b,) + tuple(X.shape[1:])
        on_cpu = X.device.type == "cpu"
        remote = self._mix_rows
        if not (on_cpu and remote is not None and remote.shape == shape
                and remote.dtype == X.dtype):
            remote = torch.empty(shape, dtype=X.dtype, device=X.device)
            if on_cpu:
                self._mix_rows = remote  # one buffer: the shape a run mixes every round
        self._count(plan, (X,))
        requests, keep = [], []
        if on_cpu:  # byte rows as NumPy views: slicing them costs no torch call
            into, rows = _byte_rows(remote), _byte_rows(X)
        for R, count, offset in plan.recv:
            at = offset if offset < lo else offset - b
            if on_cpu:
                buf = into[at : at + count]
            else:
                buf = dev.mpi_view(_as_bytes(remote[at : at + count]))
            requests.append(self.mpi.Irecv([buf, MPI.BYTE], R, _TAG_SHARE))
        for R, local in plan.send:
            if on_cpu and local[-1] - local[0] + 1 == len(local):
                buf = rows[int(local[0]) : int(local[-1]) + 1]
            else:
                buf = dev.mpi_view(
                    dev.send_buffer(_as_bytes(_select_rows(X, local)), self.cuda_aware)
                )
            keep.append(buf)
            self.stats.mpi_bytes_sent += buf.nbytes
            requests.append(self.mpi.Isend([buf, MPI.BYTE], R, _TAG_SHARE))
        # while the messages travel; summed in float64 with the remote part, then rounded once
        work = accumulation_dtype(X.dtype, X.device)
        Y = apply_rows(W, self.nodes, plan.ids[lo : lo + b], X.to(work))
        MPI.Request.Waitall(requests)
        if shape[0]:
            op = self._remote_operator(W, plan, work, X.device)
            Y = add_rows(Y, op, remote.to(work))
        return Y.to(X.dtype)

    def _remote_operator(self, W, plan: SharePlan, dtype: torch.dtype, device) -> RowsOperator:
        """The :class:`RowsOperator` of ``W``'s hosted rows on the remote columns of
        ``plan.ids``, cached with the ``W`` object."""
        key = (id(W), dtype, str(device))
        hit = self._remote_ops.get(key)
        if hit is not None and hit[0] is W:
            return hit[1]
        b, lo = len(self.nodes), plan.local_offset
        remote_ids = np.concatenate([plan.ids[:lo], plan.ids[lo + b :]])
        op = rows_operator(W, dtype, device, self.nodes, remote_ids)
        remember(self._remote_ops, key, (W, op), _BY_ID_SIZE)
        return op

    def _check_rows(self, payload: Payload) -> None:
        b = len(self.nodes)
        for t in payload:
            if t.dim() == 0 or t.shape[0] != b:
                raise ValueError(
                    f"payload tensors need {b} rows (one per hosted node), got {tuple(t.shape)}"
                )

    def _recv_buffer(self, R: int, nbytes: int, device: torch.device) -> torch.Tensor:
        """The internal receive buffer for rank ``R``'s bytes, reused while its size fits (for
        CPU data only: a GPU copy from the previous call may still be reading it)."""
        if device.type != "cpu":
            return dev.recv_buffer(nbytes, device, self.cuda_aware)
        buf = self._recv_bufs.get(R)
        if buf is None or buf.numel() != nbytes:
            buf = dev.recv_buffer(nbytes, device, self.cuda_aware)
            self._recv_bufs[R] = buf
        return buf

    def _count(self, plan: SharePlan, payload: Payload) -> None:
        """Node-to-node messages of the hosted nodes and their bytes (placement-independent)."""
        self.stats.messages += plan.messages
        self.stats.bytes_sent += plan.messages * payload_row_bytes(payload)

    def _gather(self, payload: Payload, plan: SharePlan, out: Payload) -> None:
        """Fill ``out`` (one ``(len(plan.ids), ...)`` tensor per payload tensor) with the rows of
        ``plan.ids``: hosted rows copied from ``payload``, the others received from their ranks.
        """
        b = len(self.nodes)
        self._count(plan, payload)
        row_bytes = [t[0].numel() * t.element_size() for t in payload]
        device = payload[0].device if payload else torch.device("cpu")
        # a one-tensor payload (a plain mix) is received straight into its output rows
        direct = len(payload) == 1 and (device.type == "cpu" or self.cuda_aware)

        requests, received, keep = [], [], []
        for R, count, offset in plan.recv:
            if direct:
                buf = _as_bytes(out[0][offset : offset + count])
            else:
                buf = self._recv_buffer(R, count * sum(row_bytes), device)
            received.append(buf)
            requests.append(self.mpi.Irecv([dev.mpi_view(buf), MPI.BYTE], R, _TAG_SHARE))
        for R, local in plan.send:
            parts = [_as_bytes(_select_rows(t, local)) for t in payload]
            buf = dev.send_buffer(
                parts[0] if len(parts) == 1 else torch.cat(parts), self.cuda_aware
            )
            keep.append(buf)
            self.stats.mpi_bytes_sent += buf.numel()
            requests.append(self.mpi.Isend([dev.mpi_view(buf), MPI.BYTE], R, _TAG_SHARE))
        for t, rows in zip(payload, out):  # while the messages travel
            rows[plan.local_offset : plan.local_offset + b] = t
        MPI.Request.Waitall(requests)

        if not direct:
            for (_, count, offset), buf in zip(plan.recv, received):
                start = 0
                for t, rows, rb in zip(payload, out, row_bytes):
                    piece = _from_bytes(buf, start, t.dtype, (count,) + tuple(t.shape[1:]))
                    rows[offset : offset + count] = dev.to_device(piece, t.device)
                    start += count * rb

    def exchange(
        self, messages: dict[tuple[int, int], Payload], t: int | None = None
    ) -> dict[tuple[int, int], Payload]:
        nodes = self.nodes
        received: dict[tuple[int, int], Payload] = {}
        headers: list[list] = [[] for _ in range(self.size)]
        tensors: list[list[torch.Tensor]] = [[] for _ in range(self.size)]
        for (src, dst), msg in messages.items():
            if src not in nodes:
                raise ValueError(f"message source {src} is not hosted on rank {self.rank}")
            if not 0 <= dst < self.n:
                raise ValueError(f"message destination {dst} is not a node (n={self.n})")
            if src != dst:
                self.stats.messages += 1
                self.stats.bytes_sent += payload_bytes(msg)
            owner = self.placement.owner(dst)
            if owner == self.rank:
                received[(src, dst)] = msg
            else:
                meta = [(t.dtype, tuple(t.shape), t.device.type) for t in msg]
                headers[owner].append((src, dst, meta))
                tensors[owner].extend(msg)
        incoming = self.mpi.alltoall(headers)

        requests, bufs = [], {}
        for R, head in enumerate(incoming):
            nbytes = sum(
                int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
                for _, _, meta in head
                for dtype, shape, _ in meta
            )
            if head:
                kind = head[0][2][0][2] if head[0][2] else "cpu"
                buf = dev.recv_buffer(nbytes, _recv_device(kind), self.cuda_aware)
                bufs[R] = buf
                requests.append(self.mpi.Irecv([dev.mpi_view(buf), MPI.BYTE], R, _TAG_EXCHANGE))
        keep = []
        for R, ts in enumerate(tensors):
            if headers[R]:
                flat = [_as_bytes(t) for t in ts]
                data = torch.cat(flat) if flat else torch.empty(0, dtype=torch.uint8)
                buf = dev.send_buffer(data, self.cuda_aware)
                keep.append(buf)
                self.stats.mpi_bytes_sent += buf.numel()
                requests.append(self.mpi.Isend([dev.mpi_view(buf), MPI.BYTE], R, _TAG_EXCHANGE))
        MPI.Request.Waitall(requests)

        for R, buf in bufs.items():
            start = 0
            for src, dst, meta in incoming[R]:
                msg = []
                for dtype, shape, kind in meta:
                    piece = _from_bytes(buf, start, dtype, shape)
                    msg.append(dev.to_device(piece, _recv_device(kind)))
                    start += int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
                received[(src, dst)] = tuple(msg)
        return deliver_messages(self.channel, received, t)

    # -- collectives -----------------------------------------------------------------------
    def allreduce_sum(self, x: torch.Tensor) -> torch.Tensor:
        work = x.dtype
        if work in (torch.float16, torch.bfloat16):
            work = torch.float32  # MPI has no half-precision sum
        elif work == torch.bool:
            work = torch.int64
        buf = x.detach().to(dtype=work, copy=True).contiguous()
        buf = dev.send_buffer(buf, self.cuda_aware)
        self.mpi.Allreduce(MPI.IN_PLACE, dev.mpi_view(buf), op=MPI.SUM)
        return buf.to(device=x.device, dtype=x.dtype)

    def allgather_rows(self, X: torch.Tensor) -> torch.Tensor:
        shape = tuple(X.shape[1:])
        row_bytes = int(np.prod(shape, dtype=np.int64)) * X.element_size()
        counts = (np.diff(self.placement.starts) * row_bytes).tolist()
        displs = (self.placement.starts[:-1] * row_bytes).tolist()
        send = dev.send_buffer(_as_bytes(X), self.cuda_aware)
        recv = dev.recv_buffer(self.n * row_bytes, X.device, self.cuda_aware)
        self.mpi.Allgatherv(
            [dev.mpi_view(send), MPI.BYTE], [dev.mpi_view(recv), (counts, displs), MPI.BYTE]
        )
        return dev.to_device(_from_bytes(recv, 0, X.dtype, (self.n,) + shape), X.device)

    def broadcast_object(self, obj, root: int = 0):
        return self.mpi.bcast(obj, root=root)

    def barrier(self) -> None:
        self.mpi.Barrier()

    def abort(self, message: str, code: int = 1) -> None:
        print(message, file=sys.stderr, flush=True)
        sys.stdout.flush()
        MPI.COMM_WORLD.Abort(code)
