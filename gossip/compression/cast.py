"""Dense operators: ``none`` (rows as they are) and the casts ``fp16`` / ``bf16``.

``none`` is the identity ``C(x) = x``: the payload is the row itself in its own dtype, decode is
exact. ``fp16`` / ``bf16`` round every entry to a 16-bit float (IEEE half precision, or bfloat16
with fp32's exponent range, Kalamkar et al. 2019): ``C(x) = cast(x)``, 2 bytes per entry.
"""

from __future__ import annotations

import torch

from gossip.compression.base import (
    Compressor,
    CompressorState,
    check_rows,
    itemsize,
    make_state,
    register_compressor,
)
from gossip.registry import NoOptions

__all__ = ["bf16", "fp16", "none"]


def _cast(name: str, wire: torch.dtype | None) -> Compressor:
    def init(dim, nodes, layout=None, seed=0, *, dtype=torch.float32, device="cpu"):
        return make_state(dim, nodes, layout, seed, dtype=dtype, device=device)

    def encode(X: torch.Tensor, state: CompressorState, step: int):
        check_rows(X, state)
        return (X.to(wire or state.dtype),), state

    def decode(payload, state: CompressorState, ids, step: int) -> torch.Tensor:
        (rows,) = payload
        return rows.to(state.dtype)

    def payload_row_bytes(dim: int, layout=None, dtype: torch.dtype = torch.float32) -> int:
        return dim * itemsize(wire or dtype)

    # rounding to 16 bits is deterministic, so E C(x) != x; the identity is exact. Rounding to
    # nearest errs by at most the unit roundoff u per entry, relative: omega = 1 - u^2
    # (u = 2^-11 for fp16, 2^-8 for bf16; overflow and subnormals aside)
    u = 0.0 if wire is None else torch.finfo(wire).eps / 2

    def omega(dim: int, layout=None) -> float:
        return 1.0 - u * u

    return Compressor(name, init, encode, decode, payload_row_bytes, {},
                      biased=wire is not None, omega=omega)


@register_compressor("none")
def none(cfg: NoOptions | None = None) -> Compressor:
    """The identity: rows travel in their own dtype (fp32 by default), decode is exact."""
    return _cast("none", None)


@register_compressor("fp16")
def fp16(cfg: NoOptions | None = None) -> Compressor:
    """IEEE half precision on the wire: ``2 * dim`` bytes per row."""
    return _cast("fp16", torch.float16)


@register_compressor("bf16")
def bf16(cfg: NoOptions | None = None) -> Compressor:
    """bfloat16 on the wire: ``2 * dim`` bytes per row, fp32's exponent range."""
    return _cast("bf16", torch.bfloat16)
