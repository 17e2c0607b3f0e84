"""Error feedback as a wrapper around any compressor (EF-SGD, Karimireddy et al. 2019;
the error buffers of PowerSGD, Vogels et al. 2019; Seide et al. 2014).

Each encoded row keeps an error memory ``e`` (zero at the start); per call::

    e <- e + x            # add what should have been sent
    q  = C(e)             # compress the corrected value
    e <- e - D(q)         # remember what the compression dropped

so after any number of calls ``sum(inputs) - sum(decoded outputs) = e`` exactly (up to float
rounding). ``decode`` is the inner compressor's: receivers need no memory. The step itself is
:func:`ef_step`, which the centralized uploads (:mod:`gossip.compression.uploads`, with
their per-client memory kept in the algorithm's state) use as well.
"""

from __future__ import annotations

from typing import NamedTuple

import torch

from gossip.compression.base import Compressor

__all__ = ["EFState", "ef_step", "error_feedback"]


class EFState(NamedTuple):
    """The inner compressor's state and the error memory ``e`` ``(b, dim)``."""

    inner: NamedTuple
    error: torch.Tensor

    @property
    def nodes(self) -> torch.Tensor:
        return self.inner.nodes

    @property
    def dim(self) -> int:
        return self.inner.dim

    @property
    def dtype(self) -> torch.dtype:
        return self.inner.dtype


def ef_step(
    compressor: Compressor, X: torch.Tensor, error: torch.Tensor, state: NamedTuple, step: int
) -> tuple[tuple, torch.Tensor, torch.Tensor, NamedTuple]:
    """One error-feedback step of the plain ``compressor`` on the rows ``X``.

    ``e <- error + X``, ``q = C(e)``, ``e <- e - D(q)``; returns ``(q, D(q), e, state)``: the
    payload, its decoding (in ``X``'s dtype: what the receivers get), the new error memory and
    the compressor's new state.
    """
    target = error + X
    payload, state = compressor.encode(target, state, step)
    decoded = compressor.decode(payload, state, state.nodes, step).to(X.dtype)
    return payload, decoded, target - decoded, state


def error_feedback(compressor: Compressor) -> Compressor:
    """``compressor`` with error feedback; its name gains the prefix ``ef_``.

    Examples
    --------
    >>> from gossip.compression.sparse import TopK, topk
    >>> ef = error_feedback(topk(TopK(k=1)))
    >>> state = ef.init(3, [0])
    >>> payload, state = ef.encode(torch.tensor([[1.0, -3.0, 2.0]]), state, 0)
    >>> ef.decode(payload, state, [0], 0), state.error
    (tensor([[ 0., -3.,  0.]]), tensor([[1., 0., 2.]]))
    """

    def init(dim, nodes, layout=None, seed=0, *, dtype=torch.float32, device="cpu"):
        inner = compressor.init(dim, nodes, layout, seed, dtype=dtype, device=device)
        return EFState(inner, torch.zeros((inner.nodes.numel(), dim), dtype=dtype, device=device))

    def encode(X: torch.Tensor, state: EFState, step: int):
        payload, _, e, inner = ef_step(compressor, X, state.error, state.inner, step)
        return payload, EFState(inner, e)

    def decode(payload, state, ids, step: int) -> torch.Tensor:
        inner = state.inner if isinstance(state, EFState) else state
        return compressor.decode(payload, inner, ids, step)

    return Compressor(
        f"ef_{compressor.name}",
        init,
        encode,
        decode,
        compressor.payload_row_bytes,
        {**compressor.options, "error_feedback": True},
        compressor.biased,
        compressor,
        compressor.omega,
    )
