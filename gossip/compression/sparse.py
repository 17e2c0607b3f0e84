"""Sparsifiers: ``topk`` and ``randomk`` (Stich et al. 2018, "Sparsified SGD with memory").

``topk``: keep the ``k`` entries of largest magnitude, ``C(x)_i = x_i`` for ``i in top_k(|x|)``
and 0 elsewhere. Wire: ``k`` values (the row dtype) and ``k`` indices in the narrowest integer
type holding ``dim - 1`` (:func:`~gossip.compression.base.index_dtype`):
``k * (itemsize + index bytes)`` per row. Biased, ``||C(x) - x||^2 <= (1 - k/d) ||x||^2``.

``randomk``: keep ``k`` coordinates drawn from ``(seed, node, step)`` only, so the receiver
draws the same coordinates and only the ``k`` values travel (``k * itemsize`` bytes). The
coordinates are ``S = {(a j + c) mod d : j < k}`` with ``c`` uniform on ``[0, d)`` and ``a`` a
uniform unit mod ``d``: ``k`` distinct coordinates, each included with probability exactly
``k/d``. With ``unbiased = true`` kept values are scaled by ``d/k``, so ``E C(x) = x`` and
``E ||C(x) - x||^2 = (d/k - 1) ||x||^2``; without it ``E ||C(x) - x||^2 = (1 - k/d) ||x||^2``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import torch

from gossip.compression.base import (
    Compressor,
    CompressorState,
    check_rows,
    index_dtype,
    itemsize,
    make_state,
    node_seeds,
    register_compressor,
)
from gossip.errors import ConfigError
from gossip.options import fraction, positive
from gossip.registry import option

__all__ = ["RandomK", "TopK", "keep_count", "random_coordinates", "randomk", "topk"]

DEFAULT_RATIO = 0.01


@dataclass(frozen=True)
class TopK:
    """``[compression]`` keys of ``topk``: ``ratio`` or ``k`` (neither: ratio 0.01)."""

    ratio: float | None = option(None, "fraction of entries kept", check=fraction)
    k: int | None = option(None, "number of entries kept (instead of ratio)", check=positive)

    def __post_init__(self) -> None:
        if self.ratio is not None and self.k is not None:
            raise ConfigError(f"give compression.ratio or compression.k, not both "
                              f"(ratio={self.ratio}, k={self.k})")
        if self.k is None and self.ratio is None:
            object.__setattr__(self, "ratio", DEFAULT_RATIO)


@dataclass(frozen=True)
class RandomK(TopK):
    """``[compression]`` keys of ``randomk``: those of ``topk`` and ``unbiased``."""

    unbiased: bool = option(False, "scale kept values by d/k so E C(x) = x")


_SALT_RANDOMK = 1


def keep_count(dim: int, ratio: float | None, k: int | None, name: str) -> int:
    """``k`` given, else ``max(1, round(ratio * dim))``; must be ``<= dim``."""
    count = int(k) if k is not None else max(1, int(round(float(ratio) * dim)))
    if count > dim:
        raise ConfigError(f"compression.k={count} exceeds the row length {dim} for {name!r}")
    return count


def random_coordinates(
    seed: int, nodes, step: int, dim: int, k: int, device: torch.device | str = "cpu"
) -> torch.Tensor:
    """``(len(nodes), k)`` int64 coordinates ``(a j + c) mod dim`` drawn from
    ``(seed, node, step)`` per row (see the module docstring)."""
    nodes = np.asarray(nodes, dtype=np.int64).reshape(-1)
    h = node_seeds(seed, nodes, step, _SALT_RANDOMK)
    c = h % dim
    a = np.ones_like(h)
    todo = np.arange(len(nodes)) if dim > 2 else np.arange(0)
    draw = 0
    while len(todo):  # a uniform on the units mod dim, by rejection
        draw += 1
        a[todo] = node_seeds(seed, nodes[todo], step, _SALT_RANDOMK + 16 * draw) % (dim - 1) + 1
        todo = todo[np.gcd(a[todo], dim) != 1]
    j = torch.arange(k, dtype=torch.int64, device=device)
    at = torch.from_numpy(a).to(device)[:, None]
    ct = torch.from_numpy(c).to(device)[:, None]
    return (at * j + ct) % dim


@register_compressor("topk", TopK)
def topk(cfg: TopK) -> Compressor:
    """Top-k sparsification; options ``ratio`` or ``k``."""

    def init(dim, nodes, layout=None, seed=0, *, dtype=torch.float32, device="cpu"):
        keep_count(dim, cfg.ratio, cfg.k, "topk")
        return make_state(dim, nodes, layout, seed, dtype=dtype, device=device)

    def encode(X: torch.Tensor, state: CompressorState, step: int):
        check_rows(X, state)
        k = keep_count(state.dim, cfg.ratio, cfg.k, "topk")
        idx = torch.topk(X.abs(), k, dim=1, sorted=False).indices
        values = torch.gather(X, 1, idx)
        return (values, idx.to(index_dtype(state.dim))), state

    def decode(payload, state: CompressorState, ids, step: int) -> torch.Tensor:
        values, idx = payload
        out = torch.zeros((values.shape[0], state.dim), dtype=state.dtype, device=values.device)
        return out.scatter_(1, idx.to(torch.int64), values.to(state.dtype))

    def payload_row_bytes(dim: int, layout=None, dtype: torch.dtype = torch.float32) -> int:
        k = keep_count(dim, cfg.ratio, cfg.k, "topk")
        return k * (itemsize(dtype) + itemsize(index_dtype(dim)))

    def omega(dim: int, layout=None) -> float:
        """``k/d``: the ``k`` largest entries hold at least ``k/d`` of ``||x||^2``."""
        return keep_count(dim, cfg.ratio, cfg.k, "topk") / dim

    return Compressor("topk", init, encode, decode, payload_row_bytes, asdict(cfg), biased=True,
                      omega=omega)


@register_compressor("randomk", RandomK)
def randomk(cfg: RandomK) -> Compressor:
    """Random-k sparsification with shared seeds; options ``ratio`` or ``k``, ``unbiased``."""
    unbiased = cfg.unbiased

    def init(dim, nodes, layout=None, seed=0, *, dtype=torch.float32, device="cpu"):
        keep_count(dim, cfg.ratio, cfg.k, "randomk")
        return make_state(dim, nodes, layout, seed, dtype=dtype, device=device)

    def encode(X: torch.Tensor, state: CompressorState, step: int):
        check_rows(X, state)
        k = keep_count(state.dim, cfg.ratio, cfg.k, "randomk")
        idx = random_coordinates(state.seed, state.nodes, step, state.dim, k, X.device)
        values = torch.gather(X, 1, idx)
        if unbiased:
            values = values * (state.dim / k)
        return (values,), state

    def decode(payload, state: CompressorState, ids, step: int) -> torch.Tensor:
        (values,) = payload
        k = values.shape[1]
        idx = random_coordinates(state.seed, ids, step, state.dim, k, values.device)
        out = torch.zeros((values.shape[0], state.dim), dtype=state.dtype, device=values.device)
        return out.scatter_(1, idx, values.to(state.dtype))

    def payload_row_bytes(dim: int, layout=None, dtype: torch.dtype = torch.float32) -> int:
        return keep_count(dim, cfg.ratio, cfg.k, "randomk") * itemsize(dtype)

    def omega(dim: int, layout=None) -> float:
        """``k/d``: biased, ``1 - (1 - k/d)``; unbiased, ``1 / (1 + tau)``, ``tau = d/k - 1``."""
        return keep_count(dim, cfg.ratio, cfg.k, "randomk") / dim

    return Compressor("randomk", init, encode, decode, payload_row_bytes, asdict(cfg),
                      biased=not unbiased, omega=omega)
