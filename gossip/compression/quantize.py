"""Quantizers: scaled ``sign`` and ``qsgd``.

``sign`` (scaled sign, Karimireddy et al. 2019 "Error feedback fixes SignSGD"):
``C(x) = ||x||_1 / d * sign(x)`` with ``sign(0) = +1``. Wire: one fp32 scale and one bit per
entry packed into bytes, ``4 + ceil(d / 8)`` bytes per row. Biased; ``||C(x) - x||^2 =
||x||^2 - ||x||_1^2 / d``.

``qsgd`` (Alistarh et al. 2017): with ``s`` levels, ``Q(x)_i = ||x||_2 sign(x_i) xi_i / s``
where ``xi_i = floor(s |x_i| / ||x||) + 1`` with probability ``s |x_i| / ||x|| - floor(...)``
and ``floor(...)`` otherwise. Unbiased, ``E ||Q(x) - x||^2 <= min(d / s^2, sqrt(d) / s)
||x||^2`` (their Lemma 3.1). The rounding uniforms come from ``(seed, node, step)``. Wire: one
fp32 norm and, per entry, a code ``(level << 1) | negative`` of ``w = 1 + bitlen(s)`` bits
packed back to back: ``4 + ceil(d w / 8)`` bytes per row.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch

from gossip.compression.base import (
    Compressor,
    CompressorState,
    check_rows,
    make_state,
    node_rng,
    pack_bits,
    packed_bytes,
    register_compressor,
    unpack_bits,
)
from gossip.registry import NoOptions, option

__all__ = ["QSGD", "qsgd", "qsgd_width", "sign"]

_SALT_QSGD = 2


@register_compressor("sign")
def sign(cfg: NoOptions | None = None) -> Compressor:
    """Scaled sign, bit-packed."""

    def init(dim, nodes, layout=None, seed=0, *, dtype=torch.float32, device="cpu"):
        return make_state(dim, nodes, layout, seed, dtype=dtype, device=device)

    def encode(X: torch.Tensor, state: CompressorState, step: int):
        check_rows(X, state)
        scale = (X.abs().sum(1, keepdim=True) / state.dim).to(torch.float32)
        bits = pack_bits((X >= 0).to(torch.uint8), 1)
        return (scale, bits), state

    def decode(payload, state: CompressorState, ids, step: int) -> torch.Tensor:
        scale, bits = payload
        s = unpack_bits(bits, 1, state.dim).to(state.dtype) * 2 - 1
        return s * scale.to(state.dtype)

    def payload_row_bytes(dim: int, layout=None, dtype: torch.dtype = torch.float32) -> int:
        return 4 + packed_bytes(dim, 1)

    def omega(dim: int, layout=None) -> float:
        """``1/d``: ``||x||_1^2 / (d ||x||^2) >= 1/d`` (equality for a single nonzero entry)."""
        return 1.0 / dim

    return Compressor("sign", init, encode, decode, payload_row_bytes, {}, biased=True,
                      omega=omega)


def qsgd_width(levels: int) -> int:
    """Bits per entry: one sign bit plus ``bitlen(s)`` bits for a level in ``0 .. s``."""
    return 1 + int(levels).bit_length()


def _levels(v) -> str | None:
    return None if 1 <= v <= 127 else "must be in 1..127"


@dataclass(frozen=True)
class QSGD:
    """``[compression]`` keys of ``qsgd``."""

    levels: int = option(16, "number of quantization levels s", check=_levels)


@register_compressor("qsgd", QSGD)
def qsgd(cfg: QSGD) -> Compressor:
    """QSGD with ``levels`` = ``s`` quantization levels (``1 <= s <= 127``)."""
    s = cfg.levels
    width = qsgd_width(s)

    def init(dim, nodes, layout=None, seed=0, *, dtype=torch.float32, device="cpu"):
        return make_state(dim, nodes, layout, seed, dtype=dtype, device=device)

    def encode(X: torch.Tensor, state: CompressorState, step: int):
        check_rows(X, state)
        Xf = X.to(torch.float32)
        norm = torch.linalg.vector_norm(Xf, dim=1, keepdim=True)
        u = torch.stack(
            [
                torch.rand(
                    state.dim,
                    generator=node_rng(state.seed, node, step, _SALT_QSGD, X.device),
                    device=X.device,
                )
                for node in state.nodes.tolist()
            ]
        ) if X.shape[0] else torch.empty((0, state.dim), device=X.device)
        r = Xf.abs() / torch.where(norm > 0, norm, torch.ones_like(norm)) * s
        low = torch.floor(r)
        level = (low + (u < (r - low)).to(low.dtype)).clamp_(0, s).to(torch.uint8)
        codes = (level << 1) | (Xf < 0).to(torch.uint8)
        return (norm, pack_bits(codes, width)), state

    def decode(payload, state: CompressorState, ids, step: int) -> torch.Tensor:
        norm, packed = payload
        codes = unpack_bits(packed, width, state.dim)
        level = (codes >> 1).to(torch.float32)
        sgn = 1.0 - 2.0 * (codes & 1).to(torch.float32)
        return (norm * sgn * level / s).to(state.dtype)

    def payload_row_bytes(dim: int, layout=None, dtype: torch.dtype = torch.float32) -> int:
        return 4 + packed_bytes(dim, width)

    def omega(dim: int, layout=None) -> float:
        """``1 / (1 + tau)`` with the variance bound ``tau = min(d / s^2, sqrt(d) / s)``."""
        return 1.0 / (1.0 + min(dim / s**2, math.sqrt(dim) / s))

    return Compressor("qsgd", init, encode, decode, payload_row_bytes, asdict(cfg), biased=False,
                      omega=omega)
