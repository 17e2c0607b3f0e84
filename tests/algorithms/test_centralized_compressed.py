"""Compressed ``allreduce`` / ``fedavg`` with error feedback (EF-SGD): equality with the
uncompressed runs for ``none``, the EF identity inside the algorithms, convergence, bytes."""

from __future__ import annotations

import pytest
import torch

from gossip.algorithms.fedavg import configure_round
from gossip.compression import make_compressor, wants_error_feedback
from gossip.compression.uploads import compress_rows, init_upload
from tests.algorithms.alg_helpers import context, quadratic, run, static_schedule

N, D = 8, 10


def ctx_for(compression=None, lr=0.1, heterogeneity=5.0, seed=1, **problem):
    prob = quadratic(N, D, seed=seed, heterogeneity=heterogeneity, init_scale=3.0, **problem)
    schedule, graph = static_schedule("complete", N)
    ctx = context(prob, schedule, graph, lr=lr, seed=seed)
    if compression is not None:
        ctx.compressor = make_compressor(compression[0], compression[1])
    return ctx


def distance(ctx, state) -> float:
    return ctx.problem.evaluate(state.X, ctx.comm)["distance_to_optimum"]


CASES = [
    ("allreduce", {"momentum": 0.9, "nesterov": True}),
    ("fedavg", {"client_fraction": 0.5, "local_steps": 2, "server_momentum": 0.5}),
]


@pytest.mark.parametrize("name,opts", CASES)
@pytest.mark.parametrize("ef", [None, True])
def test_none_compression_equals_uncompressed_exactly(name, opts, ef):
    plain = ctx_for(sigma=0.5)
    none = ctx_for(("none", {"error_feedback": ef}), sigma=0.5)
    _, _, hist_plain = run(name, opts, plain, 12, record=True)
    _, state, hist_none = run(name, opts, none, 12, record=True)
    for a, b in zip(hist_plain, hist_none):
        assert torch.equal(a, b)
    assert state.E.shape[1] == (D if ef else 0)
    if ef:
        assert torch.equal(state.E, torch.zeros_like(state.E))
    if name == "fedavg":  # the dense formula: payload (= d floats) up, d floats down
        assert none.comm.stats.bytes_sent == plain.comm.stats.bytes_sent


@pytest.mark.parametrize(
    "name,opts,ef",
    [("topk", {"ratio": 0.2}, D), ("sign", {}, D), ("fp16", {}, D), ("lowrank", {}, D),
     ("randomk", {"k": 2}, D), ("randomk", {"k": 2, "unbiased": True}, 0),
     ("qsgd", {}, 0), ("none", {}, 0), ("qsgd", {"error_feedback": True}, D),
     ("topk", {"ratio": 0.2, "error_feedback": False}, 0)],
)
def test_default_error_feedback_for_biased_operators_only(name, opts, ef):
    ctx = ctx_for((name, opts))
    assert wants_error_feedback(ctx.compressor) == bool(ef)
    _, state = run("allreduce", {}, ctx, 2)
    assert state.E.shape == (N, ef)
    _, state = run("fedavg", {"client_fraction": 0.5}, ctx, 2)
    assert state.E.shape == (N, ef)


def test_error_feedback_identity_row_by_row_with_mask():
    """``sum_t x_i(t) - sum_t D(q_i(t)) = e_i``; rows outside the mask keep their memory."""
    comp = make_compressor("lowrank", {"rank": 1})
    layout = [("w", (3, 4)), ("b", (2,))]
    X0 = torch.zeros(5, 14, dtype=torch.float64)
    E, C = init_upload(comp, X0, range(5), layout, seed=3)
    gen = torch.Generator().manual_seed(0)
    sent_in = torch.zeros_like(X0)
    sent_out = torch.zeros_like(X0)
    for t in range(20):
        X = torch.randn(5, 14, dtype=torch.float64, generator=gen)
        mask = torch.rand(5, generator=gen) < 0.6
        E_before, memory_before = E.clone(), [m.clone() for m in C.memory]
        Q, E, C = compress_rows(comp, X, E, C, t, mask=mask)
        sent_in += X * mask[:, None]
        sent_out += Q
        assert torch.equal(Q[~mask], torch.zeros_like(Q[~mask]))
        assert torch.equal(E[~mask], E_before[~mask])
        for old, new in zip(memory_before, C.memory):
            assert torch.equal(new[~mask], old[~mask])
        assert torch.allclose(sent_in - sent_out, E, atol=1e-12, rtol=0)


def test_error_feedback_identity_inside_allreduce():
    """Average over nodes: ``sum_t g_bar(t) - sum_t (x_t - x_{t+1}) / eta = mean_i e_i``."""
    eta = 0.1
    ctx = ctx_for(("topk", {"k": 2}), lr=eta)
    inputs = torch.zeros(D, dtype=torch.float64)
    from gossip.algorithms import make_algorithm

    alg = make_algorithm("allreduce", {})
    state = alg.init(ctx)
    applied = torch.zeros_like(inputs)
    for t in range(30):
        G, _ = ctx.problem.gradients(state.X, ctx.comm.nodes, t)
        inputs += G.mean(0)
        new, _ = alg.round(state, t, ctx)
        applied += (state.X[0] - new.X[0]) / eta
        state = new
    assert float(state.E.abs().max()) > 1e-3  # something was held back
    assert torch.allclose(inputs - applied, state.E.mean(0), atol=1e-10, rtol=0)


@pytest.mark.parametrize("operator", [("topk", {"ratio": 0.2}), ("sign", {})])
@pytest.mark.parametrize("name,opts", [("allreduce", {}),
                                       ("fedavg", {"client_fraction": 1.0, "local_steps": 2})])
def test_error_feedback_reaches_optimum_when_node_gradients_vanish_there(operator, name, opts):
    """Same minimiser for every node (``c_i = c``): EF with top-k / sign converges exactly."""
    ctx = ctx_for(operator, lr=0.1, heterogeneity=0.0)
    _, state = run(name, opts, ctx, 400)
    assert distance(ctx, state) < 1e-8


@pytest.mark.parametrize("name,opts", [("allreduce", {}),
                                       ("fedavg", {"client_fraction": 1.0, "local_steps": 2})])
def test_error_feedback_fixes_biased_compression_on_heterogeneous_nodes(name, opts):
    """Without EF top-k stalls at a fixed distance whatever the step; with EF the remaining
    distance is ``O(eta^2)`` (``x - eta e`` follows exact gradient descent): 10x smaller
    ``eta``, at least 50x smaller squared distance."""
    dist = {}
    for ef in (True, False):
        for lr in (0.1, 0.01):
            ctx = ctx_for(("topk", {"ratio": 0.2, "error_feedback": ef}), lr=lr)
            _, state = run(name, opts, ctx, 800)
            dist[ef, lr] = distance(ctx, state)
    assert dist[False, 0.1] > 10 and dist[False, 0.01] > 10
    assert dist[True, 0.01] < dist[True, 0.1] / 50
    assert dist[True, 0.01] < dist[False, 0.01] / 100


@pytest.mark.parametrize("operator", [("topk", {"k": 3}), ("sign", {}), ("qsgd", {"levels": 4}),
                                      ("fp16", {}), ("randomk", {"ratio": 0.3})])
def test_bytes_are_payload_up_and_dense_model_down(operator):
    rounds = 5
    ctx = ctx_for(operator)
    row = ctx.compressor.payload_row_bytes(D, ctx.problem.layout, torch.float64)
    run("allreduce", {}, ctx, rounds)
    assert ctx.comm.stats.bytes_sent == rounds * N * (row + 8 * D)
    assert ctx.comm.stats.messages == rounds * N * 2

    ctx = ctx_for(operator)
    run("fedavg", {"client_fraction": 0.25}, ctx, rounds)
    sampled = sum(len(configure_round(N, 0.25, ctx.seed, t)) for t in range(rounds))
    assert sampled == rounds * 2
    assert ctx.comm.stats.bytes_sent == sampled * (row + 8 * D)
    assert ctx.comm.stats.messages == 2 * sampled
