"""The federated family against exact properties: FedProx's and FedAvg's closed-form fixed
points, SCAFFOLD's exactness, MimeLite = SGDm, the lecture's Figure 2 (client drift), byte
counts; and the problem support they need (full-batch gradients, several points on one batch)."""

from __future__ import annotations

import networkx as nx
import numpy as np
import pytest
import torch

from gossip.algorithms import make_algorithm
from gossip.errors import ConfigError
from gossip.problems.registry import make_problem
from tests.algorithms.alg_helpers import (
    ConstantGradient,
    FixedSchedule,
    context,
    quadratic,
    run,
    uniform_complete,
)

N = 16


def fed_context(problem, lr: float, seed: int = 0):
    n = problem.n
    return context(problem, FixedSchedule(uniform_complete(n)), nx.complete_graph(n), lr=lr,
                   seed=seed)


def distance(problem, state, ctx) -> float:
    return problem.evaluate(state.X, ctx.comm)["distance_to_optimum"]


# -- problem support ---------------------------------------------------------------------------

def test_same_step_is_the_same_batch_quadratic():
    # g_i(y; s) - g_i(x; s) = a_i (y - x): the noise of step s cancels exactly
    p = quadratic(N, sigma=0.7)
    nodes = range(3, 9)
    gen = torch.Generator().manual_seed(0)
    X = torch.randn(6, 5, generator=gen, dtype=torch.float64)
    Y = torch.randn(6, 5, generator=gen, dtype=torch.float64)
    gx, _ = p.gradients(X, nodes, 4)
    gy, _ = p.gradients(Y, nodes, 4)
    a = p.a[3:9].unsqueeze(1)
    torch.testing.assert_close(gy - gx, a * (Y - X), rtol=0, atol=1e-12)
    assert not torch.allclose(p.gradients(X, nodes, 5)[0], gx)
    full, losses = p.full_gradients(X, nodes)
    torch.testing.assert_close(full, a * (X - p.c[3:9]), rtol=0, atol=0)
    torch.testing.assert_close(losses, p.gradients(X, nodes, 4)[1], rtol=0, atol=0)


def test_same_step_is_the_same_batch_logistic():
    opts = {"dim": 4, "samples_per_node": 20, "batch_size": 5}
    p = make_problem("logistic", opts, n=6, seed=1, dtype=torch.float64)
    full = make_problem("logistic", {**opts, "batch_size": 0}, n=6, seed=1, dtype=torch.float64)
    nodes = range(1, 4)
    gen = torch.Generator().manual_seed(1)
    X = torch.randn(3, 4, generator=gen, dtype=torch.float64)
    Y = torch.randn(3, 4, generator=gen, dtype=torch.float64)
    # gradients at X and at Y with the same step use node i's batch of that step
    gx, gy = p.gradients(X, nodes, 7)[0], p.gradients(Y, nodes, 7)[0]
    for k, i in enumerate(nodes):
        idx = np.random.default_rng([1, i, 7]).choice(20, 5, replace=False)
        A, b = p.A[i, idx], p.b[i, idx]
        for r, g in ((X[k], gx[k]), (Y[k], gy[k])):
            want = (-b * torch.sigmoid(-b * (A @ r))) @ A / 5 + p.reg * r
            torch.testing.assert_close(g, want, rtol=0, atol=1e-12)
    torch.testing.assert_close(p.full_gradients(X, nodes)[0], full.gradients(X, nodes, 0)[0],
                               rtol=0, atol=1e-14)


def test_an_algorithm_needing_full_gradients_refuses_a_problem_without_them():
    problem = ConstantGradient(torch.zeros(4, 3), torch.ones(4, 3))
    problem.n = 4
    ctx = fed_context(problem, lr=0.1)
    for name in ("mime", "mimelite"):
        with pytest.raises(ConfigError, match=f"algorithm.name='{name}' needs full-batch") as e:
            make_algorithm(name, {}).init(ctx)
        assert "\n" not in str(e.value)


# -- FedProx -----------------------------------------------------------------------------------

def test_fedprox_mu0_is_fedavg_bit_for_bit():
    problem = quadratic(N, sigma=0.5, init_scale=1.0)
    runs = []
    for name, extra in (("fedavg", {}), ("fedprox", {"mu": 0.0})):
        ctx = fed_context(problem, lr=0.07, seed=3)
        opts = {"client_fraction": 0.25, "local_steps": 3, "server_lr": 0.8, **extra}
        runs.append((run(name, opts, ctx, 12, record=True)[2], ctx.comm.stats.as_dict()))
    (a, sa), (b, sb) = runs
    assert sa == sb
    for xa, xb in zip(a, b, strict=True):
        assert torch.equal(xa, xb)


def test_fedprox_reaches_its_closed_form_fixed_point():
    # full gradients, full participation: y_K = y* + (1 - eta b_i)^K (x - y*), b_i = a_i + mu,
    # y* = (a_i c_i + mu x) / b_i, so Delta_i = r_i a_i / b_i (x - c_i), r_i = 1 - (1 - eta b_i)^K
    # and x_fp = sum w_i c_i / sum w_i with w_i = r_i a_i / b_i
    problem = quadratic(N)
    eta, K, mu = 0.1, 4, 2.0
    b = problem.a_np + mu
    w = (1 - (1 - eta * b) ** K) * problem.a_np / b
    x_fp = (w[:, None] * problem.c_np).sum(0) / w.sum()
    ctx = fed_context(problem, lr=eta)
    _, state = run("fedprox", {"mu": mu, "client_fraction": 1.0, "local_steps": K}, ctx, 300)
    np.testing.assert_allclose(state.X[0].numpy(), x_fp, rtol=0, atol=1e-10)
    assert ctx.comm.stats.bytes_sent == 300 * N * 2 * 5 * 8


# -- SCAFFOLD ----------------------------------------------------------------------------------

@pytest.mark.parametrize("control", ["ii", "i"])
def test_scaffold_is_exact_where_fedavg_stalls(control):
    problem = quadratic(N)
    opts = {"client_fraction": 1.0, "local_steps": 5}
    ctx = fed_context(problem, lr=0.05)
    _, fedavg = run("fedavg", opts, ctx, 200)
    assert distance(problem, fedavg, ctx) > 1e-3
    ctx = fed_context(problem, lr=0.05)
    _, state = run("scaffold", {**opts, "control": control}, ctx, 200)
    assert distance(problem, state, ctx) < 1e-10
    # per round and client: (x, c) down, (Delta y, Delta c) up, d float64 each
    assert ctx.comm.stats.bytes_sent == 200 * N * 4 * 5 * 8
    assert ctx.comm.stats.messages == 200 * N * 2


def test_scaffold_server_control_is_the_mean_of_the_clients():
    # c <- c + |S| / n Delta c keeps c = 1/n sum_i c_i under client sampling
    problem = quadratic(N, sigma=0.3)
    ctx = fed_context(problem, lr=0.05, seed=2)
    alg = make_algorithm("scaffold", {"client_fraction": 0.25, "local_steps": 3})
    state = alg.init(ctx)
    for t in range(6):
        state, _ = alg.round(state, t, ctx)
        torch.testing.assert_close(state.c, state.C.mean(0), rtol=0, atol=1e-12)
    assert ctx.comm.stats.bytes_sent == 6 * 4 * 4 * 5 * 8


# -- Mime / MimeLite ---------------------------------------------------------------------------

def test_mimelite_one_step_full_participation_is_sgd_with_momentum():
    problem = quadratic(N, init_scale=1.0)
    eta, beta = 0.1, 0.7
    ctx = fed_context(problem, lr=eta)
    _, _, history = run("mimelite", {"beta": beta, "local_steps": 1, "client_fraction": 1.0},
                        ctx, 25, record=True)
    x = problem.x0.clone()
    m = torch.zeros_like(x)
    for X in history:  # eq. (2) of the lecture notes
        g = (problem.a.unsqueeze(1) * (x - problem.c)).mean(0)
        x = x - eta * ((1 - beta) * g + beta * m)
        m = (1 - beta) * g + beta * m
        torch.testing.assert_close(X, x.expand_as(X), rtol=0, atol=1e-12)
    # (x, m) down, (Delta, grad f_i(x)) up: 4 d floats per client and round
    assert ctx.comm.stats.bytes_sent == 25 * N * 4 * 5 * 8


def figure2():
    """The lecture's Figure 2: 2 clients, different quadratics, K = 3, beta = 0.5."""
    problem = make_problem("quadratic", {"dim": 2, "heterogeneity": 2.0, "a_min": 1.0,
                                         "a_max": 5.0}, n=2, seed=2, dtype=torch.float64)
    return problem, 0.15, 3, 0.5


def test_figure2_client_drift_fedavg_momentum_vs_mime():
    problem, eta, K, beta = figure2()
    a, c, x_star = problem.a_np, problem.c_np, problem.x_star_np
    q = 1 - (1 - eta * a) ** K  # FedAvg: Delta_i = q_i (x - c_i)
    x_fedavg = (q[:, None] * c).sum(0) / q.sum()
    p = 1 - (1 - (1 - beta) * eta * a) ** K  # MimeLite (module docstring)
    kappa = beta / (1 - beta) * a.mean() * (p / a).sum()
    x_mimelite = ((p[:, None] * c).sum(0) + kappa * x_star) / (p.sum() + kappa)
    full = {"client_fraction": 1.0, "local_steps": K}
    got = {}
    for name, opts in (("fedavg", {**full, "server_momentum": beta}),
                       ("mimelite", {**full, "beta": beta}), ("mime", {**full, "beta": beta})):
        ctx = fed_context(problem, lr=eta)
        _, state = run(name, opts, ctx, 300)
        got[name] = (state.X[0].numpy(), distance(problem, state, ctx))
    np.testing.assert_allclose(got["fedavg"][0], x_fedavg, rtol=0, atol=1e-12)
    np.testing.assert_allclose(got["mimelite"][0], x_mimelite, rtol=0, atol=1e-12)
    assert got["fedavg"][1] == pytest.approx(0.14577158538, rel=1e-9)  # ||x_FedAvg - x*||^2
    assert got["mimelite"][1] == pytest.approx(0.00782370200, rel=1e-8)
    assert got["mime"][1] < 1e-25
    # bytes: Mime sends (x, m) and c down, grad f_i(x) and Delta up: 5 d floats, 4 messages
    assert ctx.comm.stats.bytes_sent == 300 * 2 * 5 * 2 * 8
    assert ctx.comm.stats.messages == 300 * 2 * 4


def test_mime_corrects_noisy_local_steps():
    # same samples at y and at x: the additive noise cancels, the local steps are exact
    problem = quadratic(8, sigma=0.5)
    ctx = fed_context(problem, lr=0.1)
    _, state = run("mime", {"client_fraction": 1.0, "local_steps": 3, "beta": 0.5}, ctx, 60)
    assert distance(problem, state, ctx) < 1e-12


@pytest.mark.parametrize(
    "name, options, key",
    [
        ("scaffold", {"control": "iii"}, "algorithm.control"),
        ("mime", {"beta": 1.0}, "algorithm.beta"),
        ("mimelite", {"local_steps": 0}, "algorithm.local_steps"),
        ("fedprox", {"mu": -1.0}, "algorithm.mu"),
    ],
)
def test_bad_options_name_the_key(name, options, key):
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        make_algorithm(name, options)
