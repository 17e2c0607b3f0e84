"""Gossip products ``Y = W_slice @ rows`` without a sparse-matrix kernel: local diagonals.

One gossip step (Lian et al. 2017, ``x_i <- sum_j W[i, j] x_j``) applied to the hosted block is
the product of a ``(b, m)`` slice ``S = W[nodes][:, ids]`` with the ``(m, D)`` rows of ``ids``.
For the topologies used most (ring, torus, exponential graph, any circulant graph) the
nonzeros of ``S`` lie on a few *local diagonals*: entries ``S[r, p]`` with the same offset
``o = p - r``. Grouping them gives

    y_r = sum_o w_o[r] * rows[r + o],        w_o[r] = S[r, r + o]  (0 where absent),

one ``addcmul_`` of contiguous row slices per offset, no gather and no temporaries (rows of a
narrower dtype than the plan's, float32 rows summed in float64, go through one reused
block-sized buffer). A wrapped
diagonal ``(j - i) mod n = k`` of a full ``W`` becomes two local offsets (``k`` on the rows
before the wrap, ``k - n`` after), each touching only its own rows. Applied one block of about
``BLOCK_BYTES`` of output rows at a time, the rows one offset reads are still in cache for the
next; on a CPU with large rows this beats torch's CSR product for the ring and the torus
(``benchmarks/mixing.py``; ``apply_rows`` takes it for at most 16 offsets). Offsets with
entries in fewer than half the rows of their span are applied as a strided slice when their
rows are evenly spaced (a torus' wrap-around edges: every ``s``-th row), else with
``index_add_`` on those rows only.

Also here: :class:`RowsOperator` / :func:`add_rows`, ``Y += S @ rows`` in place on only the
output rows that have entries in ``S`` (MPIComm adds the remote neighbours' rows this way after
computing the hosted part while they travel), and :func:`torch_matrix`, the dense or CSR torch
form of a slice.
"""

from __future__ import annotations

import warnings
from typing import NamedTuple

import numpy as np
import scipy.sparse as sp
import torch

__all__ = [
    "BLOCK_BYTES",
    "DiagonalPlan",
    "RowsOperator",
    "add_rows",
    "diagonal_plan",
    "mix_diagonals",
    "rows_operator",
    "slice_of",
]

BLOCK_BYTES = 2 << 20  # output rows per block: about this many bytes of rows read per offset
DENSE_ENTRIES = 4096  # a RowsOperator this small, or a quarter full, is a dense matrix


class DiagonalPlan(NamedTuple):
    """A ``(b, m)`` matrix ``S`` split into local diagonals ``S[r, r + o]``.

    Attributes
    ----------
    shape : (int, int)
        ``(b, m)``: output rows, input rows.
    dense : tuple of (offset, w)
        Offsets applied by slices; ``w`` is a ``(b, 1)`` column of ``S[r, r + offset]`` (0 where
        absent). When ``full`` is true the first entry spans every output row and initialises
        ``Y``.
    spans : tuple of (lo, hi)
        For each ``dense`` entry, the output rows ``[lo, hi)`` that hold its entries.
    strided : tuple of (offset, lo, step, w)
        Offsets whose entries sit on the evenly spaced rows ``lo, lo + step, ...``
        (``len(w)`` of them); ``w`` is ``(k, 1)``.
    sparse : tuple of (offset, rows, w)
        Other offsets with few entries in their span: output ``rows`` (int64), weights ``(k, 1)``.
    full : bool
        Whether ``dense[0]`` spans every output row (else ``Y`` starts from zeros).
    """

    shape: tuple[int, int]
    dense: tuple[tuple[int, torch.Tensor], ...]
    spans: tuple[tuple[int, int], ...]
    strided: tuple[tuple[int, int, int, torch.Tensor], ...]
    sparse: tuple[tuple[int, torch.Tensor, torch.Tensor], ...]
    full: bool

    @property
    def groups(self) -> int:
        """Number of offsets (dense, strided and sparse)."""
        return len(self.dense) + len(self.strided) + len(self.sparse)

    @property
    def dtype(self) -> torch.dtype | None:
        """The dtype of the weights (``None`` for a plan without entries)."""
        for w in [w for _, w in self.dense] + [g[-1] for g in self.strided + self.sparse]:
            return w.dtype
        return None

    @property
    def work_rows(self) -> int:
        """Rows touched by one product: the dense spans plus the strided and sparse rows."""
        return (
            sum(hi - lo for lo, hi in self.spans)
            + sum(len(w) for *_, w in self.strided)
            + sum(len(r) for _, r, _ in self.sparse)
        )


def slice_of(W, nodes: range | None = None, ids: np.ndarray | None = None) -> sp.csr_array:
    """``W[nodes][:, ids]`` as a CSR array (the whole of ``W`` when both are ``None``) with
    arrays of its own: changing it never changes ``W``, which may be a schedule's read-only
    matrix."""
    A = sp.csr_array(W)
    if nodes is not None:
        A = A[nodes.start : nodes.stop]
    if ids is not None:
        A = A[:, np.asarray(ids, dtype=np.int64)]
    return sp.csr_array(A, copy=True)


def diagonal_plan(
    W,
    dtype: torch.dtype = torch.float64,
    device: torch.device | str = "cpu",
    nodes: range | None = None,
    ids: np.ndarray | None = None,
) -> DiagonalPlan:
    """The :class:`DiagonalPlan` of ``S = W[nodes][:, ids]`` (all of ``W`` by default).

    ``W`` is any scipy sparse (or dense NumPy) matrix; ``ids`` are the node ids of the input rows
    in their order. ``O(nnz log nnz)``; entries stored as explicit zeros are kept (they cost
    work, never change the result).
    """
    S = sp.coo_array(slice_of(W, nodes, ids))
    b, m = S.shape
    r = S.row.astype(np.int64)
    o = S.col.astype(np.int64) - r
    order = np.lexsort((r, o))
    r, o, vals = r[order], o[order], np.asarray(S.data)[order]
    cuts = np.flatnonzero(np.diff(o)) + 1
    dense, spans, strided, sparse = [], [], [], []
    for rs, os_, vs in zip(np.split(r, cuts), np.split(o, cuts), np.split(vals, cuts)):
        if len(rs) == 0:
            continue
        lo, hi = int(rs[0]), int(rs[-1]) + 1
        if 2 * len(rs) >= hi - lo:
            w = np.zeros(b)
            w[rs] = vs
            dense.append((int(os_[0]), torch.tensor(w, dtype=dtype, device=device)[:, None]))
            spans.append((lo, hi))
        elif len(np.unique(np.diff(rs))) == 1:
            w = torch.tensor(vs, dtype=dtype, device=device)[:, None]
            strided.append((int(os_[0]), lo, int(rs[1] - rs[0]), w))
        else:
            sparse.append(
                (
                    int(os_[0]),
                    torch.from_numpy(rs).to(device),
                    torch.tensor(vs, dtype=dtype, device=device)[:, None],
                )
            )
    # the widest offset first: when it spans every output row it initialises Y
    first = max(range(len(spans)), key=lambda g: spans[g][1] - spans[g][0], default=None)
    full = first is not None and spans[first] == (0, b)
    if first is not None:
        dense.insert(0, dense.pop(first))
        spans.insert(0, spans.pop(first))
    return DiagonalPlan((b, m), tuple(dense), tuple(spans), tuple(strided), tuple(sparse), full)


def mix_diagonals(
    rows: torch.Tensor,
    plan: DiagonalPlan,
    block_rows: int | None = None,
    out_dtype: torch.dtype | None = None,
) -> torch.Tensor:
    """``S @ rows`` from the :class:`DiagonalPlan` of ``S``: ``y_r = sum_o w_o[r] rows[r + o]``.

    ``rows`` is ``(m, *shape)`` on the plan's device (extra dimensions are flattened and
    restored); the sum runs in the plan's dtype and each block of the result is rounded once
    to ``out_dtype`` (default: the plan's dtype). Rows of another dtype than the plan's are
    converted one offset slice at a time, into a block-sized buffer: a float32 block mixed
    with a float64 plan never has a float64 copy of its own. ``block_rows``: output rows per
    block (``None``: about ``BLOCK_BYTES`` of rows; ``0``: one block). Returns a new
    ``(b, *shape)`` tensor.
    """
    b, m = plan.shape
    if rows.shape[0] != m:
        raise ValueError(f"rows has {rows.shape[0]} rows, the plan needs {m}")
    flat = rows.reshape(m, -1)
    work = plan.dtype or flat.dtype
    out_dtype = work if out_dtype is None else out_dtype
    size = max(1, flat.shape[1] * torch.finfo(work).bits // 8)
    if block_rows is None:
        block_rows = max(1, BLOCK_BYTES // size)
    step = block_rows or max(b, 1)
    # one buffer each for a converted slice and for a block's sum, reused (no allocation, and
    # so no page faults, per offset)
    buf = None if flat.dtype == work else flat.new_empty((min(step, b), flat.shape[1]), dtype=work)

    def read(lo: int, hi: int, stride: int = 1) -> torch.Tensor:
        """Rows ``lo:hi:stride`` of ``rows`` in the plan's dtype (a view when no cast)."""
        piece = flat[lo:hi:stride]
        return piece if buf is None else buf[: piece.shape[0]].copy_(piece)

    Y = torch.empty((b, flat.shape[1]), dtype=out_dtype, device=flat.device)
    acc = None if out_dtype == work else flat.new_empty((min(step, b), flat.shape[1]),
                                                        dtype=work)
    for lo in range(0, b, step):
        hi = min(b, lo + step)
        part = Y[lo:hi] if acc is None else acc[: hi - lo]
        if not plan.full:
            part.zero_()
        for g, ((o, w), (a, c)) in enumerate(zip(plan.dense, plan.spans)):
            a, c = max(a, lo), min(c, hi)
            if a >= c:
                continue
            if g == 0 and plan.full:
                torch.mul(read(a + o, c + o), w[a:c], out=part[a - lo : c - lo])
            else:
                part[a - lo : c - lo].addcmul_(w[a:c], read(a + o, c + o))
        for o, first, stride, w in plan.strided:  # rows first + k stride, k < len(w)
            k0 = max(0, -(-(lo - first) // stride))
            k1 = min(len(w), -(-(hi - first) // stride))
            if k0 >= k1:
                continue
            f, last = first + k0 * stride, first + (k1 - 1) * stride + 1
            part[f - lo : last - lo : stride].addcmul_(w[k0:k1], read(f + o, last + o, stride))
        for o, rs, w in plan.sparse:
            keep = (rs >= lo) & (rs < hi)
            if not keep.any():
                continue
            at = rs[keep]
            part.index_add_(0, at - lo, flat.index_select(0, at + o).to(work) * w[keep])
        if acc is not None:
            Y[lo:hi] = part
    return Y.reshape((b,) + tuple(rows.shape[1:]))


class RowsOperator(NamedTuple):
    """The rows of a ``(b, m)`` matrix ``S`` that hold entries, as a torch matrix.

    Attributes
    ----------
    shape : (int, int)
        ``(b, m)``.
    at : None, slice or Tensor
        Which output rows have entries: all (``None``), a contiguous ``slice``, or an int64
        index tensor.
    S : Tensor
        Those rows of ``S`` (dense when small or a quarter full, else sparse CSR).
    """

    shape: tuple[int, int]
    at: None | slice | torch.Tensor
    S: torch.Tensor


def torch_matrix(sub, dtype: torch.dtype, device: torch.device | str = "cpu") -> torch.Tensor:
    """A scipy sparse matrix as a torch matrix for ``S @ rows``: dense when it has at most
    ``DENSE_ENTRIES`` entries or is more than a quarter full, torch CSR otherwise."""
    sub = sp.csr_array(sub)
    entries = sub.shape[0] * sub.shape[1]
    if entries <= DENSE_ENTRIES or 4 * sub.nnz > entries:
        return torch.from_numpy(sub.toarray()).to(device=device, dtype=dtype)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta")
        return torch.sparse_csr_tensor(
            torch.from_numpy(sub.indptr.astype(np.int64)),
            torch.from_numpy(sub.indices.astype(np.int64)),
            torch.from_numpy(sub.data).to(dtype),
            size=sub.shape,
            device=device,
            check_invariants=False,
        )


def rows_operator(
    W,
    dtype: torch.dtype = torch.float64,
    device: torch.device | str = "cpu",
    nodes: range | None = None,
    ids: np.ndarray | None = None,
) -> RowsOperator:
    """The :class:`RowsOperator` of ``S = W[nodes][:, ids]`` (all of ``W`` by default);
    explicit zeros are dropped first."""
    A = slice_of(W, nodes, ids)
    A.eliminate_zeros()
    b, m = A.shape
    at = np.flatnonzero(np.diff(A.indptr))
    sub = sp.csr_array(A[at])
    if len(at) == b:
        where: None | slice | torch.Tensor = None
    elif len(at) and at[-1] - at[0] + 1 == len(at):
        where = slice(int(at[0]), int(at[-1]) + 1)
    else:
        where = torch.from_numpy(at.astype(np.int64)).to(device)
    return RowsOperator((b, m), where, torch_matrix(sub, dtype, device))


def add_rows(Y: torch.Tensor, op: RowsOperator, rows: torch.Tensor) -> torch.Tensor:
    """``Y + S @ rows`` for the :class:`RowsOperator` of ``S``, written into ``Y`` when ``Y``
    is contiguous (only the rows of ``op.at`` are touched); returns the sum.

    ``Y`` is ``(b, *shape)`` and ``rows`` ``(m, *shape)``, both in the operator's dtype.
    """
    b, m = op.shape
    if rows.shape[0] != m or Y.shape[0] != b:
        raise ValueError(f"rows/Y have {rows.shape[0]}/{Y.shape[0]} rows, S is {b} x {m}")
    if m == 0 or op.S.shape[0] == 0:
        return Y
    flat = rows.reshape(m, -1)
    out = Y.reshape(b, -1)
    if op.at is None:
        out.addmm_(op.S, flat)
    elif isinstance(op.at, slice):
        out[op.at].addmm_(op.S, flat)
    else:
        out.index_add_(0, op.at, op.S @ flat)
    return out.reshape(Y.shape)
