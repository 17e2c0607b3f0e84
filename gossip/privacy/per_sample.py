"""Sums of clipped per-sample gradients of a node block, vectorised (no loop over samples).

DP-SGD (Abadi et al. 2016, "Deep Learning with Differential Privacy", Algorithm 1) clips every
per-sample gradient ``g_k = grad l(x; z_k)`` of a mini-batch to the L2 norm ``C``,

    g_k <- g_k / max(1, ||g_k||_2 / C),

and releases their noisy sum. The functions here return, for every node of a block at once,
``S_i = sum_k clip_C(g_{i,k})`` ``(b, d)``, the mean losses ``(b,)`` and the per-sample norms
``||g_{i,k}||`` ``(b, B)`` before clipping:

- :func:`fused_clipped_sum`: chains of Linear/ReLU (the fused back-end,
  :mod:`gossip.problems.classification.fused`). Per sample ``k`` the weight gradient of a
  ``Linear`` is the outer product ``delta_k z_k^T`` of its output gradient and its input, so
  ``||delta_k z_k^T||_F^2 = ||delta_k||^2 ||z_k||^2`` (and ``||delta_k||^2`` for the bias):
  the per-sample norms come out of the one batched backward pass without forming a per-sample
  gradient (Goodfellow 2015, "Efficient Per-Example Gradient Computations"); the clipped sum is
  ``sum_k c_k delta_k z_k^T = (c * delta)^T z``, one ``bmm`` per layer.
- :func:`vmap_clipped_sum`: any model ``torch.func`` handles (the vmap back-end):
  ``vmap`` over the sample axis inside the ``vmap`` over nodes gives the per-sample gradients
  ``(b, B, d)``, in chunks of nodes so that at most :data:`VMAP_FLOATS` floats are held.
- :func:`linear_model_clipped_sum`: logistic regression, ``g_k = s_k a_k`` with
  ``s_k = -y_k sigmoid(-y_k <a_k, x>)``, so ``||g_k|| = |s_k| ||a_k||``.

``clip = inf`` gives the plain sums ``sum_k g_k`` (the factor is 1). With ``weights``
``w`` ``(b, B)`` (Poisson batches, :mod:`gossip.privacy.poisson`: 1 for an included example,
0 for padding) the sums are ``sum_k w_k clip_C(g_{i,k})`` and the losses the mean over the
included examples, ``sum_k w_k l_k / max(1, sum_k w_k)`` (0 for an empty batch); without
``weights`` every entry counts (the bit-identical shuffled path).
"""

from __future__ import annotations

import torch
from torch import nn
from torch.func import functional_call, grad_and_value, vmap
from torch.nn import functional as F

from gossip.models.flat import layout_of, unflatten
from gossip.problems.classification.fused import (
    _bias,
    _inputs,
    _linear,
    _plan_or_raise,
    _weight,
)

__all__ = ["VMAP_FLOATS", "clip_factors", "fused_clipped_sum", "linear_model_clipped_sum",
           "vmap_clipped_sum"]

#: Most floats of per-sample gradients :func:`vmap_clipped_sum` holds at once.
VMAP_FLOATS = 2**25


def clip_factors(norms: torch.Tensor, clip: float) -> torch.Tensor:
    """``1 / max(1, ||g_k|| / C)`` for every entry of ``norms`` (1 where ``C = inf``)."""
    return 1.0 / torch.clamp(norms / clip, min=1.0)


def fused_clipped_sum(
    model: nn.Module, X: torch.Tensor, batches_x: torch.Tensor, batches_y: torch.Tensor,
    clip: float, weights: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(S, losses, norms)`` of a Linear/ReLU chain, shapes as
    :func:`~gossip.problems.classification.fused.fused_grads` (``norms`` ``(b, B)``).

    The forward pass and the backward recursion are those of ``fused_grads`` with the
    per-sample output gradient ``delta_L = softmax(z_L) - onehot(y)`` (not divided by ``B``).
    """
    plan = _plan_or_raise(model, X)
    X = X.detach()
    _, B = batches_y.shape
    a = _inputs(plan, batches_x, 1)
    saved: list[torch.Tensor] = []
    for op in plan.ops:
        saved.append(a)
        a = a.relu() if op == "relu" else _linear(X, op, a)
    logp = a.log_softmax(-1)
    if weights is None:
        losses = -logp.gather(-1, batches_y[..., None]).sum((1, 2)) / B
    else:
        losses = _weighted_mean(-logp.gather(-1, batches_y[..., None])[..., 0], weights)
    delta = logp.exp()
    delta.scatter_add_(-1, batches_y[..., None], torch.full_like(delta[..., :1], -1.0))
    sq = torch.zeros(batches_y.shape, dtype=X.dtype, device=X.device)
    layers = []  # (op, per-sample delta (b, B, out), input (b, B, in)) of every Linear
    first = next(k for k, op in enumerate(plan.ops) if op != "relu")
    for k in range(len(plan.ops) - 1, first - 1, -1):
        op = plan.ops[k]
        if op == "relu":
            delta = delta * (a > 0)
            a = saved[k]
            continue
        z_in = saved[k]
        inp = (z_in * z_in).sum(-1) + (1.0 if op.b_off >= 0 else 0.0)
        sq += (delta * delta).sum(-1) * inp
        layers.append((op, delta, z_in))
        if k > first:
            delta = torch.bmm(delta, _weight(X, op))
        a = z_in
    norms = sq.sqrt()
    c = clip_factors(norms, clip)
    if weights is not None:
        c = c * weights
    c = c.unsqueeze(-1)
    S = torch.empty(X.shape, dtype=X.dtype, device=X.device)
    for op, delta, z_in in layers:
        scaled = delta * c
        torch.bmm(scaled.transpose(1, 2), z_in, out=_weight(S, op))
        if op.b_off >= 0:
            torch.sum(scaled, 1, out=_bias(S, op))
    return S, losses, norms


def vmap_clipped_sum(
    model: nn.Module, X: torch.Tensor, batches_x: torch.Tensor, batches_y: torch.Tensor,
    clip: float, weights: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(S, losses, norms)`` of any model ``torch.func`` can vectorise: per-sample gradients
    by ``vmap(vmap(grad(l), samples), nodes)``, chunked over nodes."""
    layout, buffers = layout_of(model), dict(model.named_buffers())

    def one(row: torch.Tensor, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        logits = functional_call(model, {**unflatten(row, layout), **buffers}, (x[None],))
        return F.cross_entropy(logits, y[None])

    per_node = vmap(vmap(grad_and_value(one), in_dims=(None, 0, 0)))
    b, B = batches_y.shape
    d = X.shape[1]
    chunk = max(1, VMAP_FLOATS // (B * d))
    S = torch.empty_like(X)
    losses = torch.empty(b, dtype=X.dtype, device=X.device)
    norms = torch.empty(b, B, dtype=X.dtype, device=X.device)
    X = X.detach()
    for lo in range(0, b, chunk):
        hi = min(b, lo + chunk)
        Gs, ls = per_node(X[lo:hi], batches_x[lo:hi], batches_y[lo:hi])  # (c, B, d), (c, B)
        nk = torch.linalg.vector_norm(Gs, dim=-1)
        c = clip_factors(nk, clip)
        if weights is None:
            losses[lo:hi] = ls.detach().mean(1)
        else:
            c = c * weights[lo:hi]
            losses[lo:hi] = _weighted_mean(ls.detach(), weights[lo:hi])
        S[lo:hi] = torch.einsum("cb,cbd->cd", c, Gs)
        norms[lo:hi] = nk
    return S, losses, norms


def linear_model_clipped_sum(
    X: torch.Tensor, A: torch.Tensor, y: torch.Tensor, clip: float,
    weights: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(S, losses, norms)`` of logistic regression ``l(x; a, y) = log(1 + exp(-y <a, x>))``
    on samples ``A`` ``(b, B, d)``, ``y`` ``(b, B)`` in ``{-1, +1}`` (losses: the mean ``l``,
    without any regulariser)."""
    z = -y * torch.einsum("bmd,bd->bm", A, X)
    s = -y * torch.sigmoid(z)
    norms = s.abs() * torch.linalg.vector_norm(A, dim=-1)
    c = clip_factors(norms, clip)
    if weights is None:
        return torch.einsum("bm,bmd->bd", c * s, A), F.softplus(z).mean(1), norms
    S = torch.einsum("bm,bmd->bd", c * weights * s, A)
    return S, _weighted_mean(F.softplus(z), weights), norms


def _weighted_mean(values: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """``sum_k w_k v_k / max(1, sum_k w_k)`` over the last axis: the mean over a realised
    Poisson batch (0 for an empty one)."""
    return (values * weights).sum(-1) / weights.sum(-1).clamp(min=1.0)
