"""The fused backend equals the per-node autograd loop, and is chosen only where it applies."""

import pytest
import torch
from torch import nn

from gossip.errors import ConfigError
from gossip.models import make_model, model_vector
from gossip.problems.classification import make_classification_problem
from gossip.problems.classification.backends import (
    choose_backend,
    fused_grads,
    fused_logits,
    linear_plan,
    loop_grads,
    loop_logits,
)

F64 = torch.float64


def _seq(*factories):
    """A builder of a fresh ``nn.Sequential`` (made under the test's seed)."""
    return lambda shape, classes: nn.Sequential(*(f() for f in factories))


L, R = nn.Linear, nn.ReLU


# (name, builder(input_shape, classes), input_shape, classes)
MODELS = [
    ("logreg", lambda s, c: make_model("logreg", s, c), (1, 6, 6), 5),
    ("mlp-16", lambda s, c: make_model("mlp", s, c, {"hidden": [16]}), (1, 6, 6), 5),
    ("mlp-7-5", lambda s, c: make_model("mlp", s, c, {"hidden": [7, 5]}), (3, 4, 2), 4),
    ("mlp-none", lambda s, c: make_model("mlp", s, c, {"hidden": []}), (9,), 3),
    ("seq-nobias", _seq(nn.Flatten, lambda: L(12, 6, bias=False), R,
                        lambda: L(6, 4, bias=False)), (2, 6), 4),
    ("seq-mixed", _seq(lambda: L(10, 8), R, R, lambda: L(8, 6, bias=False), R,
                       lambda: L(6, 3)), (10,), 3),
    ("seq-relu-ends", _seq(R, nn.Flatten, lambda: L(8, 5), nn.Flatten, R), (2, 2, 2), 5),
]


def _block(builder, shape, classes, b, B, dtype=F64, seed=0):
    torch.manual_seed(seed)
    m = builder(shape, classes).to(dtype)
    x0 = model_vector(m)
    X = x0 + 0.3 * torch.randn(b, x0.numel(), dtype=dtype)  # a different model per node
    bx = torch.randn(b, B, *shape, dtype=dtype)
    by = torch.randint(0, classes, (b, B))
    return m, X, bx, by


@pytest.mark.parametrize("b,B", [(1, 1), (1, 5), (3, 1), (4, 7)])
@pytest.mark.parametrize("name,builder,shape,classes", MODELS, ids=[m[0] for m in MODELS])
def test_fused_equals_loop_float64(name, builder, shape, classes, b, B):
    m, X, bx, by = _block(builder, shape, classes, b, B)
    assert linear_plan(m) is not None
    G, losses = fused_grads(m, X, bx, by)
    G2, losses2 = loop_grads(m, X, bx, by)
    assert G.shape == X.shape and losses.shape == (b,)
    torch.testing.assert_close(G, G2, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(losses, losses2, rtol=1e-10, atol=1e-10)
    assert G.abs().sum() > 0  # a test that can fail: gradients are not trivially zero
    x = bx[0]
    torch.testing.assert_close(fused_logits(m, X, x), loop_logits(m, X, x), rtol=1e-10,
                               atol=1e-10)


@pytest.mark.parametrize("name,builder,shape,classes", MODELS[:3], ids=[m[0] for m in MODELS[:3]])
def test_sgd_trajectory_equals_loop(name, builder, shape, classes):
    """Ten SGD steps, each node on its own batch, end at the loop's parameters."""
    m, X, bx, by = _block(builder, shape, classes, 3, 4)
    Xa, Xb = X.clone(), X.clone()
    for _ in range(10):
        Xa -= 0.5 * fused_grads(m, Xa, bx, by)[0]
        Xb -= 0.5 * loop_grads(m, Xb, bx, by)[0]
    torch.testing.assert_close(Xa, Xb, rtol=1e-10, atol=1e-10)


def test_default_mlp_float32_and_block_split():
    """784-128-10 with batch 32 in float32 (the default run), and rows independent of the
    block they are computed in (placement: the same numbers in process and over MPI)."""
    m, X, bx, by = _block(lambda s, c: make_model("mlp", s, c), (1, 28, 28), 10, 5, 32,
                          dtype=torch.float32)
    G, losses = fused_grads(m, X, bx, by)
    G2, losses2 = loop_grads(m, X, bx, by)
    torch.testing.assert_close(G, G2, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(losses, losses2, rtol=1e-5, atol=1e-6)
    Ga, la = fused_grads(m, X[:2], bx[:2], by[:2])
    Gb, lb = fused_grads(m, X[2:], bx[2:], by[2:])
    torch.testing.assert_close(torch.cat([Ga, Gb]), G, rtol=1e-6, atol=1e-7)
    torch.testing.assert_close(torch.cat([la, lb]), losses, rtol=1e-6, atol=1e-7)


def test_module_parameters_untouched_and_block_not_written():
    m, X, bx, by = _block(MODELS[1][1], (1, 6, 6), 5, 3, 4)
    before, X0 = model_vector(m), X.clone()
    fused_grads(m, X, bx, by)
    fused_logits(m, X, bx[0])
    assert torch.equal(before, model_vector(m)) and torch.equal(X, X0)


def test_block_may_be_a_row_slice():
    """``X`` may be a view with a row stride larger than ``d`` (rows of a wider buffer)."""
    m, X, bx, by = _block(MODELS[2][1], (3, 4, 2), 4, 3, 5)
    wide = torch.zeros(3, X.shape[1] + 7, dtype=F64)
    wide[:, 3 : 3 + X.shape[1]] = X
    view = wide[:, 3 : 3 + X.shape[1]]
    torch.testing.assert_close(fused_grads(m, view, bx, by)[0], loop_grads(m, X, bx, by)[0],
                               rtol=1e-10, atol=1e-10)


class Twice(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(4, 4)

    def forward(self, x):
        return self.fc(self.fc(x))


@pytest.mark.parametrize(
    "model",
    [
        make_model("lenet", (1, 12, 12), 5),
        make_model("resnet20", (3, 8, 8), 5),
        nn.Sequential(nn.Flatten(), nn.Linear(4, 3), nn.Tanh()),
        nn.Sequential(nn.Flatten(start_dim=2), nn.Linear(4, 3)),
        nn.Sequential(nn.ReLU()),
        Twice(),
    ],
    ids=["lenet", "resnet20", "tanh", "flatten-dims", "no-linear", "custom-module"],
)
def test_models_that_do_not_qualify(model):
    assert linear_plan(model) is None
    with pytest.raises(ValueError, match="not a chain"):
        fused_grads(model, torch.zeros(1, 5), torch.zeros(1, 1, 4), torch.zeros(1, 1).long())


def test_shared_linear_does_not_qualify():
    fc = nn.Linear(4, 4)
    assert linear_plan(nn.Sequential(fc, nn.ReLU(), fc)) is None


def test_bad_shapes_raise():
    m, X, bx, by = _block(MODELS[4][1], (2, 6), 4, 2, 3)
    with pytest.raises(ValueError, match="does not match the model's d="):
        fused_grads(m, X[:, :-1], bx, by)
    seq = nn.Sequential(nn.Linear(6, 4)).to(F64)
    with pytest.raises(ValueError, match="need a Flatten"):
        fused_grads(seq, torch.zeros(2, 28, dtype=F64), bx, by)


def test_choose_backend_prefers_fused():
    for name in ("mlp", "logreg"):
        chosen = choose_backend(make_model(name, (1, 12, 12), 5), (1, 12, 12), 5)
        assert (chosen.name, chosen.reason) == ("fused", "")
        assert chosen.grads is fused_grads and chosen.logits is fused_logits
    lenet = make_model("lenet", (1, 12, 12), 5)
    assert choose_backend(lenet, (1, 12, 12), 5) .name == "vmap"
    assert choose_backend(lenet, (1, 12, 12), 5).reason == ""
    mlp = make_model("mlp", (1, 12, 12), 5)
    assert choose_backend(mlp, (1, 12, 12), 5, prefer="fused").name == "fused"
    assert choose_backend(mlp, (1, 12, 12), 5, prefer="vmap").name == "vmap"
    with pytest.raises(ConfigError, match="backend 'fused' needs a chain.*got LeNet"):
        choose_backend(lenet, (1, 12, 12), 5, prefer="fused")
    with pytest.raises(ConfigError, match="backend must be one of auto, fused, vmap, loop"):
        choose_backend(mlp, (1, 12, 12), 5, prefer="jit")


def test_choose_backend_falls_back_when_fused_fails():
    """A chain without Flatten on 2-D inputs qualifies by structure but cannot run: the
    reason records why fused (and here vmap too) were not taken."""
    seq = nn.Sequential(nn.Linear(3, 4))
    chosen = choose_backend(seq, (2, 3), 4)
    assert chosen.name == "loop"
    assert chosen.reason.startswith("fused failed: ValueError") and "vmap failed" in chosen.reason
    with pytest.raises(ValueError):
        choose_backend(seq, (2, 3), 4, prefer="fused")


SMALL = {"dataset": "synthetic", "alpha": 0.5, "batch_size": 8, "hidden": [16]}


def test_classification_problem_fused_equals_vmap():
    fused = make_classification_problem(SMALL, n=4, seed=3, dtype=F64)
    vmap = make_classification_problem({**SMALL, "backend": "vmap"}, n=4, seed=3, dtype=F64)
    assert (fused.backend.name, vmap.backend.name) == ("fused", "vmap")
    assert fused.describe()["backend"] == "fused"
    X = fused.init_params(range(4)) + 0.05 * torch.randn(4, fused.dim, dtype=F64)
    for step in (0, 9):
        G, losses = fused.gradients(X, range(4), step)
        G2, losses2 = vmap.gradients(X, range(4), step)
        torch.testing.assert_close(G, G2, rtol=1e-10, atol=1e-10)
        torch.testing.assert_close(losses, losses2, rtol=1e-10, atol=1e-10)
    from gossip.comm.local import LocalComm

    a, b = fused.evaluate(X, LocalComm(4)), vmap.evaluate(X, LocalComm(4))
    assert a == pytest.approx(b, rel=1e-10, abs=1e-12)
    with pytest.raises(ConfigError, match="backend 'fused' needs a chain"):
        make_classification_problem({**SMALL, "model": "lenet", "backend": "fused"}, n=2)
