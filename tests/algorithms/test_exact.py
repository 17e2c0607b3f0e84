"""Exact methods on heterogeneous quadratics: GT / K-GT, D^2, RelaySum, FedAvg."""

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
from gossip.algorithms.relaysum import relay, relay_plan
from gossip.comm.local import LocalComm
from gossip.errors import ConfigError
from topologies.schedules import make_schedule

N = 16


def final_distance(name, options, topo, rule, lr, rounds):
    schedule, graph = static_schedule(topo, N, rule)
    problem = quadratic(N)
    ctx = context(problem, schedule, graph, lr=lr)
    alg, state = run(name, options, ctx, rounds)
    return problem.evaluate(alg.params(state), ctx.comm)["distance_to_optimum"]


@pytest.mark.parametrize(
    "name, options, topo, rule, lr, rounds",
    [
        ("gradient_tracking", {}, "ring", "metropolis", 0.02, 800),
        ("gradient_tracking", {"local_steps": 3}, "ring", "metropolis", 0.007, 800),
        ("d2", {}, "ring", "lazy_metropolis", 0.2, 300),
        ("relaysum_model", {"tree": "chain"}, "chain", "metropolis", 0.1, 300),
    ],
)
def test_exact_methods_reach_the_optimum(name, options, topo, rule, lr, rounds):
    assert final_distance(name, options, topo, rule, lr, rounds) < 1e-10


def test_dsgd_at_the_same_setting_does_not():
    assert final_distance("dsgd", {}, "ring", "metropolis", 0.02, 300) > 1e-2


@pytest.mark.parametrize("schedule_name", ["ring", "random_matching"])
def test_gradient_tracking_keeps_sum_y_equal_to_sum_g(schedule_name):
    problem = quadratic(N, sigma=0.3)
    if schedule_name == "ring":
        schedule, graph = static_schedule("ring", N)
    else:
        schedule, graph = make_schedule("random_matching", N, seed=1), nx.cycle_graph(N)
    ctx = context(problem, schedule, graph, lr=0.05)
    alg = make_algorithm("gradient_tracking", {})
    state = alg.init(ctx)
    for t in range(40):
        state, _ = alg.round(state, t, ctx)
        G, _ = problem.gradients(state.X, range(N), t + 1)
        torch.testing.assert_close(state.G, G, rtol=0, atol=0)
        torch.testing.assert_close(state.Y.sum(0), G.sum(0), rtol=0, atol=1e-11)


def test_kgt_corrections_sum_to_zero_on_time_varying_graphs():
    problem = quadratic(N, sigma=0.3)
    schedule = make_schedule("one_peer_exponential", N)
    ctx = context(problem, schedule, nx.cycle_graph(N), lr=0.02)
    alg = make_algorithm("gradient_tracking", {"local_steps": 4})
    state = alg.init(ctx)
    for t in range(30):
        state, _ = alg.round(state, t, ctx)
        torch.testing.assert_close(state.C.sum(0), torch.zeros(5, dtype=torch.float64),
                                   rtol=0, atol=1e-11)


def test_kgt_with_one_local_step_is_gradient_tracking():
    # K-GT with K = 1: y = g + c is GT's tracker. Start K-GT (C = Y - G) from GT's state
    # and compare round by round (both take round t's gradient with step t).
    from gossip.algorithms.gradient_tracking import KGTState

    problem = quadratic(N, init_scale=1.0, sigma=0.2)
    schedule, graph = static_schedule("ring", N)
    ctx = context(problem, schedule, graph, lr=0.05)
    gt = make_algorithm("gradient_tracking", {})
    s = gt.init(ctx)
    for t in range(3):
        s, _ = gt.round(s, t, ctx)
    k_state = KGTState(s.X, s.Y - s.G)
    for t in range(3, 8):
        s, _ = gt.round(s, t, ctx)
        k_state, _ = gt.round(k_state, t, ctx)  # a KGTState runs the K-GT path with K = 1
        torch.testing.assert_close(k_state.X, s.X, rtol=0, atol=1e-12)
        torch.testing.assert_close(k_state.C, s.Y - s.G, rtol=0, atol=1e-12)


def test_d2_runs_on_a_time_varying_schedule():
    problem = quadratic(N)
    ctx = context(problem, make_schedule("one_peer_exponential", N), nx.cycle_graph(N), lr=0.05)
    alg, state = run("d2", {}, ctx, 60)
    assert torch.isfinite(state.X).all()


@pytest.mark.parametrize("kind, graph", [("chain", nx.path_graph(N)), ("bfs", nx.cycle_graph(N)),
                                         ("binary", nx.complete_graph(N))])
def test_relay_averages_fixed_values_exactly_at_the_diameter(kind, graph):
    comm = LocalComm(N)
    plan = relay_plan(graph, kind, 0, comm.nodes)
    V = torch.randn(N, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    R = V.new_zeros((len(plan.in_edges), 3))
    Rc = torch.zeros(len(plan.in_edges), dtype=torch.int64)
    for r in range(1, plan.diameter + 1):
        R, Rc, S, N_got = relay(V, R, Rc, plan, comm)
        lengths = dict(nx.all_pairs_shortest_path_length(plan.tree))
        within = torch.tensor([sum(1 for d in lengths[i].values() if 0 < d <= r)
                               for i in range(N)])
        assert torch.equal(N_got, within)
        exact = torch.allclose((V + S) / N, V.mean(0).expand_as(V), rtol=0, atol=1e-14)
        assert exact == (r == plan.diameter)
    # bfs of a ring: two arms of 8 and 7; heap-ordered binary tree: depths 4 and 3
    assert plan.diameter == {"chain": N - 1, "bfs": N - 1, "binary": 7}[kind]


def test_relaysum_grad_applies_the_exact_mean_update_after_the_diameter():
    X0 = torch.zeros(N, 3, dtype=torch.float64)
    B = torch.randn(N, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    schedule, graph = static_schedule("chain", N)
    ctx = context(ConstantGradient(X0, B), schedule, graph, lr=0.5)
    _, _, history = run("relaysum_grad", {}, ctx, N + 3, record=True)
    D = N - 1
    for t in range(D, N + 3):
        torch.testing.assert_close(history[t] - history[t - 1], -0.5 * B.mean(0).expand(N, 3),
                                   rtol=0, atol=1e-14)
    step = history[D - 2] - (history[D - 3] if D > 2 else X0)
    assert not torch.allclose(step, -0.5 * B.mean(0).expand(N, 3), rtol=0, atol=1e-14)


def test_relaysum_describe_and_bytes():
    schedule, graph = static_schedule("chain", N)
    ctx = context(quadratic(N, dim=5), schedule, graph)
    alg, _ = run("relaysum_model", {}, ctx, 2)
    info = alg.describe(ctx)
    assert info["tree_diameter"] == N - 1 and len(info["tree_edges"]) == N - 1
    # per round: 2 (N - 1) directed tree edges, each d float64 + one int32 count
    assert ctx.comm.stats.bytes_sent == 2 * 2 * (N - 1) * (5 * 8 + 4)


def test_fedavg_full_participation_equals_allreduce():
    problem = quadratic(N, sigma=0.5, init_scale=1.0)
    schedule = FixedSchedule(uniform_complete(N))
    runs = []
    for name, opts in (("fedavg", {"client_fraction": 1.0}), ("allreduce", {})):
        ctx = context(problem, schedule, nx.complete_graph(N), lr=0.1)
        runs.append(run(name, opts, ctx, 20, record=True)[2])
    for a, b in zip(*runs, strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-12)


def test_fedavg_sampling_is_seeded_and_bytes_count_sampled_clients():
    from gossip.algorithms.fedavg import configure_round

    s = configure_round(N, 0.25, seed=3, t=7)
    assert len(s) == 4 and (s == configure_round(N, 0.25, seed=3, t=7)).all()
    assert len(configure_round(N, 0.01, seed=3, t=0)) == 1
    problem = quadratic(N, dim=5)
    ctx = context(problem, FixedSchedule(uniform_complete(N)), nx.complete_graph(N), lr=0.1)
    _, state = run("fedavg", {"client_fraction": 0.25, "local_steps": 3,
                              "server_momentum": 0.5}, ctx, 4)
    assert ctx.comm.stats.bytes_sent == 4 * 4 * 2 * 5 * 8
    assert torch.equal(state.X, state.X[0].expand_as(state.X))


def test_fedavg_with_momentum_converges():
    problem = quadratic(N, sigma=0.0)
    ctx = context(problem, FixedSchedule(uniform_complete(N)), nx.complete_graph(N), lr=0.05)
    alg, state = run("fedavg", {"client_fraction": 1.0, "local_steps": 2,
                                "server_momentum": 0.5}, ctx, 150)
    # full participation, deterministic: FedAvg's fixed point has a client-drift bias
    d = problem.evaluate(state.X, ctx.comm)["distance_to_optimum"]
    assert d < 1e-2


@pytest.mark.parametrize(
    "name, options, key",
    [
        ("gradient_tracking", {"local_steps": 0}, "algorithm.local_steps"),
        ("relaysum_model", {"tree": "star"}, "algorithm.tree"),
        ("relaysum_model", {"missing": "zero"}, "algorithm.missing"),
        ("fedavg", {"client_fraction": 0.0}, "algorithm.client_fraction"),
        ("fedavg", {"server_momentum": 1.0}, "algorithm.server_momentum"),
        ("d2", {"lr": 0.1}, "algorithm.lr"),
    ],
)
def test_bad_options_name_the_key(name, options, key):
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        make_algorithm(name, options)


@pytest.mark.parametrize("n, rule, accepted", [
    (8, "metropolis", False),  # even ring: lambda_min = 1/3 + 2/3 cos(pi) = -1/3, on the bound
    (7, "metropolis", True),  # odd ring: 1/3 + 2/3 cos(6 pi / 7) = -0.2676...
    (8, "lazy_metropolis", True),  # (I + W) / 2: lambda_min = 1/3
    (8, "uniform", False),  # ring, uniform 1/3 weights: the same matrix as metropolis
])
def test_d2_weights_check_is_the_ring_closed_form(n, rule, accepted):
    import math

    import topologies
    from gossip.algorithms.d2 import check_d2_weights, lambda_min
    from gossip.errors import ConfigError

    W = topologies.mixing_matrix(topologies.build("ring", n), rule)
    metropolis = 1 / 3 + 2 / 3 * math.cos(2 * math.pi * (n // 2) / n)
    expected = (1 + metropolis) / 2 if rule.startswith("lazy") else metropolis
    assert lambda_min(W) == pytest.approx(expected, abs=1e-12)
    if accepted:
        check_d2_weights(W)
    else:
        with pytest.raises(ConfigError, match=r"lambda_min\(W\) > -1/3"):
            check_d2_weights(W)


def test_d2_lambda_min_sparse_path_matches_dense(monkeypatch):
    import gossip.algorithms.d2 as d2
    import topologies

    W = topologies.mixing_matrix(topologies.build("torus", 36), "metropolis")
    dense = d2.lambda_min(W)
    monkeypatch.setattr(d2, "DENSE_UP_TO", 8)
    assert d2.lambda_min(W) == pytest.approx(dense, abs=1e-8)
