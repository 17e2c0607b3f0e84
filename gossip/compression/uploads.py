"""Compressed uploads with error feedback for the centralized modes (``allreduce``, ``fedavg``).

Every node ``i`` that sends compresses its vector ``x_i`` (a gradient or a model delta) with
error feedback (EF-SGD, Karimireddy et al. 2019, "Error Feedback Fixes SignSGD and other
Gradient Compression Schemes", Algorithm 2; the error buffers of PowerSGD, Vogels et al. 2019;
the step is :func:`~gossip.compression.error_feedback.ef_step`, the one of the wrapper)::

    e_i <- e_i + x_i
    q_i  = C(e_i)                 (the payload that goes on the wire)
    e_i <- e_i - D(q_i)

and the receiver applies ``D(q_i)``, the exact rows that were sent. Summed over rounds,
``sum_t x_i(t) - sum_t D(q_i(t)) = e_i``: nothing the compressor drops is lost, it is only
delayed, which is what lets biased operators (top-k, sign, low-rank) converge.

When EF is used (:func:`wants_error_feedback`):

- ``compression.error_feedback = true``: always (``make_compressor`` returns the operator
  wrapped in :func:`~gossip.compression.error_feedback.error_feedback`; the algorithms here
  unwrap it and keep ``e`` in their own state);
- ``compression.error_feedback = false``: never;
- not given (the default): for the *biased* operators (:func:`is_biased`: ``fp16``, ``bf16``,
  ``topk``, ``sign``, ``lowrank``, ``randomk`` without ``unbiased``), not for the unbiased
  ones (``none``, ``qsgd``, ``randomk`` with ``unbiased = true``), whose errors average out.
  A biased operator without EF stalls away from the optimum (top-k keeps only the largest
  coordinates of a gradient that keeps pointing the same way), so EF is the sensible default.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import torch

from gossip.compression.base import Compressor
from gossip.compression.error_feedback import ef_step

__all__ = ["compress_rows", "init_upload", "is_biased", "unwrap", "wants_error_feedback"]

def unwrap(compressor: Compressor) -> Compressor:
    """The plain operator (without an error-feedback wrapper)."""
    while compressor.inner is not None:
        compressor = compressor.inner
    return compressor


def is_biased(compressor: Compressor) -> bool:
    """Whether ``E C(x) != x`` for the plain operator (``Compressor.biased``: deterministic
    rounding and sparsifying, sign, low-rank, random-k without the ``d/k`` scaling)."""
    return unwrap(compressor).biased


def wants_error_feedback(compressor: Compressor) -> bool:
    """EF on or off for a centralized upload (see the module docstring for the rule)."""
    if compressor.inner is not None:
        return True
    setting = compressor.options.get("error_feedback")
    return is_biased(compressor) if setting is None else bool(setting)


def init_upload(
    compressor: Compressor, X: torch.Tensor, nodes: range, layout: Any, seed: int
) -> tuple[torch.Tensor, NamedTuple]:
    """``(E, C)`` for the hosted block ``X`` ``(b, d)``: the error memory (zeros ``(b, d)`` with
    EF, an empty ``(b, 0)`` without) and the plain operator's state."""
    b, d = X.shape
    width = d if wants_error_feedback(compressor) else 0
    E = torch.zeros((b, width), dtype=X.dtype, device=X.device)
    C = unwrap(compressor).init(d, nodes, layout, seed, dtype=X.dtype, device=X.device)
    return E, C


def compress_rows(
    compressor: Compressor,
    X: torch.Tensor,
    E: torch.Tensor,
    C: NamedTuple,
    step: int,
    mask: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor, NamedTuple]:
    """Compress the hosted rows ``X`` (with EF when ``E`` has columns); returns ``(Q, E, C)``.

    ``Q`` ``(b, d)`` holds the decoded rows ``D(q_i)``: exactly what the receivers get. With a
    boolean ``mask`` ``(b,)`` only those rows send: the other rows of ``Q`` are zero and their
    error memory and operator memory (low-rank warm start) stay as they were.
    """
    plain = unwrap(compressor)
    ef = E.shape[1] > 0
    if ef:
        _, Q, E_new, C_new = ef_step(plain, X, E, C, step)
    else:
        payload, C_new = plain.encode(X, C, step)
        Q, E_new = plain.decode(payload, C_new, C_new.nodes, step).to(X.dtype), E
    if mask is not None:
        keep = mask.to(X.device).unsqueeze(1)
        Q = torch.where(keep, Q, torch.zeros_like(Q))
        if ef:
            E_new = torch.where(keep, E_new, E)
        memory = tuple(
            torch.where(mask.to(new.device).reshape(-1, *[1] * (new.ndim - 1)), new, old)
            for new, old in zip(C_new.memory, C.memory)
        )
        C_new = C_new._replace(memory=memory)
    return Q, E_new, C_new
