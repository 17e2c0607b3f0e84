"""Low-rank compression by one warm-started power iteration (PowerSGD, Vogels et al. 2019;
PowerGossip, Vogels et al. 2020).

Every matrix-shaped parameter of the ``layout`` (shape ``(m, *rest)`` viewed as ``M`` of size
``m x n``, ``n = prod(rest)``) is sent as two factors of rank ``r' = min(r, m, n)``::

    Q <- orthonormalise(Q_prev)        # warm start: last round's Q of this node
    P <- orthonormalise(M Q)           # (m, r')
    Q <- M^T P                         # (n, r'), kept as the next warm start
    C(M) = P Q^T = P P^T M

so ``C(M) = M`` exactly whenever ``rank(M) <= r'`` and ``M Q`` has full column rank. Vectors
(biases, ``len(shape) < 2``) and matrices with ``r' (m + n) >= m n`` travel uncompressed. A row
with no layout is one flat vector viewed as a near-square matrix ``m = ceil(sqrt(d))``,
``n = ceil(d / m)`` (zero padded). The first ``Q`` is Gaussian from ``(seed, node)``.

Wire: one row of ``sum over compressed matrices r' (m + n) + sum over the rest of their sizes``
values in the row dtype.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch

from gossip.compression.base import (
    Compressor,
    CompressorState,
    check_rows,
    itemsize,
    make_state,
    node_rng,
    register_compressor,
)
from gossip.options import at_least
from gossip.registry import option

__all__ = ["LowRank", "blocks", "lowrank"]

_SALT_Q = 3


def blocks(dim: int, layout, rank: int) -> list[tuple[int, int, int, int, int]]:
    """``(offset, size, m, n, r)`` per piece of a row; ``r = 0`` means sent uncompressed.

    With no layout the whole row is one near-square ``m x n`` matrix (``m n >= dim``).
    """
    if not layout:
        m = max(1, math.isqrt(dim - 1) + 1) if dim > 1 else 1
        n = -(-dim // m)
        r = min(rank, m, n)
        return [(0, dim, m, n, r if r * (m + n) < m * n else 0)]
    out, offset = [], 0
    for _, shape in layout:
        size = math.prod(shape)
        if len(shape) >= 2:
            m, n = shape[0], size // shape[0]
            r = min(rank, m, n)
            out.append((offset, size, m, n, r if r * (m + n) < m * n else 0))
        else:
            out.append((offset, size, 1, size, 0))
        offset += size
    return out


def _orthonormal(A: torch.Tensor) -> torch.Tensor:
    """Orthonormal columns spanning ``A``'s (batched Householder QR; zero -> unit columns)."""
    return torch.linalg.qr(A.to(torch.float32)).Q


@dataclass(frozen=True)
class LowRank:
    """``[compression]`` keys of ``lowrank``."""

    rank: int = option(2, "rank r of the power iteration", check=at_least(1))


@register_compressor("lowrank", LowRank)
def lowrank(cfg: LowRank) -> Compressor:
    """Rank-``rank`` power-iteration compression with warm-started ``Q``."""
    rank = cfg.rank

    def init(dim, nodes, layout=None, seed=0, *, dtype=torch.float32, device="cpu"):
        state = make_state(dim, nodes, layout, seed, dtype=dtype, device=device)
        memory = []
        for _, _, _, n, r in blocks(dim, state.layout, rank):
            if r:
                Qs = [
                    torch.randn(n, r, generator=node_rng(seed, node, 0, _SALT_Q, device),
                                device=device)
                    for node in state.nodes.tolist()
                ]
                memory.append(torch.stack(Qs) if Qs else torch.empty((0, n, r), device=device))
        return state._replace(memory=tuple(memory))

    def _matrix(X: torch.Tensor, offset: int, size: int, m: int, n: int) -> torch.Tensor:
        piece = X[:, offset : offset + size].to(torch.float32)
        if m * n > size:
            piece = torch.nn.functional.pad(piece, (0, m * n - size))
        return piece.reshape(X.shape[0], m, n)

    def encode(X: torch.Tensor, state: CompressorState, step: int):
        check_rows(X, state)
        parts, memory, q = [], [], 0
        for offset, size, m, n, r in blocks(state.dim, state.layout, rank):
            if not r:
                parts.append(X[:, offset : offset + size])
                continue
            M = _matrix(X, offset, size, m, n)
            P = _orthonormal(M @ _orthonormal(state.memory[q]))
            Q = M.transpose(1, 2) @ P
            memory.append(Q)
            parts += [P.reshape(X.shape[0], -1).to(X.dtype), Q.reshape(X.shape[0], -1).to(X.dtype)]
            q += 1
        return (torch.cat(parts, 1),), state._replace(memory=tuple(memory))

    def decode(payload, state: CompressorState, ids, step: int) -> torch.Tensor:
        (values,) = payload
        b, pos, pieces = values.shape[0], 0, []
        for _, size, m, n, r in blocks(state.dim, state.layout, rank):
            if not r:
                pieces.append(values[:, pos : pos + size].to(state.dtype))
                pos += size
                continue
            P = values[:, pos : pos + m * r].reshape(b, m, r).to(torch.float32)
            Q = values[:, pos + m * r : pos + (m + n) * r].reshape(b, n, r).to(torch.float32)
            pos += (m + n) * r
            pieces.append((P @ Q.transpose(1, 2)).reshape(b, m * n)[:, :size].to(state.dtype))
        return torch.cat(pieces, 1)

    def payload_row_bytes(dim: int, layout=None, dtype: torch.dtype = torch.float32) -> int:
        lay = tuple((name, tuple(shape)) for name, shape in (layout or ()))
        count = sum(r * (m + n) if r else size for _, size, m, n, r in blocks(dim, lay, rank))
        return count * itemsize(dtype)

    def omega(dim: int, layout=None) -> float:
        """``min r' / min(m, n)`` over the compressed matrices (1 if none): the quality of the
        best rank-``r'`` approximation, which keeps the ``r'`` largest of at most ``min(m, n)``
        squared singular values. One warm-started power step approaches it over the rounds
        but does not guarantee it in every round."""
        lay = tuple((name, tuple(shape)) for name, shape in (layout or ()))
        return min((r / min(m, n) for _, _, m, n, r in blocks(dim, lay, rank) if r), default=1.0)

    return Compressor("lowrank", init, encode, decode, payload_row_bytes, asdict(cfg),
                      biased=True, omega=omega)
