"""The hosted rows of one gossip step, ``x_i <- sum_j W[i, j] x_j`` for ``i`` in a node block.

:func:`apply_rows` is the product every communicator and the compressed-gossip algorithms call;
:func:`senders_to` says which rows it needs, :func:`messages_from` how many messages a block
sends. The torch operators and plans are built from ``W`` once and cached by the ``W`` object
itself: every ``topologies`` schedule hands out read-only matrices, and a static one (``Static``,
a one-graph ``Cycle``) the same object every round, so a static run builds them once. Each
cache entry holds its ``W``, so the ``id(W)`` in its key cannot be reused by another matrix while
the entry lives (a small FIFO of ``CACHE_SIZE`` entries).

Every product is summed in float64 and rounded once to the rows' dtype
(:func:`accumulation_dtype`): a float32 copy of ``W`` is not doubly stochastic, and summed in
float32 the mean of ``W x`` drifted the same way every round (D^2 on a ring of 16 went from
``1e-6`` to ``1e-5`` away from the optimum between rounds 3000 and 12,000).
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
import torch

from gossip.comm.mixing_ops import (
    BLOCK_BYTES,
    DiagonalPlan,
    diagonal_plan,
    mix_diagonals,
    slice_of,
    torch_matrix,
)

__all__ = [
    "CACHE_SIZE",
    "accumulation_dtype",
    "apply_rows",
    "messages_from",
    "mix_delta",
    "remember",
    "senders_to",
]

CACHE_SIZE = 16

# the diagonal form (measured in benchmarks/mixing.py, one CPU thread): rows of at least this
# many bytes, at most this many offsets, more than this many slice entries (smaller slices are
# one dense product), and at most this much work per nonzero
_DIAG_ROW_BYTES = 16 << 10
_DIAG_GROUPS = 16
_DIAG_MIN_ENTRIES = 256
_DIAG_MAX_WORK = 1.25

_operator_cache: dict[tuple, tuple[object, torch.Tensor]] = {}
_diagonal_cache: dict[tuple, tuple[object, DiagonalPlan | None]] = {}
_count_cache: dict[tuple, tuple[object, int]] = {}


def remember(cache: dict, key: tuple | int, value: tuple, size: int = CACHE_SIZE) -> None:
    """Insert ``value = (W, computed)`` into a FIFO ``cache`` of at most ``size`` entries.

    Values hold ``W`` itself, so an ``id(W)`` in ``key`` cannot be reused by another matrix
    while the entry lives; a lookup checks ``hit[0] is W``.
    """
    if len(cache) >= size:
        cache.pop(next(iter(cache)))
    cache[key] = value


def senders_to(W: sp.csr_array | sp.csr_matrix, nodes: range) -> np.ndarray:
    """Sorted ids of every node whose row the ``nodes`` need to apply ``W`` (themselves included).

    These are the column indices of the nonzeros in rows ``nodes`` of ``W``, plus ``nodes``.
    """
    rows = sp.csr_array(W)[nodes.start : nodes.stop]
    return np.union1d(rows.indices, np.arange(nodes.start, nodes.stop)).astype(np.int64)


def messages_from(W, nodes: range) -> int:
    """Number of off-diagonal nonzeros of ``W`` in the columns ``nodes`` (messages they send)."""
    key = (id(W), nodes.start, nodes.stop)
    hit = _count_cache.get(key)
    if hit is not None and hit[0] is W:
        return hit[1]
    count = _count_messages(W, nodes)
    remember(_count_cache, key, (W, count))
    return count


def _count_messages(W, nodes: range) -> int:
    """What :func:`messages_from` caches: off-diagonal nonzeros of ``W`` in columns ``nodes``."""
    coo = sp.coo_array(W)
    sent = (coo.col >= nodes.start) & (coo.col < nodes.stop) & (coo.row != coo.col)
    return int(np.count_nonzero(sent & (coo.data != 0)))


def accumulation_dtype(dtype: torch.dtype, device: torch.device | str = "cpu") -> torch.dtype:
    """The dtype a gossip product of ``dtype`` rows is summed in: float64 for every floating
    dtype (and for integer rows), except on Apple's ``mps`` devices, which have no float64
    (there float32).

    Rounding ``W`` to float32 breaks its stochasticity: ``float32(1/3) * 3 != 1``, so the mean
    of ``W x`` moves by about ``1e-8 |x|`` every round, the same way each round, and exact
    methods that integrate that error (D^2, gradient tracking) drift away from the optimum as
    ``t^2``. Summed in float64 and rounded once, ``y_i`` is the correctly rounded
    ``sum_j W_ij x_j`` (up to float64's ``1e-16``): the remaining change of the mean is the
    unbiased output rounding, at most half an ulp of ``y_i`` per node and round.

    >>> accumulation_dtype(torch.float32), accumulation_dtype(torch.float64)
    (torch.float64, torch.float64)
    """
    if torch.device(device).type == "mps":
        return torch.float32
    return torch.float64


def apply_rows(W, nodes: range, ids: np.ndarray, rows: torch.Tensor) -> torch.Tensor:
    """``sum_j W[i, j] rows[j]`` for ``i in nodes``, where ``rows`` holds the rows of ``ids``.

    One product of the ``(b, len(ids))`` slice of ``W`` with ``rows`` (extra dimensions of
    ``rows`` are flattened and restored), summed in :func:`accumulation_dtype` (float64) on
    ``rows``' device and rounded once to ``rows``' floating dtype (float32 for integer rows).
    The slice is converted once per ``(W, nodes, ids, dtype, device)`` and cached (a static
    topology reuses it every round). On the CPU, when rows are large (``_DIAG_ROW_BYTES``) and
    the slice's nonzeros lie on at most ``_DIAG_GROUPS`` local diagonals (ring, torus, circulant
    graphs: see :mod:`gossip.comm.mixing_ops`), it is applied as ``y_r = sum_o w_o[r]
    rows[r + o]`` in row blocks; otherwise as one torch product, dense when small, CSR otherwise.

    ``W`` must not change while it is cached: pass the read-only matrices of a schedule.
    """
    return _product(W, nodes, ids, rows, rows.dtype if rows.is_floating_point() else torch.float32)


def mix_delta(W, nodes: range, ids: np.ndarray, rows: torch.Tensor) -> torch.Tensor:
    """``((W - I) X)_i = sum_j W[i, j] x_j - x_i`` for ``i in nodes`` (``ids`` must hold them),
    summed in :func:`accumulation_dtype` and rounded once to ``rows``' dtype.

    The consensus step of CHOCO-SGD and BEER (``x_i + gamma ((W - I) X_hat)_i``). Rounded
    after the subtraction, its error is relative to the small difference, not to ``x_i``, so
    for a doubly stochastic ``W`` the sum of the updates over the nodes stays at rounding
    level of the differences.
    """
    own = torch.from_numpy(np.searchsorted(ids, np.arange(nodes.start, nodes.stop)))
    work = accumulation_dtype(rows.dtype, rows.device)
    Y = _product(W, nodes, ids, rows, work)
    return (Y - rows[own.to(rows.device)].to(work)).to(rows.dtype)


def _product(
    W, nodes: range, ids: np.ndarray, rows: torch.Tensor, out: torch.dtype
) -> torch.Tensor:
    """``W[nodes][:, ids] @ rows`` summed in :func:`accumulation_dtype`, rounded once to
    ``out`` (see :func:`apply_rows`)."""
    flat = rows.reshape(rows.shape[0], -1)
    dtype = accumulation_dtype(flat.dtype, flat.device)
    shape = (len(nodes),) + tuple(rows.shape[1:])
    key = _slice_key(W, nodes, ids, dtype, flat.device)
    if flat.device.type == "cpu" and flat.shape[1] * dtype.itemsize >= _DIAG_ROW_BYTES:
        plan = _diagonals(key, W, nodes, ids, dtype, flat.device)
        if plan is not None:  # converts and rounds block by block
            return mix_diagonals(flat, plan, out_dtype=out).reshape(shape)
    S = _operator(key, W, nodes, ids, dtype, flat.device)
    if flat.device.type != "cpu" or flat.dtype == dtype:
        return (S @ flat.to(dtype)).to(out).reshape(shape)
    # on the CPU, float32 rows go to float64 a block of columns at a time, into one reused
    # buffer: a float64 copy of all the rows would cost more than the product
    m, d = flat.shape
    width = max(1, BLOCK_BYTES // (max(m, len(nodes), 1) * dtype.itemsize))
    buf = flat.new_empty((m, min(width, d)), dtype=dtype)
    Y = flat.new_empty((len(nodes), d), dtype=out)
    for lo in range(0, d, width):
        hi = min(d, lo + width)
        Y[:, lo:hi] = S @ buf[:, : hi - lo].copy_(flat[:, lo:hi])
    return Y.reshape(shape)


def _slice_key(W, nodes: range, ids: np.ndarray, dtype: torch.dtype, device) -> tuple:
    """Cache key of the slice ``W[nodes][:, ids]`` in ``dtype`` on ``device``."""
    return (id(W), nodes.start, nodes.stop, len(ids), hash(ids.tobytes()), dtype, str(device))


def _operator(key: tuple, W, nodes: range, ids: np.ndarray, dtype: torch.dtype, device):
    """The cached torch matrix of ``W[nodes][:, ids]`` (``key`` names it; see apply_rows)."""
    hit = _operator_cache.get(key)
    if hit is not None and hit[0] is W:
        return hit[1]
    S = torch_matrix(slice_of(W, nodes, ids), dtype, device)
    remember(_operator_cache, key, (W, S))
    return S


def _diagonals(
    key: tuple, W, nodes: range, ids: np.ndarray, dtype: torch.dtype, device
) -> DiagonalPlan | None:
    """The cached :class:`DiagonalPlan` of the slice, or ``None`` when the slice does not fit."""
    hit = _diagonal_cache.get(key)
    if hit is not None and hit[0] is W:
        return hit[1]
    plan: DiagonalPlan | None = None
    if len(nodes) * len(ids) > _DIAG_MIN_ENTRIES:
        nnz = slice_of(W, nodes, ids).nnz  # stored entries, explicit zeros included, as in work
        plan = diagonal_plan(W, dtype, device, nodes, ids)
        if plan.groups > _DIAG_GROUPS or plan.work_rows > _DIAG_MAX_WORK * max(nnz, 1):
            plan = None
    remember(_diagonal_cache, key, (W, plan))
    return plan
