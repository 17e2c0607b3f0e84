"""The ``[compression]`` config section: operator names, their options, and the factory.

Keys: ``name`` (one of :func:`compressor_names`), ``ratio`` or ``k`` (``topk``, ``randomk``),
``unbiased`` (``randomk``), ``levels`` (``qsgd``), ``rank`` (``lowrank``), ``error_feedback``
(``true``: wrap the operator in :func:`~gossip.compression.error_feedback.error_feedback`;
``false``: never; not given: the gossip algorithms use the plain operator and ``allreduce`` /
``fedavg`` use error feedback for biased operators, see :mod:`gossip.compression.uploads`).
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import torch

from gossip.compression import cast, lowrank, quantize, sparse  # noqa: F401  (they register)
from gossip.compression.base import COMPRESSORS, Compressor
from gossip.compression.error_feedback import error_feedback
from gossip.errors import ConfigError
from gossip.options import Option, resolve

__all__ = ["compressor_names", "describe_compression", "make_compressor", "section_options"]

#: The ``[compression]`` key every operator takes (besides ``name``).
ERROR_FEEDBACK = Option(
    "error_feedback", bool, None,
    "error feedback (EF-SGD): true always, false never; default: allreduce/fedavg "
    "use it for biased operators (fp16, bf16, topk, sign, lowrank, randomk biased)",
)


def section_options() -> list[Option]:
    """Every ``[compression]`` key: ``name``, the union of the operators' own keys (default
    None: "not set"; the help names the operators that read the key), ``error_feedback``."""
    union: dict[str, tuple[Option, list[str]]] = {}
    for name in COMPRESSORS.names():
        for o in COMPRESSORS.options(name):
            if o.name in union and union[o.name][0].type is not o.type:
                raise TypeError(f"compression.{o.name} is declared with two types")
            union.setdefault(o.name, (o, []))[1].append(name)
    keys = [replace(o, default=None, help=f"{'/'.join(users)}: {o.help}")
            for o, users in union.values()]
    return [Option("name", str, "none", "compression operator", choices=COMPRESSORS),
            *keys, ERROR_FEEDBACK]


def compressor_names() -> list[str]:
    """Names accepted by :func:`make_compressor`, sorted."""
    return COMPRESSORS.names()


def make_compressor(name: str, options: dict | None = None) -> Compressor:
    """The operator ``name`` built from the ``[compression]`` keys in ``options``.

    Raises
    ------
    ConfigError
        Unknown name, unknown or inapplicable key, both ``ratio`` and ``k``, bad value.
    """
    factory = COMPRESSORS[name]
    given = {key: v for key, v in (options or {}).items() if key != "name"}
    ef = resolve("compression", {"name": name, **given}, section_options())["error_feedback"]
    uses = [o.name for o in COMPRESSORS.options(name)]
    for key in given:
        if key != "error_feedback" and key not in uses:
            allowed = ", ".join(uses) or "none besides error_feedback"
            raise ConfigError(
                f"compression.{key} does not apply to {name!r}; its keys: {allowed}"
            )
    cfg = COMPRESSORS.config(name, {k: v for k, v in given.items() if k != "error_feedback"})
    compressor = factory(cfg)
    if ef:
        return error_feedback(compressor)
    return compressor._replace(options={**compressor.options, "error_feedback": ef})


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
