"""BEER (compressed gradient tracking with public copies): DIGing without compression, the
tracking and average invariants under every operator, exact convergence under compression,
bytes, option checks."""

from __future__ import annotations

import pytest
import torch

import topologies
from gossip.algorithms import algorithm_names, make_algorithm
from gossip.algorithms.beer import Beer
from gossip.compression import make_compressor
from gossip.errors import ConfigError
from tests.algorithms.alg_helpers import context, quadratic, static_schedule

N, D = 16, 10


def setup(compression=None, options=None, lr=0.05, sigma=0.0, schedule=None):
    problem = quadratic(N, dim=D, seed=3, sigma=sigma)
    schedule, graph = schedule or static_schedule("ring", N)
    ctx = context(problem, schedule, graph, lr=lr, seed=7)
    ctx.compressor = make_compressor(*compression) if compression else None
    return problem, ctx


def test_beer_is_registered_and_checks_gamma():
    assert "beer" in algorithm_names()
    assert make_algorithm("beer", {}).cfg.gamma == "auto"
    for bad in (0.0, -0.5, 1.5, "fast"):
        with pytest.raises(ConfigError,
                           match=r"algorithm.gamma must be auto, tune or a number in \(0, 1\]"):
            make_algorithm("beer", {"gamma": bad})


def test_without_compression_and_gamma_one_it_is_diging():
    """``C = id``, ``gamma = 1``: round 0 is ``X_1 = X_0 - eta V_0`` (copies start at 0), then
    ``X <- W X - eta V``, ``V <- W V + grad F(X_new) - grad F(X)`` with ``H = X``, ``G = V``."""
    eta = 0.05
    problem, ctx = setup(lr=eta, sigma=0.5)
    alg = Beer(Beer.Config(gamma=1.0))
    state = alg.init(ctx)
    W = torch.as_tensor(ctx.schedule.matrix(0).toarray())
    nodes = range(N)
    X = problem.init_params(nodes)
    V, grad = problem.gradients(X, nodes, 0)[0], problem.gradients(X, nodes, 0)[0]
    for t in range(8):
        state, losses = alg.round(state, t, ctx)
        assert losses.shape == (N,)
        mix = torch.eye(N, dtype=X.dtype) if t == 0 else W
        X_new = mix @ X - eta * V
        grad_new = problem.gradients(X_new, nodes, t + 1)[0]
        V = mix @ V + grad_new - grad
        X, grad = X_new, grad_new
        assert torch.allclose(state.X, X, rtol=0, atol=1e-12)
        assert torch.allclose(state.V, V, rtol=0, atol=1e-12)
        assert torch.allclose(state.H, state.X, rtol=0, atol=1e-12)  # H + (X - H), rounded
        assert torch.allclose(state.G, state.V, rtol=0, atol=1e-12)


@pytest.mark.parametrize("compression", [
    ("topk", {"ratio": 0.25}), ("qsgd", {"levels": 4}), ("sign", {}), ("randomk", {"k": 3}),
])
def test_tracking_and_average_invariants_under_compression(compression):
    """``sum_i v_i = sum_i grad f_i(x_i)`` and ``x_bar_{t+1} = x_bar_t - eta v_bar_t``."""
    eta = 0.05
    problem, ctx = setup(compression, lr=eta, sigma=0.3)
    alg = Beer(Beer.Config(gamma=0.4))
    state = alg.init(ctx)
    for t in range(15):
        previous = state
        state, _ = alg.round(state, t, ctx)
        grad = problem.gradients(state.X, range(N), t + 1)[0]
        assert torch.allclose(state.V.sum(0), grad.sum(0), rtol=0, atol=1e-10)
        step = previous.X.mean(0) - eta * previous.V.mean(0)
        assert torch.allclose(state.X.mean(0), step, rtol=0, atol=1e-12)
    assert not torch.equal(state.H, state.X)  # the copies really are compressed


@pytest.mark.parametrize("compression,gamma,eta,rounds", [
    (("topk", {"ratio": 0.25}), 0.6, 0.01, 1000),
    (("sign", {}), 1.0, 0.02, 700),
    (("topk", {"ratio": 0.25}), "auto", 0.01, 2800),  # gamma = 2 omega / beta = 0.3
])
def test_reaches_the_exact_optimum_under_compression(compression, gamma, eta, rounds):
    """Heterogeneous quadratic, no noise, ring of 16: no floor (unlike D-SGD)."""
    problem, ctx = setup(compression, lr=eta)
    alg = Beer(Beer.Config(gamma=gamma))
    state = alg.init(ctx)
    for t in range(rounds):
        state, _ = alg.round(state, t, ctx)
    assert problem.evaluate(state.X, ctx.comm)["distance_to_optimum"] < 1e-10


@pytest.mark.parametrize("compression", [None, ("topk", {"ratio": 0.25}), ("sign", {})])
def test_bytes_are_two_payload_rows_per_message(compression):
    rounds = 5
    _, ctx = setup(compression)
    alg = Beer(Beer.Config(gamma=0.5))
    state = alg.init(ctx)
    for t in range(rounds):
        state, _ = alg.round(state, t, ctx)
    op = make_compressor(*compression) if compression else make_compressor("none")
    messages = rounds * 2 * N  # a ring: two neighbours per node
    assert ctx.comm.stats.messages == messages
    assert ctx.comm.stats.bytes_sent == 2 * messages * op.payload_row_bytes(D, None, torch.float64)
    if compression is None:  # uncompressed BEER sends what gradient tracking sends
        _, gt_ctx = setup()
        gt = make_algorithm("gradient_tracking", {})
        gt_state = gt.init(gt_ctx)
        for t in range(rounds):
            gt_state, _ = gt.round(gt_state, t, gt_ctx)
        assert gt_ctx.comm.stats.bytes_sent == ctx.comm.stats.bytes_sent


def test_time_varying_schedule_sends_along_the_base_graph():
    graph = topologies.build("exponential", N)
    schedule = topologies.make_schedule("one_peer_exponential", N)
    problem, ctx = setup(("sign", {}), schedule=(schedule, graph))
    alg = Beer(Beer.Config(gamma=0.5))
    state = alg.init(ctx)
    for t in range(6):
        state, _ = alg.round(state, t, ctx)
        grad = problem.gradients(state.X, range(N), t + 1)[0]
        assert torch.allclose(state.V.sum(0), grad.sum(0), rtol=0, atol=1e-10)
    degree = sum(len(set(graph.predecessors(v)) | set(graph.successors(v))) for v in range(N))
    row = make_compressor("sign").payload_row_bytes(D, None, torch.float64)
    assert row == 4 + 2  # fp32 scale + 10 packed bits
    assert ctx.comm.stats.bytes_sent == 6 * degree * 2 * row
    _, bad = setup(None, schedule=(schedule, topologies.build("ring", N)))
    state = alg.round(alg.init(bad), 0, bad)[0]  # W(0) pairs ring neighbours
    with pytest.raises(ConfigError, match=r"W\(1\) mixes along an edge outside the base graph"):
        alg.round(state, 1, bad)
