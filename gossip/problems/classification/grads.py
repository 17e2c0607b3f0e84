"""Local stochastic gradients of a node block, vectorised over nodes or in a loop.

Node ``i`` holds the flat parameters ``x_i`` (row ``i`` of ``X``) and a mini-batch
``(x_{i,1..B}, y_{i,1..B})``; its loss is the mean cross-entropy

    f_i(x_i) = 1/B sum_k CE(model(x_i; x_{i,k}), y_{i,k}),

and its gradient ``g_i = grad f_i(x_i)``. :func:`vectorized_grads` computes every ``g_i`` in one
call with ``torch.func.vmap(grad_and_value(f))`` over the node axis (``functional_call`` binds
each node's parameters, viewed from its row without copying); :func:`loop_grads` is the plain
per-node autograd loop, for models that cannot be vectorised;
:mod:`gossip.problems.classification.fused` (hand-written batched backward for chains of
Linear/ReLU) is the fastest where it applies. All give the same numbers, and :func:`choose_backend`
picks among them.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import nn
from torch.func import functional_call, grad_and_value, vmap
from torch.nn import functional as F

from gossip.errors import ConfigError
from gossip.models.flat import Layout, layout_of, unflatten
from gossip.problems.classification.fused import fused_grads, fused_logits, linear_plan

__all__ = [
    "BACKENDS",
    "Backend",
    "choose_backend",
    "loop_grads",
    "loop_logits",
    "vectorized_grads",
    "vectorized_logits",
]


def _row_loss(model: nn.Module, layout: Layout, buffers: dict):
    def f(row: torch.Tensor, bx: torch.Tensor, by: torch.Tensor) -> torch.Tensor:
        params = unflatten(row, layout)
        logits = functional_call(model, {**params, **buffers}, (bx,))
        return F.cross_entropy(logits, by)

    return f


def vectorized_grads(
    model: nn.Module, X: torch.Tensor, batches_x: torch.Tensor, batches_y: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Gradients ``G`` ``(b, d)`` and losses ``(b,)`` of every node's mini-batch, in one call.

    ``batches_x`` is ``(b, B, *input_shape)``, ``batches_y`` ``(b, B)``; row ``k`` of ``X`` is
    evaluated on batch ``k``.
    """
    f = _row_loss(model, layout_of(model), dict(model.named_buffers()))
    G, losses = vmap(grad_and_value(f))(X.detach(), batches_x, batches_y)
    return G, losses.detach()


def loop_grads(
    model: nn.Module, X: torch.Tensor, batches_x: torch.Tensor, batches_y: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Same as :func:`vectorized_grads`, one node at a time with ``torch.autograd.grad``."""
    f = _row_loss(model, layout_of(model), dict(model.named_buffers()))
    G = torch.empty_like(X)
    losses = torch.empty(X.shape[0], dtype=X.dtype, device=X.device)
    for k in range(X.shape[0]):
        row = X[k].detach().requires_grad_(True)
        with torch.enable_grad():
            loss = f(row, batches_x[k], batches_y[k])
            (G[k],) = torch.autograd.grad(loss, row)
        losses[k] = loss.detach()
    return G, losses


def vectorized_logits(model: nn.Module, X: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Logits ``(b, N, classes)`` of every node's model on the shared inputs ``x`` ``(N, ...)``."""
    layout, buffers = layout_of(model), dict(model.named_buffers())

    def f(row: torch.Tensor) -> torch.Tensor:
        return functional_call(model, {**unflatten(row, layout), **buffers}, (x,))

    with torch.no_grad():
        return vmap(f)(X)


def loop_logits(model: nn.Module, X: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Same as :func:`vectorized_logits`, one node at a time."""
    layout, buffers = layout_of(model), dict(model.named_buffers())
    with torch.no_grad():
        return torch.stack(
            [functional_call(model, {**unflatten(row, layout), **buffers}, (x,)) for row in X]
        )


class Backend(NamedTuple):
    """How a block's gradients are computed: ``name`` is ``fused``, ``vmap`` or ``loop``."""

    name: str
    grads: object
    logits: object
    reason: str


VMAP = Backend("vmap", vectorized_grads, vectorized_logits, "")
FUSED = Backend("fused", fused_grads, fused_logits, "")
LOOP = Backend("loop", loop_grads, loop_logits, "")
#: Values of ``prefer`` (the ``problem.backend`` key).
BACKENDS = ("auto", "fused", "vmap", "loop")


def _agrees_with_loop(
    backend: Backend, model: nn.Module, input_shape: tuple[int, ...], classes: int
) -> None:
    """Raise ``RuntimeError`` unless ``backend`` gives the loop's gradients, losses and logits
    on a tiny batch."""
    p = next(model.parameters())
    gen = torch.Generator().manual_seed(0)
    d = sum(q.numel() for q in model.parameters())
    X = (0.01 * torch.randn(2, d, generator=gen, dtype=p.dtype)).to(p.device)
    bx = torch.randn(2, 2, *input_shape, generator=gen, dtype=p.dtype).to(p.device)
    by = torch.randint(0, classes, (2, 2), generator=gen).to(p.device)
    G, losses = backend.grads(model, X, bx, by)
    G2, losses2 = loop_grads(model, X, bx, by)
    tol = 1e-4 if p.dtype == torch.float32 else 1e-9
    if not (torch.allclose(G, G2, rtol=tol, atol=tol)
            and torch.allclose(losses, losses2, rtol=tol, atol=tol)):
        raise RuntimeError(f"{backend.name} gradients differ from the loop's")
    if not torch.allclose(backend.logits(model, X, bx[0]), loop_logits(model, X, bx[0]),
                          rtol=tol, atol=tol):
        raise RuntimeError(f"{backend.name} logits differ from the loop's")


def choose_backend(
    model: nn.Module, input_shape: tuple[int, ...], classes: int, prefer: str = "auto"
) -> Backend:
    """The fastest backend that runs on this model and agrees with the loop on a tiny batch.
 ``auto`` tries ``fused`` (:mod:`gossip.problems.classification.fused`: chains of
    Flatten/Linear/ReLU such as ``mlp`` and ``logreg``), then ``vmap``, then falls back to ``loop``.
    ``fused``, ``vmap`` and ``loop`` force one. The returned ``reason`` says which faster backend
    failed (empty when none did: a model that is not a Linear/ReLU chain simply starts at ``vmap``);
    it goes into
    ``summary.json``.

    Raises
    ------
    ConfigError
        ``prefer`` is not one of :data:`BACKENDS`, or ``fused`` is forced on a model that is
        not a chain of Flatten/Linear/ReLU.
    RuntimeError
        The forced backend gives different gradients from the loop's (or fails).
    """
    if prefer not in BACKENDS:
        raise ConfigError(f"backend must be one of {', '.join(BACKENDS)}, got {prefer!r}")
    if prefer == "loop":
        return LOOP._replace(reason="forced by configuration")
    why = []
    if prefer in ("auto", "fused"):
        if linear_plan(model) is None:
            if prefer == "fused":
                raise ConfigError(
                    f"backend 'fused' needs a chain of Flatten/Linear/ReLU (mlp, logreg), "
                    f"got {type(model).__name__}; use auto, vmap or loop"
                )
        else:
            try:
                _agrees_with_loop(FUSED, model, input_shape, classes)
                return FUSED
            except Exception as e:  # any failure of the fused path means: try the next one
                if prefer == "fused":
                    raise
                why.append(f"fused failed: {type(e).__name__}: {str(e)[:200]}")
    try:
        _agrees_with_loop(VMAP, model, input_shape, classes)
    except Exception as e:  # any failure of vmap on this model means: use the loop
        if prefer == "vmap":
            raise
        why.append(f"vmap failed: {type(e).__name__}: {str(e)[:200]}")
        return LOOP._replace(reason="; ".join(why))
    return VMAP._replace(reason="; ".join(why))
