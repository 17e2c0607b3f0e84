"""The ``[compression]`` config section: operator names, their options, and the factory.

Keys: ``name`` (one of :func:`compressor_names`), ``ratio`` or ``k`` (``topk``, ``randomk``),
``unbiased`` (``randomk``), ``levels`` (``qsgd``), ``rank`` (``lowrank``), ``error_feedback``
(``true``: wrap the operator in :func:`~gossip.compression.error_feedback.error_feedback`;
``false``: never; not given: the gossip algorithms use the plain operator and ``allreduce`` /
``fedavg`` use error feedback for biased operators, see :mod:`gossip.compression.centralized`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from gossip.compression.base import Compressor
from gossip.compression.cast import bf16, fp16, none
from gossip.compression.error_feedback import error_feedback
from gossip.compression.lowrank import lowrank
from gossip.compression.quantize import qsgd, sign
from gossip.compression.sparse import randomk, topk
from gossip.errors import ConfigError
from gossip.options import Option, at_least, fraction, positive, resolve, unknown_name

__all__ = ["OPTIONS", "compressor_names", "describe_compression", "make_compressor"]

_FACTORIES: dict[str, Callable[[dict], Compressor]] = {
    "none": none,
    "fp16": fp16,
    "bf16": bf16,
    "topk": topk,
    "randomk": randomk,
    "sign": sign,
    "qsgd": qsgd,
    "lowrank": lowrank,
}

# which optional keys each operator reads (besides name and error_feedback)
_USES: dict[str, tuple[str, ...]] = {
    "none": (),
    "fp16": (),
    "bf16": (),
    "topk": ("ratio", "k"),
    "randomk": ("ratio", "k", "unbiased"),
    "sign": (),
    "qsgd": ("levels",),
    "lowrank": ("rank",),
}


def _levels(v) -> str | None:
    return None if 1 <= v <= 127 else "must be in 1..127"


OPTIONS: list[Option] = [
    Option("name", str, "none", "compression operator", choices=tuple(_FACTORIES)),
    Option("ratio", float, None, "topk/randomk: fraction of entries kept", check=fraction),
    Option("k", int, None, "topk/randomk: number of entries kept (instead of ratio)",
           check=positive),
    Option("unbiased", bool, None, "randomk: scale kept values by d/k so E C(x) = x"),
    Option("levels", int, None, "qsgd: number of quantization levels s", check=_levels),
    Option("rank", int, None, "lowrank: rank r of the power iteration", check=at_least(1)),
    Option("error_feedback", bool, None,
           "error feedback (EF-SGD): true always, false never; default: allreduce/fedavg "
           "use it for biased operators (fp16, bf16, topk, sign, lowrank, randomk biased)"),
]

_DEFAULTS = {"ratio": 0.01, "unbiased": False, "levels": 16, "rank": 2}


def compressor_names() -> list[str]:
    """Names accepted by :func:`make_compressor`."""
    return list(_FACTORIES)


def make_compressor(name: str, options: dict | None = None) -> Compressor:
    """The operator ``name`` built from the ``[compression]`` keys in ``options``.

    Raises
    ------
    ConfigError
        Unknown name, unknown or inapplicable key, both ``ratio`` and ``k``, bad value.
    """
    if name not in _FACTORIES:
        raise unknown_name("compression operator", name, list(_FACTORIES))
    given = {key: v for key, v in (options or {}).items() if key != "name"}
    resolved = resolve("compression", {"name": name, **given}, OPTIONS)
    uses = _USES[name]
    for key in given:
        if key != "error_feedback" and key not in uses:
            allowed = ", ".join(uses) or "none besides error_feedback"
            raise ConfigError(
                f"compression.{key} does not apply to {name!r}; its keys: {allowed}"
            )
    if resolved["ratio"] is not None and resolved["k"] is not None:
        raise ConfigError(
            f"give compression.ratio or compression.k, not both "
            f"(ratio={resolved['ratio']}, k={resolved['k']})"
        )
    chosen = {}
    for key in uses:
        if resolved[key] is not None:
            chosen[key] = resolved[key]
        elif key in _DEFAULTS and not (key == "ratio" and resolved["k"] is not None):
            chosen[key] = _DEFAULTS[key]
    compressor = _FACTORIES[name](chosen)
    if resolved["error_feedback"]:
        return error_feedback(compressor)
    return compressor._replace(
        options={**compressor.options, "error_feedback": resolved["error_feedback"]}
    )


def describe_compression(
    compressor: Compressor, dim: int, layout, dtype: torch.dtype, stats, rows_per_message: int = 1
) -> dict[str, Any]:
    """The ``compression`` entry of ``summary.json``.

    ``ratio`` is the operator's nominal ratio ``dim * itemsize / payload_row_bytes`` (dense row
    in the problem's dtype over one encoded row); ``measured_ratio`` is the dense bytes the
    run's messages would have taken, ``messages * rows_per_message * dim * itemsize`` (a
    message of a compressed run carries ``rows_per_message`` encoded rows), over the bytes it
    sent (``stats`` summed over ranks): below ``ratio`` when some messages travel dense (the
    model download of ``allreduce`` / ``fedavg``).
    """
    row = int(compressor.payload_row_bytes(dim, layout, dtype))
    dense_row = dim * torch.empty((), dtype=dtype).element_size()
    dense = stats.messages * rows_per_message * dense_row
    return {
        "name": compressor.name,
        "options": {k: v for k, v in compressor.options.items() if v is not None},
        "payload_row_bytes": row,
        "dense_row_bytes": dense_row,
        "ratio": dense_row / row,
        "dense_bytes": dense,
        "measured_ratio": dense / stats.bytes_sent if stats.bytes_sent else None,
    }
