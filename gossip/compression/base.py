"""The compressor interface: pure functions with explicit state (optax style).

A :class:`Compressor` is a ``NamedTuple`` of pure functions (after optax's
``GradientTransformation``)::

    state            = init(dim, nodes, layout, seed, dtype=..., device=...)
    payload, state   = encode(X, state, step)            # X: (b, dim), row k <-> state.nodes[k]
    X_decoded        = decode(payload, state, ids, step)  # (len(ids), dim) in state.dtype

A *payload* is a tuple of tensors that all share the leading row axis ``b`` (row ``k`` of every
tensor belongs to node ``nodes[k]``), so a communicator can move single rows between processes
(:meth:`gossip.comm.base.Communicator.share`) without looking inside. ``decode`` may be called
by any process on rows of any nodes ``ids``: it needs only the payload rows, the step and the
configuration kept in a receiver's state (dimension, layout, seed), never the sender's memory.

Randomness (random-k coordinates, QSGD rounding, the first low-rank ``Q``) comes from a
generator seeded by ``(seed, node, step)`` only (:func:`node_rng`), so sender and receiver draw
the same numbers and a run gives the same bytes and values in process and over MPI.

``payload_row_bytes(dim, layout, dtype)`` is the closed-form size of one encoded row; it always
equals the size of the buffers ``encode`` returns (a test checks it for every operator).

Every operator registers in :data:`COMPRESSORS` with :func:`register_compressor`: a factory
``factory(cfg) -> Compressor`` and the frozen dataclass ``cfg`` of its ``[compression]`` keys.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import numpy as np
import torch

from gossip.errors import ConfigError
from gossip.registry import NoOptions, Registry

__all__ = [
    "COMPRESSORS",
    "Compressor",
    "CompressorState",
    "Layout",
    "index_dtype",
    "make_state",
    "node_rng",
    "node_seed",
    "node_seeds",
    "pack_bits",
    "register_compressor",
    "unpack_bits",
]

Layout = Sequence[tuple[str, tuple[int, ...]]]
Payload = tuple[torch.Tensor, ...]


class CompressorState(NamedTuple):
    """What a compressor remembers for the rows it encodes.

    Attributes
    ----------
    dim : int
        Length of a row.
    nodes : torch.Tensor
        int64 ids of the nodes whose rows this state encodes (row ``k`` is ``nodes[k]``).
    seed : int
        The run's seed; randomness is drawn from ``(seed, node, step)``.
    dtype : torch.dtype
        Dtype of the rows given to ``encode`` and returned by ``decode``.
    layout : tuple
        ``((name, shape), ...)``: how a row splits into parameters (low-rank uses it).
    memory : tuple of tensors
        Operator memory with a leading row axis (low-rank: warm-start ``Q`` per matrix).
    """

    dim: int
    nodes: torch.Tensor
    seed: int
    dtype: torch.dtype
    layout: tuple
    memory: tuple = ()


class Compressor(NamedTuple):
    """A compression operator as pure functions (see the module docstring).

    Attributes
    ----------
    name : str
        Registry name (``topk``).
    init : callable
        ``init(dim, nodes, layout=None, seed=0, *, dtype=torch.float32, device="cpu")``.
    encode : callable
        ``encode(X, state, step) -> (payload, state)``.
    decode : callable
        ``decode(payload, state, ids, step) -> (len(ids), dim)`` tensor.
    payload_row_bytes : callable
        ``payload_row_bytes(dim, layout=None, dtype=torch.float32) -> int``.
    options : dict
        The resolved options it was built with.
    biased : bool
        Whether ``E C(x) != x`` (deterministic rounding and sparsifying, sign, low-rank,
        random-k without the ``d/k`` scaling): the centralized modes then default to error
        feedback (:func:`~gossip.compression.uploads.wants_error_feedback`).
    inner : Compressor or None
        For a wrapper (:func:`~gossip.compression.error_feedback.error_feedback`), the
        operator it wraps; None for a plain operator.
    omega : callable or None
        ``omega(dim, layout=None) -> float``: the compression quality ``omega`` in ``(0, 1]`` of
        Koloskova, Stich & Jaggi 2019 (Assumption 1), ``E ||C(x) - x||^2 <= (1 - omega)
        ||x||^2`` for every ``x`` (1: exact). For an unbiased operator of variance ``tau``
        (``E ||C(x) - x||^2 <= tau ||x||^2``) it is ``1 / (1 + tau)``, the quality of the
        rescaled ``C / (1 + tau)`` of their Section 3. CHOCO and BEER derive their default
        consensus step from it (:mod:`gossip.algorithms.consensus_step`); None: not stated.
    """

    name: str
    init: Callable[..., Any]
    encode: Callable[..., tuple[Payload, Any]]
    decode: Callable[..., torch.Tensor]
    payload_row_bytes: Callable[..., int]
    options: dict
    biased: bool
    inner: Any = None
    omega: Callable[..., float] | None = None


#: Every compression operator by its ``[compression] name``.
COMPRESSORS: Registry[Callable[[Any], Compressor]] = Registry("compression operator",
                                                              "compression")


def register_compressor(name: str, config: type = NoOptions) -> Callable:
    """Decorator: the factory ``factory(cfg) -> Compressor`` joins :data:`COMPRESSORS` as
    ``name``, its ``[compression]`` keys being the fields of the dataclass ``config``."""
    return COMPRESSORS.register(name, config)


def make_state(
    dim: int,
    nodes: Sequence[int] | range | torch.Tensor | np.ndarray,
    layout: Layout | None = None,
    seed: int = 0,
    *,
    dtype: torch.dtype = torch.float32,
    device: torch.device | str = "cpu",
    memory: tuple = (),
) -> CompressorState:
    """The common part of every operator's ``init``; checks ``dim`` and ``layout``."""
    if isinstance(dim, bool) or not isinstance(dim, (int, np.integer)) or dim < 1:
        raise ConfigError(f"compression needs a row length dim >= 1, got {dim!r}")
    lay = tuple((str(name), tuple(int(s) for s in shape)) for name, shape in (layout or ()))
    total = sum(int(np.prod(s)) for _, s in lay)
    if lay and total != dim:
        raise ConfigError(f"layout sizes sum to {total}, not the row length dim={dim}")
    ids = torch.as_tensor(np.asarray(list(nodes) if isinstance(nodes, range) else nodes),
                          dtype=torch.int64).reshape(-1)
    return CompressorState(int(dim), ids, int(seed), dtype, lay, memory)


_MASK = (1 << 64) - 1


def _splitmix(z: np.ndarray) -> np.ndarray:
    """The splitmix64 finaliser (Steele et al. 2014), elementwise on uint64 (wrapping)."""
    z = (z + np.uint64(0x9E3779B97F4A7C15)) & np.uint64(_MASK)
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))


def node_seeds(seed: int, nodes, step: int, salt: int = 0) -> np.ndarray:
    """63-bit seeds (int64) that depend only on ``(seed, node, step, salt)``, one per node.

    A splitmix64 hash chain over the four numbers, vectorised over ``nodes``.
    """
    with np.errstate(over="ignore"):
        z = _splitmix(np.full(len(nodes), int(seed) & _MASK, dtype=np.uint64))
        for word in (np.asarray(nodes, dtype=np.int64).astype(np.uint64),
                     np.uint64(int(step) & _MASK), np.uint64(int(salt) & _MASK)):
            z = _splitmix(z ^ word)
    return (z >> np.uint64(1)).astype(np.int64)


def node_seed(seed: int, node: int, step: int, salt: int = 0) -> int:
    """A 63-bit seed that depends only on ``(seed, node, step, salt)``."""
    return int(node_seeds(seed, [node], step, salt)[0])


def node_rng(seed: int, node: int, step: int, salt: int, device: torch.device) -> torch.Generator:
    """A torch generator on ``device`` seeded from ``(seed, node, step, salt)`` only."""
    g = torch.Generator(device=device)
    g.manual_seed(node_seed(seed, node, step, salt))
    return g


def index_dtype(dim: int) -> torch.dtype:
    """The narrowest integer dtype with CPU support that holds every index ``0 .. dim - 1``.

    ``uint8`` up to 256 entries, ``int16`` up to 32768 (torch lacks uint16 arithmetic on the
    CPU in some versions), ``int32`` up to 2**31, else ``int64``.
    """
    if dim - 1 <= 255:
        return torch.uint8
    if dim - 1 <= 32767:
        return torch.int16
    if dim - 1 <= 2**31 - 1:
        return torch.int32
    return torch.int64


def packed_bytes(count: int, width: int) -> int:
    """Bytes that ``count`` codes of ``width`` bits take when packed: ``ceil(count*width/8)``."""
    return (count * width + 7) // 8


def pack_bits(codes: torch.Tensor, width: int) -> torch.Tensor:
    """Pack ``(b, d)`` unsigned codes ``< 2**width`` (``width <= 8``) into ``(b, ceil(d*width/8))``
    uint8, most significant bit first, codes back to back across byte boundaries."""
    b, d = codes.shape
    codes = codes.to(torch.uint8)
    bits = torch.empty((b, d, width), dtype=torch.uint8, device=codes.device)
    for k in range(width):
        bits[:, :, k] = (codes >> (width - 1 - k)) & 1
    nbytes = packed_bytes(d, width)
    flat = torch.zeros((b, nbytes * 8), dtype=torch.uint8, device=codes.device)
    flat[:, : d * width] = bits.reshape(b, d * width)
    flat = flat.reshape(b, nbytes, 8)
    out = torch.zeros((b, nbytes), dtype=torch.uint8, device=codes.device)
    for k in range(8):
        out |= flat[:, :, k] << (7 - k)
    return out


def unpack_bits(packed: torch.Tensor, width: int, d: int) -> torch.Tensor:
    """Inverse of :func:`pack_bits`: ``(b, d)`` uint8 codes."""
    b, nbytes = packed.shape
    flat = torch.empty((b, nbytes, 8), dtype=torch.uint8, device=packed.device)
    for k in range(8):
        flat[:, :, k] = (packed >> (7 - k)) & 1
    bits = flat.reshape(b, nbytes * 8)[:, : d * width].reshape(b, d, width)
    codes = torch.zeros((b, d), dtype=torch.uint8, device=packed.device)
    for k in range(width):
        codes |= bits[:, :, k] << (width - 1 - k)
    return codes


def check_rows(X: torch.Tensor, state: CompressorState) -> None:
    """``X`` must be ``(len(state.nodes), state.dim)``; a mismatch is a bug, not a user error."""
    if X.ndim != 2 or X.shape[1] != state.dim or X.shape[0] != state.nodes.numel():
        want = (state.nodes.numel(), state.dim)
        raise ValueError(f"encode expects rows of shape {want}, got {tuple(X.shape)}")


def itemsize(dtype: torch.dtype) -> int:
    """Bytes of one element of ``dtype``."""
    return torch.empty((), dtype=dtype).element_size()
