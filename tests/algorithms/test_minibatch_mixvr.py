"""Mini-batch SGD (plain and AC-SA) and Local MixVR against reference recursions written out
here, and their byte counts."""

from __future__ import annotations

import networkx as nx
import torch

from gossip.problems.registry import make_problem
from tests.algorithms.alg_helpers import FixedSchedule, context, quadratic, run, uniform_complete

N = 8


def fed_context(problem, lr: float):
    n = problem.n
    return context(problem, FixedSchedule(uniform_complete(n)), nx.complete_graph(n), lr=lr)


def mean_gradient(problem, x: torch.Tensor, steps: range) -> torch.Tensor:
    """``1/(n K) sum_i sum_k g_i(x; s_k)``: the reference's mini-batch gradient."""
    X = x.expand(problem.n, -1).clone()
    return torch.stack([problem.gradients(X, range(problem.n), s)[0].mean(0)
                        for s in steps]).mean(0)


def test_minibatch_budget_one_is_allreduce():
    problem = quadratic(N, sigma=0.5, init_scale=1.0)
    runs = []
    for name, opts in (("minibatch_sgd", {}), ("allreduce", {})):
        ctx = fed_context(problem, lr=0.1)
        runs.append(run(name, opts, ctx, 10, record=True)[2])
    for a, b in zip(*runs, strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-12)


def test_minibatch_averages_the_budget_at_one_point():
    problem = quadratic(N, sigma=0.5, init_scale=1.0)
    K, eta, rounds = 3, 0.1, 6
    ctx = fed_context(problem, lr=eta)
    _, _, history = run("minibatch_sgd", {"budget": K}, ctx, rounds, record=True)
    x = problem.x0.clone()
    for t, X in enumerate(history):
        x = x - eta * mean_gradient(problem, x, range(t * K, (t + 1) * K))
        torch.testing.assert_close(X, x.expand_as(X), rtol=0, atol=1e-12)
    assert ctx.comm.stats.bytes_sent == rounds * N * 2 * 5 * 8  # query point down, ghat_i up


def test_accelerated_minibatch_is_ac_sa():
    # f has curvature mean(a_i) ~ 0.01: plain SGD contracts by ~0.99 per round
    problem = make_problem("quadratic", {"dim": 5, "a_min": 0.005, "a_max": 0.015,
                                         "heterogeneity": 3.0}, n=N, seed=1,
                           dtype=torch.float64)
    eta, rounds = 1.0, 60
    ctx = fed_context(problem, lr=eta)
    _, acc, history = run("minibatch_sgd", {"accelerated": True}, ctx, rounds, record=True)
    x = w = problem.x0.clone()
    for t, X in enumerate(history):  # Lan (2012), round t = Lan's step t + 1
        beta = (t + 2) / 2
        q = w / beta + (1 - 1 / beta) * x
        w = w - beta * eta * mean_gradient(problem, q, range(t, t + 1))
        x = w / beta + (1 - 1 / beta) * x
        torch.testing.assert_close(X, x.expand_as(X), rtol=0, atol=1e-12)
    ctx2 = fed_context(problem, lr=eta)
    _, plain = run("minibatch_sgd", {}, ctx2, rounds)
    d_acc = problem.evaluate(acc.X, ctx.comm)["loss_at_mean"]
    d_plain = problem.evaluate(plain.X, ctx2.comm)["loss_at_mean"]
    assert d_acc < 0.1 * d_plain  # 7.4e-5 vs 4.5e-3: acceleration pays


def test_local_mixvr_all_averaging_is_minibatch_storm():
    # alpha = 1: no local steps, one mini-batch mu^2-SGD step per round on the n K samples
    problem = quadratic(N, sigma=0.5, init_scale=1.0)
    K, eta, rounds = 3, 0.05, 8
    ctx = fed_context(problem, lr=eta)
    _, _, history = run("local_mixvr", {"budget": K, "alpha": 1.0}, ctx, rounds, record=True)
    xbar = theta = xprev = problem.x0.clone()
    d = torch.zeros_like(xbar)
    for t, X in enumerate(history):
        tau, steps = t + 1, range(t * K, (t + 1) * K)
        g, gt = mean_gradient(problem, xbar, steps), mean_gradient(problem, xprev, steps)
        d = g + (1 - 1 / tau) * (d - gt)
        theta = theta - tau * eta * d
        gamma = 2 / (tau + 2)
        xbar, xprev = gamma * theta + (1 - gamma) * xbar, xbar
        torch.testing.assert_close(X, xbar.expand_as(X), rtol=0, atol=1e-10)
    # (theta_i, xbar_i, e_i) up and their means down: 6 d floats, 2 messages per machine
    assert ctx.comm.stats.bytes_sent == rounds * N * 6 * 5 * 8
    assert ctx.comm.stats.messages == rounds * N * 2


def test_local_mixvr_reduces_the_noise_of_local_steps():
    # identical local optima (no drift), noisy gradients, constant lr: FedAvg and mini-batch
    # SGD stop at a noise floor, the variance-reduced local steps go well below it
    problem = quadratic(N, heterogeneity=0.0, sigma=1.0, init_scale=3.0)
    ctx = fed_context(problem, lr=0.05)
    _, state = run("local_mixvr", {"budget": 4, "alpha": 0.5}, ctx, 3)
    for T in state:  # synchronised at the end of every round
        assert torch.equal(T, T[0].expand_as(T))
    found = {}
    for name, opts in (("local_mixvr", {"budget": 4, "alpha": 0.5}),
                       ("fedavg", {"client_fraction": 1.0, "local_steps": 4}),
                       ("minibatch_sgd", {"budget": 4})):
        ctx = fed_context(problem, lr=0.05)
        _, state = run(name, opts, ctx, 300)
        found[name] = problem.evaluate(state.X, ctx.comm)["distance_to_optimum"]
    assert found["local_mixvr"] < 0.3 * min(found["fedavg"], found["minibatch_sgd"])


def test_local_mixvr_without_any_upload_every_machine_goes_on_alone():
    from gossip.comm.channel import DropChannel

    problem = quadratic(4, heterogeneity=2.0)
    ctx = fed_context(problem, lr=0.05)
    ctx.comm.channel = DropChannel(1.0)
    _, state = run("local_mixvr", {"budget": 2, "alpha": 0.5}, ctx, 150)
    # mu^2-SGD on f_i alone: machine i approaches its own optimum c_i (the anytime average
    # converges like 1/t), not the average x* or a zero reset
    assert (state.X - problem.c).abs().max() < 1e-2
    assert (problem.c - problem.x_star).abs().max() > 1.0
