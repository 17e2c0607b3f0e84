"""Vectorised gradients equal the per-node loop and plain autograd, for every model."""

import pytest
import torch
from torch import nn
from torch.nn import functional as F

from gossip.models import layout_of, make_model, model_names, model_vector, unflatten
from gossip.problems.classification.backends import (
    choose_backend,
    loop_grads,
    loop_logits,
    vectorized_grads,
    vectorized_logits,
)

SHAPES = {"logreg": (1, 12, 12), "mlp": (1, 12, 12), "lenet": (1, 12, 12),
          "resnet20": (3, 8, 8)}


def block(name, b=3, B=4, classes=5, dtype=torch.float64):
    torch.manual_seed(0)
    m = make_model(name, SHAPES[name], classes).to(dtype)
    x0 = model_vector(m)
    X = x0 + 0.1 * torch.randn(b, x0.numel(), dtype=dtype)  # different model per node
    bx = torch.randn(b, B, *SHAPES[name], dtype=dtype)
    by = torch.randint(0, classes, (b, B))
    return m, X, bx, by


@pytest.mark.parametrize("name", model_names())
def test_vmap_equals_loop_equals_autograd(name):
    m, X, bx, by = block(name)
    G, losses = vectorized_grads(m, X, bx, by)
    G2, losses2 = loop_grads(m, X, bx, by)
    assert G.shape == X.shape and losses.shape == (3,)
    assert torch.allclose(G, G2, rtol=1e-10, atol=1e-12)
    assert torch.allclose(losses, losses2, rtol=1e-12)
    # reference: load row k into the module and call backward
    k = 1
    with torch.no_grad():
        for p, v in zip(m.parameters(), unflatten(X[k], layout_of(m)).values()):
            p.copy_(v)
    m.zero_grad()
    loss = F.cross_entropy(m(bx[k]), by[k])
    loss.backward()
    ref = torch.cat([p.grad.reshape(-1) for p in m.parameters()])
    assert torch.allclose(G[k], ref, rtol=1e-10, atol=1e-12)
    assert torch.allclose(losses[k], loss.detach())


@pytest.mark.parametrize("name", model_names())
def test_sgd_step_same_parameters(name):
    """A few SGD steps with either backend end at the same parameters."""
    m, X, bx, by = block(name)
    Xa, Xb = X.clone(), X.clone()
    for _ in range(3):
        Xa = Xa - 0.1 * vectorized_grads(m, Xa, bx, by)[0]
        Xb = Xb - 0.1 * loop_grads(m, Xb, bx, by)[0]
    assert torch.allclose(Xa, Xb, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("name", ["mlp", "lenet"])
def test_logits_vmap_equals_loop(name):
    m, X, bx, _ = block(name)
    a = vectorized_logits(m, X, bx[0])
    b = loop_logits(m, X, bx[0])
    assert a.shape == (3, 4, 5) and torch.allclose(a, b, rtol=1e-10, atol=1e-12)


def test_gradients_do_not_touch_module_parameters():
    m, X, bx, by = block("mlp")
    before = model_vector(m)
    vectorized_grads(m, X, bx, by)
    loop_grads(m, X, bx, by)
    assert torch.equal(before, model_vector(m))


class DataDependent(nn.Module):
    """Branches on a tensor value: vmap cannot trace it."""

    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(4, 3)

    def forward(self, x):
        if self.fc.weight.sum() > 0:
            return self.fc(x.flatten(1))
        return -self.fc(x.flatten(1))


def test_choose_backend():
    m = make_model("mlp", (1, 12, 12), 5)
    assert choose_backend(m, (1, 12, 12), 5).name == "fused"  # a Linear/ReLU chain
    assert choose_backend(m, (1, 12, 12), 5, prefer="vmap").name == "vmap"
    forced = choose_backend(m, (1, 12, 12), 5, prefer="loop")
    assert forced.name == "loop" and forced.reason == "forced by configuration"
    bad = DataDependent()
    chosen = choose_backend(bad, (1, 2, 2), 3)
    assert chosen.name == "loop" and chosen.reason.startswith("vmap failed")
    X = torch.randn(2, 15)
    G, _ = chosen.grads(bad, X, torch.randn(2, 3, 1, 2, 2), torch.randint(0, 3, (2, 3)))
    assert G.shape == (2, 15) and torch.isfinite(G).all()
    with pytest.raises(RuntimeError):
        choose_backend(bad, (1, 2, 2), 3, prefer="vmap")
