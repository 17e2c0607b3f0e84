"""Mini-batch SGD (plain and AC-SA) and Local MixVR against reference recursions written out
here, and their byte counts."""

from __future__ import annotations

import networkx as nx
import pytest
import torch

from gossip.problems.registry import make_problem
from tests.algorithms.alg_helpers import (
    ConstantGradient,
    FixedSchedule,
    context,
    quadratic,
    run,
    uniform_complete,
)

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


class AuthorsMu2SGD:
    """One machine's mu^2-SGD as in the authors' code (dahan198/mu2sgd, ``Mu2SGD`` with
    ``use_alpha_t`` and ``use_beta_t``, no projection): ``compute_estimator`` counts ``iter``
    and ``sum_iter = 1 + ... + iter`` and sets ``d = g + (1 - 1/iter) (d - g_correction)``;
    ``step`` sets ``w <- w - lr d`` and ``x <- a w + (1 - a) x``, ``a = iter / sum_iter``.
    Their trainer calls step (correction gradient at the old ``x``) then the estimator (at the
    new ``x``), both on one batch, after a first estimator alone; here each sample is
    estimator then step, the same sequence of points (the last step is not left pending)."""

    def __init__(self, x0: torch.Tensor):
        self.w, self.x, self.x_prev = x0.clone(), x0.clone(), x0.clone()
        self.d = torch.zeros_like(x0)
        self.iter = self.sum_iter = 0

    def compute_estimator(self, g: torch.Tensor, g_correction: torch.Tensor) -> None:
        self.iter += 1
        self.sum_iter += self.iter
        self.d = g + (1 - 1 / self.iter) * (self.d - g_correction)

    def step(self, lr: float) -> None:
        self.w = self.w - lr * self.d
        a = self.iter / self.sum_iter
        self.x, self.x_prev = a * self.w + (1 - a) * self.x, self.x


def test_local_mixvr_all_averaging_is_minibatch_storm():
    # alpha = 1: no local steps, one mini-batch mu^2-SGD step per round on the n K samples
    problem = quadratic(N, sigma=0.5, init_scale=1.0)
    K, eta, rounds = 3, 0.05, 8
    ctx = fed_context(problem, lr=eta)
    _, _, history = run("local_mixvr", {"budget": K, "alpha": 1.0}, ctx, rounds, record=True)
    ref = AuthorsMu2SGD(problem.x0)
    for t, X in enumerate(history):
        steps = range(t * K, (t + 1) * K)
        ref.compute_estimator(mean_gradient(problem, ref.x, steps),
                              mean_gradient(problem, ref.x_prev, steps))
        ref.step(eta)
        torch.testing.assert_close(X, ref.x.expand_as(X), rtol=0, atol=1e-10)
    # (theta_i, xbar_i, e_i) up and their means down: 6 d floats, 2 messages per machine
    assert ctx.comm.stats.bytes_sent == rounds * N * 6 * 5 * 8
    assert ctx.comm.stats.messages == rounds * N * 2


@pytest.mark.parametrize("counter", ["global", "round"])
def test_local_mixvr_local_steps_are_the_authors_mu2sgd(counter):
    # alpha < 1: per machine K_loc one-sample steps of the authors' rule, then the K_avg-sample
    # estimator, the averages of (w, x, d) over the machines and one step; the counter (iter)
    # runs over all steps of all rounds (global) or restarts every round (round)
    n, K, alpha, eta, rounds = 4, 5, 0.4, 0.1, 6  # K_loc = 3, K_avg = 2
    problem = quadratic(n, sigma=0.5, init_scale=1.0)
    ctx = fed_context(problem, lr=eta)
    _, _, history = run("local_mixvr", {"budget": K, "alpha": alpha, "counter": counter}, ctx,
                        rounds, record=True)
    refs = [AuthorsMu2SGD(problem.x0) for _ in range(n)]

    def grad(i: int, x: torch.Tensor, s: int) -> torch.Tensor:
        return problem.gradients(x.expand(n, -1).clone(), range(n), s)[0][i]

    for t, X in enumerate(history):
        if counter == "round":
            for r in refs:
                r.iter = r.sum_iter = 0
        for k in range(3):
            for i, r in enumerate(refs):
                r.compute_estimator(grad(i, r.x, t * K + k), grad(i, r.x_prev, t * K + k))
                r.step(eta)
        steps = range(t * K + 3, (t + 1) * K)
        for i, r in enumerate(refs):
            r.compute_estimator(*(torch.stack([grad(i, x, s) for s in steps]).mean(0)
                                  for x in (r.x, r.x_prev)))
        w, x, d = (torch.stack([getattr(r, a) for r in refs]).mean(0) for a in ("w", "x", "d"))
        for r in refs:
            r.w, r.x, r.d = w.clone(), x.clone(), d.clone()
            r.step(eta)
        torch.testing.assert_close(X, refs[0].x.expand_as(X), rtol=0, atol=1e-12)
    assert refs[0].iter == (rounds * 4 if counter == "global" else 4)


def test_local_mixvr_round_counter_all_averaging_is_minibatch_sgd():
    # counter = round, alpha = 1: every step is tau = 1 (beta = gamma = 1), no momentum left
    problem = quadratic(N, sigma=0.5, init_scale=1.0)
    runs = []
    for name, opts in (("local_mixvr", {"budget": 3, "alpha": 1.0, "counter": "round"}),
                       ("minibatch_sgd", {"budget": 3})):
        ctx = fed_context(problem, lr=0.1)
        runs.append(run(name, opts, ctx, 8, record=True)[2])
    for a, b in zip(*runs, strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-12)


def test_local_mixvr_query_point_moves_at_a_constant_rate():
    # the cause of the old divergence: with eta_t = t eta the query point's step grew like t;
    # the authors' constant lr on w makes xbar move like gradient descent with step ~ 2/3 lr
    # on a linear loss f(x) = <c, x> (gradient c everywhere, noiseless: d = c exactly)
    x0 = torch.linspace(-1, 1, 5, dtype=torch.float64)
    c = torch.tensor([1.0, -2.0, 0.5, 3.0, -1.0], dtype=torch.float64)
    problem = ConstantGradient(x0.expand(N, -1).clone(), c.expand(N, -1).clone())
    eta, rounds = 0.1, 40
    ctx = context(problem, FixedSchedule(uniform_complete(N)), nx.complete_graph(N), lr=eta)
    _, _, history = run("local_mixvr", {"budget": 4, "alpha": 0.5}, ctx, rounds, record=True)
    # steps s = 1..T: w_{s+1} = w_1 - s eta c, xbar_T = sum_s s w_{s+1} / sum_s s
    T = 3 * rounds
    s = torch.arange(1, T + 1, dtype=torch.float64)
    shift = (s * s).sum() / s.sum()  # = (2 T + 1) / 3
    torch.testing.assert_close(history[-1], (x0 - shift * eta * c).expand(N, -1),
                               rtol=0, atol=1e-10)


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
