"""D-SGD and all-reduce: gossip invariants, the heterogeneity floor, and equivalences."""

import networkx as nx
import pytest
import torch
from alg_helpers import (
    ConstantGradient,
    FixedSchedule,
    context,
    quadratic,
    run,
    static_schedule,
    uniform_complete,
)

from gossip.algorithms import make_algorithm
from gossip.errors import ConfigError
from topologies.schedules import make_schedule

N = 16


@pytest.mark.parametrize(
    "name, options, key",
    [
        ("dsgd", {"local_steps": 0}, "algorithm.local_steps"),
        ("dsgd", {"momentum": 1.0}, "algorithm.momentum"),
        ("dsgd", {"momentum_kind": "global"}, "algorithm.momentum_kind"),
        ("dsgd", {"bogus": 1}, "algorithm.bogus"),
        ("allreduce", {"momentum": -0.1}, "algorithm.momentum"),
    ],
)
def test_bad_options_name_the_key(name, options, key):
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        make_algorithm(name, options)


def test_unknown_algorithm_lists_valid_names():
    with pytest.raises(ConfigError, match="unknown algorithm 'sgdd'.*dsgd"):
        make_algorithm("sgdd", {})


@pytest.mark.parametrize("schedule_name", ["ring", "one_peer_exponential", "random_matching"])
def test_gossip_preserves_the_average(schedule_name):
    g = torch.Generator().manual_seed(1)
    X0 = torch.randn(N, 4, generator=g, dtype=torch.float64)
    problem = ConstantGradient(X0, torch.zeros_like(X0))
    if schedule_name == "ring":
        schedule, graph = static_schedule("ring", N)
    else:
        schedule, graph = make_schedule(schedule_name, N, seed=3), nx.cycle_graph(N)
    ctx = context(problem, schedule, graph)
    _, _, history = run("dsgd", {}, ctx, 30, record=True)
    for X in history:
        torch.testing.assert_close(X.mean(0), X0.mean(0), rtol=0, atol=1e-13)
    spread = ((history[-1] - X0.mean(0)) ** 2).sum()
    assert spread < 0.05 * ((X0 - X0.mean(0)) ** 2).sum()


def distance(name, options, schedule, graph, lr, rounds, problem=None):
    problem = problem or quadratic(N)
    ctx = context(problem, schedule, graph, lr=lr)
    alg, state = run(name, options, ctx, rounds)
    return problem.evaluate(alg.params(state), ctx.comm)["distance_to_optimum"]


def test_dsgd_stalls_at_a_floor_that_shrinks_with_lr():
    schedule, graph = static_schedule("ring", N)
    floors = [distance("dsgd", {}, schedule, graph, lr, 300) for lr in (0.1, 0.05, 0.025)]
    assert floors[0] > 1.0  # heterogeneity floor on the ring (measured 12.4, 6.6, 3.1)
    assert floors[0] > 1.7 * floors[1] > 1.7**2 * floors[2]  # -> eta^2 scaling as eta -> 0
    # converged: more rounds do not lower it
    assert distance("dsgd", {}, schedule, graph, 0.1, 400) == pytest.approx(floors[0], rel=1e-9)


def test_dsgd_floor_vanishes_on_the_complete_graph():
    schedule = FixedSchedule(uniform_complete(N))
    assert distance("dsgd", {}, schedule, nx.complete_graph(N), 0.1, 300) < 1e-20


def test_dsgd_on_complete_uniform_equals_allreduce_step_for_step():
    problem = quadratic(N, sigma=0.5, init_scale=1.0)
    schedule = FixedSchedule(uniform_complete(N))
    runs = []
    for name in ("dsgd", "allreduce"):
        ctx = context(problem, schedule, nx.complete_graph(N), lr=0.1)
        runs.append(run(name, {}, ctx, 20, record=True)[2])
    for X_d, X_a in zip(*runs, strict=True):
        torch.testing.assert_close(X_d, X_a, rtol=0, atol=1e-12)


@pytest.mark.parametrize("nesterov", [False, True])
def test_local_momentum_on_complete_graph_equals_allreduce_momentum(nesterov):
    # with exact averaging every node's buffer sees the averaged gradient
    problem = quadratic(N, init_scale=1.0)
    schedule = FixedSchedule(uniform_complete(N))
    opts = {"momentum": 0.8, "nesterov": nesterov}
    ctx = context(problem, schedule, nx.complete_graph(N), lr=0.05)
    X_d = run("dsgd", opts, ctx, 15, record=True)[2]
    ctx = context(problem, schedule, nx.complete_graph(N), lr=0.05)
    X_a = run("allreduce", opts, ctx, 15, record=True)[2]
    for a, b in zip(X_d, X_a, strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-12)


def test_quasi_global_momentum_on_complete_graph_follows_its_closed_form():
    # exact averaging: x <- x - eta (beta m + g_bar), d = beta m + g_bar,
    # m <- beta m + (1 - beta) d  (Lin et al. 2021, Algorithm 1 with W = 11^T / n)
    problem, beta, eta = quadratic(N, init_scale=1.0), 0.8, 0.05
    ctx = context(problem, FixedSchedule(uniform_complete(N)), nx.complete_graph(N), lr=eta)
    X_d = run("dsgd", {"momentum": beta, "momentum_kind": "quasi_global"}, ctx, 15, True)[2]
    x, m = problem.init_params(range(N))[0], torch.zeros(problem.dim, dtype=torch.float64)
    for t, X in enumerate(X_d):
        g_bar = problem.gradients(x.expand(N, -1), range(N), t)[0].mean(0)
        d = beta * m + g_bar
        x, m = x - eta * d, beta * m + (1 - beta) * d
        torch.testing.assert_close(X, x.expand_as(X), rtol=0, atol=1e-12)


@pytest.mark.parametrize("kind", ["local", "quasi_global"])
def test_momentum_dsgd_converges_near_optimum(kind):
    schedule, graph = static_schedule("ring", N)
    d = distance("dsgd", {"momentum": 0.5, "momentum_kind": kind}, schedule, graph, 0.02, 400)
    assert d < distance("dsgd", {}, schedule, graph, 0.1, 400)


def test_local_steps_use_distinct_step_indices():
    problem = quadratic(N, sigma=1.0)
    schedule = FixedSchedule(uniform_complete(N))
    ctx = context(problem, schedule, nx.complete_graph(N), lr=0.1)
    _, s2 = run("dsgd", {"local_steps": 2}, ctx, 1)
    # two local steps of round 0 use steps 0 and 1: replay them by hand
    X = problem.init_params(range(N))
    for step in (0, 1):
        G, _ = problem.gradients(X, range(N), step)
        X = X - 0.1 * G
    torch.testing.assert_close(s2.X, X.mean(0).expand_as(X), rtol=0, atol=1e-12)


def test_allreduce_counts_ring_bytes():
    problem = quadratic(N, dim=5)
    schedule = FixedSchedule(uniform_complete(N))
    ctx = context(problem, schedule, nx.complete_graph(N))
    run("allreduce", {}, ctx, 3)
    assert ctx.comm.stats.bytes_sent == 3 * 2 * (N - 1) * 5 * 8
    assert ctx.comm.stats.messages == 3 * 2 * (N - 1) * N


def test_dsgd_counts_gossip_bytes():
    schedule, graph = static_schedule("ring", N)
    ctx = context(quadratic(N, dim=5), schedule, graph)
    run("dsgd", {}, ctx, 2)
    assert ctx.comm.stats.bytes_sent == 2 * N * 2 * 5 * 8
