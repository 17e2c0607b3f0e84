"""Fused gradients of a node block for chains of ``Linear`` and ``ReLU``: batched matmuls, no
autograd.

For a model that is a chain ``z_0 = vec(a)``, ``z_l = W_l z_{l-1} + b_l`` (``Linear``) or
``z_l = max(z_{l-1}, 0)`` (``ReLU``), the loss of node ``i`` on its batch
``(a_{i,k}, y_{i,k})_{k=1..B}`` is the mean cross-entropy

    f_i = 1/B sum_k [ -log softmax(z_L)_{y_k} ],

and backpropagation (Rumelhart, Hinton & Williams 1986) gives, with ``delta_L = dL/dz_L =
(softmax(z_L) - onehot(y)) / B``,

    dL/dW_l = delta_l^T z_{l-1},   dL/db_l = sum_k delta_{l,k},   delta_{l-1} = delta_l W_l
    (Linear),   delta_{l-1} = delta_l * 1[z_l > 0]   (ReLU).

Each line is one ``torch.bmm``/``baddbmm`` over the node axis: node ``i``'s ``W_l`` is a
``(out, in)`` view into row ``i`` of the block ``X`` (layout :mod:`gossip.models.flat`), and the
gradients are written straight into the views of ``G``. This is the same arithmetic autograd
does per node, without ``torch.func``'s per-sample bookkeeping, so it is ~3x faster than
``vmap`` on one CPU core (``benchmarks/simulation.py``).

Models that qualify (:func:`linear_plan`): ``nn.Sequential`` of ``Flatten``/``Linear``/``ReLU``
(biases on or off) and the registry's ``mlp`` and ``logreg`` (:mod:`gossip.models.nets`).
"""

from __future__ import annotations

import weakref
from typing import NamedTuple

import torch
from torch import nn

from gossip.models.nets import MLP, LogReg

__all__ = ["LinearPlan", "fused_grads", "fused_logits", "linear_plan"]


class _Linear(NamedTuple):
    """One ``Linear``: offsets of its weight ``(out, in)`` and bias (``-1``: none) in a row."""

    w_off: int
    b_off: int
    out: int
    inp: int


class LinearPlan(NamedTuple):
    """The chain as ops (``_Linear`` or the string ``"relu"``) and the row width ``d``."""

    ops: tuple
    flatten_input: bool
    dim: int


_PLANS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _chain(model: nn.Module) -> list[nn.Module] | None:
    """The model as a flat list of ``Flatten``/``Linear``/``ReLU`` modules, or ``None``."""
    if type(model) is LogReg:
        return [nn.Flatten(), model.fc]
    if type(model) is MLP:
        mods: list[nn.Module] = [nn.Flatten()]
        for layer in model.hidden:
            mods += [layer, nn.ReLU()]
        return [*mods, model.out]
    if type(model) is not nn.Sequential:
        return None
    mods = list(model)
    for m in mods:
        if type(m) is nn.Flatten and (m.start_dim, m.end_dim) == (1, -1):
            continue
        if type(m) not in (nn.Linear, nn.ReLU):
            return None
    return mods


def linear_plan(model: nn.Module) -> LinearPlan | None:
    """The fused plan of ``model``, or ``None`` when it is not a chain of Linear/ReLU.

    Qualify: the registry's ``logreg`` and ``mlp`` (exact classes), and ``nn.Sequential`` of
    ``nn.Flatten()`` (default dims), ``nn.Linear`` and ``nn.ReLU``, each ``Linear`` used once,
    with at least one ``Linear``, no buffers, every parameter belonging to a ``Linear``.
    """
    if model in _PLANS:
        return _PLANS[model]
    plan = _make_plan(model)
    _PLANS[model] = plan
    return plan


def _make_plan(model: nn.Module) -> LinearPlan | None:
    mods = _chain(model)
    if mods is None or next(model.named_buffers(), None) is not None:
        return None
    offsets, off = {}, 0
    for p in model.parameters():
        offsets[id(p)] = off
        off += p.numel()
    ops: list = []
    seen: set[int] = set()
    flatten_input = False
    for m in mods:
        if isinstance(m, nn.Flatten):
            if not any(isinstance(o, _Linear) for o in ops):
                flatten_input = True
        elif isinstance(m, nn.ReLU):
            ops.append("relu")
        else:
            if id(m) in seen:
                return None
            seen.add(id(m))
            b_off = -1 if m.bias is None else offsets[id(m.bias)]
            ops.append(_Linear(offsets[id(m.weight)], b_off, m.out_features, m.in_features))
    n_linear = len(seen)
    n_params = sum(1 for o in ops if isinstance(o, _Linear) for _ in range(1 + (o.b_off >= 0)))
    if n_linear == 0 or n_params != len(offsets):
        return None
    return LinearPlan(tuple(ops), flatten_input, off)


def _inputs(plan: LinearPlan, x: torch.Tensor, lead: int) -> torch.Tensor:
    """Inputs ``(..., B, in)``: flattened when the chain starts with ``Flatten``."""
    if plan.flatten_input:
        return x.flatten(lead + 1)
    if x.ndim != lead + 2:
        raise ValueError(
            f"inputs of shape {tuple(x.shape[lead + 1:])} need a Flatten before the first Linear"
        )
    return x


def _weight(X: torch.Tensor, op: _Linear) -> torch.Tensor:
    return X[:, op.w_off : op.w_off + op.out * op.inp].view(X.shape[0], op.out, op.inp)


def _bias(X: torch.Tensor, op: _Linear) -> torch.Tensor | None:
    return None if op.b_off < 0 else X[:, op.b_off : op.b_off + op.out]


def _linear(X: torch.Tensor, op: _Linear, a: torch.Tensor) -> torch.Tensor:
    """``a W^T + b`` for every node: ``a`` ``(b, B, in)`` -> ``(b, B, out)``."""
    Wt = _weight(X, op).transpose(1, 2)
    b = _bias(X, op)
    return torch.bmm(a, Wt) if b is None else torch.baddbmm(b[:, None, :], a, Wt)


def _plan_or_raise(model: nn.Module, X: torch.Tensor) -> LinearPlan:
    plan = linear_plan(model)
    if plan is None:
        raise ValueError(f"{type(model).__name__} is not a chain of Flatten/Linear/ReLU")
    if X.ndim != 2 or X.shape[1] != plan.dim:
        raise ValueError(f"block of shape {tuple(X.shape)} does not match the model's d={plan.dim}")
    return plan


def fused_grads(
    model: nn.Module, X: torch.Tensor, batches_x: torch.Tensor, batches_y: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Gradients ``G`` ``(b, d)`` and mean cross-entropy losses ``(b,)`` of every node.
 Same contract and numbers as :func:`gossip.problems.classification.grads.vectorized_grads`:
``batches_x`` is ``(b, B, *input_shape)``, ``batches_y`` ``(b, B)`` class indices, row ``k`` of
``X`` is
    evaluated on batch ``k``. The module's own parameters are not used (only its structure).

    Raises
    ------
    ValueError
        The model is not a chain of Flatten/Linear/ReLU, or shapes do not match it.
    """
    plan = _plan_or_raise(model, X)
    X = X.detach()
    _, B = batches_y.shape
    a = _inputs(plan, batches_x, 1)
    saved: list[torch.Tensor] = []  # input of each Linear, output of each ReLU, in order
    for op in plan.ops:
        saved.append(a)
        a = a.relu() if op == "relu" else _linear(X, op, a)
    logp = a.log_softmax(-1)
    losses = -logp.gather(-1, batches_y[..., None]).sum((1, 2)) / B
    delta = logp.exp_()  # softmax, reusing logp's storage
    delta.scatter_add_(-1, batches_y[..., None], torch.full_like(delta[..., :1], -1.0))
    delta.div_(B)
    G = torch.empty(X.shape, dtype=X.dtype, device=X.device)  # every entry is written below
    first = next(k for k, op in enumerate(plan.ops) if op != "relu")
    for k in range(len(plan.ops) - 1, first - 1, -1):
        op = plan.ops[k]
        if op == "relu":
            delta.mul_(a > 0)
            a = saved[k]
            continue
        z_in = saved[k]
        torch.bmm(delta.transpose(1, 2), z_in, out=_weight(G, op))
        if op.b_off >= 0:
            torch.sum(delta, 1, out=_bias(G, op))
        if k > first:
            delta = torch.bmm(delta, _weight(X, op))
        a = z_in
    return G, losses


def fused_logits(model: nn.Module, X: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Logits ``(b, N, classes)`` of every node's model on the shared inputs ``x`` ``(N, ...)``.

    The first ``Linear`` is one matrix product ``x [W_1^(1); ...; W_1^(b)]^T`` for the whole
    block; later layers are ``bmm`` over nodes.
    """
    plan = _plan_or_raise(model, X)
    X = X.detach()
    b = X.shape[0]
    with torch.no_grad():
        a = _inputs(plan, x, 0)  # (N, in), shared by every node
        shared = True
        for op in plan.ops:
            if op == "relu":
                a = a.relu()
            elif shared:
                W = _weight(X, op).reshape(b * op.out, op.inp)
                z = (a @ W.T).view(a.shape[0], b, op.out).transpose(0, 1)
                bias = _bias(X, op)
                a = z if bias is None else z + bias[:, None, :]
                shared = False
            else:
                a = _linear(X, op, a)
        return a
