"""DP-SGD gradients: per-sample clipping against a per-sample loop, noise, seeding, errors."""

import math

import pytest
import torch

from gossip.config import load_config
from gossip.errors import ConfigError
from gossip.privacy.dp_sgd import PrivateProblem
from gossip.privacy.per_sample import (
    fused_clipped_sum,
    linear_model_clipped_sum,
    vmap_clipped_sum,
)
from gossip.problems.classification import make_classification_problem
from gossip.problems.classification.grads import loop_grads
from gossip.problems.registry import make_problem

SMALL = {"dataset": "synthetic", "alpha": 0.5, "batch_size": 6, "hidden": [16],
         "partition": "iid"}


@pytest.fixture(scope="module")
def problem():
    return make_classification_problem(SMALL, n=4, seed=3, dtype=torch.float64)


def _batch(problem, step=0):
    idx = torch.stack([torch.from_numpy(problem.batch_indices(i, step)) for i in range(4)])
    X = problem.init_params(range(4)) + 0.3 * torch.randn(4, problem.dim, dtype=torch.float64,
                                                          generator=torch.Generator().manual_seed(1))
    return X[:2], problem.train_x[idx[:2]], problem.train_y[idx[:2]]


def _per_sample_loop(model, X, bx, by):
    """Reference: ``(b, B, d)`` per-sample gradients, one sample at a time with autograd."""
    return torch.stack([
        torch.stack([loop_grads(model, X[k:k + 1], bx[k:k + 1, j:j + 1], by[k:k + 1, j:j + 1])[0][0]
                     for j in range(by.shape[1])])
        for k in range(X.shape[0])])


@pytest.mark.parametrize("fn", [fused_clipped_sum, vmap_clipped_sum])
def test_per_sample_norms_and_clipped_sums_match_a_loop(problem, fn):
    X, bx, by = _batch(problem)
    ref = _per_sample_loop(problem.model, X, bx, by)
    norms_ref = ref.norm(dim=-1)
    S, losses, norms = fn(problem.model, X, bx, by, math.inf)
    assert torch.allclose(norms, norms_ref, rtol=1e-10)
    assert torch.allclose(S, ref.sum(1), rtol=1e-10, atol=1e-12)  # clip = inf: plain sums
    G, plain_losses = loop_grads(problem.model, X, bx, by)
    assert torch.allclose(S / by.shape[1], G, rtol=1e-10, atol=1e-12)
    assert torch.allclose(losses, plain_losses, rtol=1e-12)
    C = float(norms_ref.median())  # about half of the samples get clipped
    S, _, _ = fn(problem.model, X, bx, by, C)
    clipped = ref * torch.clamp(C / norms_ref, max=1.0).unsqueeze(-1)
    assert (clipped.norm(dim=-1) <= C * (1 + 1e-12)).all()
    assert torch.allclose(S, clipped.sum(1), rtol=1e-10, atol=1e-12)


def test_logistic_per_sample_gradients():
    p = make_problem("logistic", {"dim": 4, "samples_per_node": 20, "batch_size": 5}, n=3,
                     seed=0, dtype=torch.float64)
    X = torch.randn(3, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    A, y = p.batch(range(3), 2)
    def loss(x, a, t):
        return torch.nn.functional.softplus(-t * a @ x)

    ref = torch.stack([torch.stack([torch.func.grad(loss)(X[k], A[k, j], y[k, j])
                                    for j in range(5)]) for k in range(3)])
    S, _, norms = linear_model_clipped_sum(X, A, y, 0.2)
    assert torch.allclose(norms, ref.norm(dim=-1), rtol=1e-12)
    want = (ref * torch.clamp(0.2 / ref.norm(dim=-1), max=1).unsqueeze(-1)).sum(1)
    assert torch.allclose(S, want, rtol=1e-12)
    private = PrivateProblem(p, clip=1e300, noise_multiplier=0.0, delta=1e-5,
                             accountant="rdp", seed=0)
    assert torch.allclose(private.gradients(X, range(3), 2)[0], p.gradients(X, range(3), 2)[0],
                          rtol=1e-12, atol=1e-14)  # huge clip, no noise: plain gradients + reg


def test_no_noise_huge_clip_is_the_plain_gradient(problem):
    private = PrivateProblem(problem, clip=1e300, noise_multiplier=0.0, delta=1e-5,
                             accountant="rdp", seed=3)
    X, _, _ = _batch(problem)
    G, losses = problem.gradients(X, range(2), 5)
    G2, losses2 = private.gradients(X, range(2), 5)
    assert torch.allclose(G2, G, rtol=1e-10, atol=1e-12) and torch.allclose(losses2, losses)


def test_noise_statistics_and_seeding():
    p = make_problem("logistic", {"dim": 50, "samples_per_node": 20, "batch_size": 4}, n=8,
                     seed=0, dtype=torch.float64)
    sigma, C, B = 1.5, 0.3, 4
    private = PrivateProblem(p, clip=C, noise_multiplier=sigma, delta=1e-5, accountant="rdp",
                             seed=9)
    clean = PrivateProblem(p, clip=C, noise_multiplier=0.0, delta=1e-5, accountant="rdp", seed=9)
    X = torch.zeros(8, 50, dtype=torch.float64)
    noise = torch.cat([private.gradients(X, range(8), t)[0] - clean.gradients(X, range(8), t)[0]
                       for t in range(60)])
    assert abs(noise.mean()) < 4 * sigma * C / B / math.sqrt(noise.numel())
    assert noise.std() == pytest.approx(sigma * C / B, rel=0.03)
    # seeded by (seed, node, step, call): any placement, same rows; a 2nd call, fresh noise
    again = PrivateProblem(p, clip=C, noise_multiplier=sigma, delta=1e-5, accountant="rdp",
                           seed=9)
    whole = again.gradients(X, range(8), 3)[0]
    split = PrivateProblem(p, clip=C, noise_multiplier=sigma, delta=1e-5, accountant="rdp",
                           seed=9)
    parts = torch.cat([split.gradients(X[:3], range(0, 3), 3)[0],
                       split.gradients(X[3:], range(3, 8), 3)[0]])
    assert torch.equal(whole, parts)
    second = again.gradients(X, range(8), 3)[0]
    assert not torch.allclose(second, whole)
    third = PrivateProblem(p, clip=C, noise_multiplier=sigma, delta=1e-5, accountant="rdp",
                           seed=9)
    third.gradients(X, range(8), 3)
    assert torch.equal(third.gradients(X, range(8), 3)[0], second)  # its 2nd call too
    assert again.histogram(0) == ((2, 1),)  # two queries of step 3


def test_federated_accounting_counts_sampled_clients_only(tmp_path):
    from gossip.algorithms.fedavg import configure_round
    from gossip.runner.loop import run

    over = ["problem.name=logistic", "problem.batch_size=8", "nodes=10", "rounds=7",
            "eval_every=7", "algorithm.name=fedavg", "algorithm.client_fraction=0.3",
            "algorithm.local_steps=2", "privacy.clip=1.0", "privacy.noise_multiplier=2.0",
            f"out='{tmp_path}'", "name=f", "dtype=float64"]
    summary = run(load_config(None, over), quiet=True)
    priv = summary["problem"]["privacy"]
    from gossip.privacy.accounting import epsilon

    for i in range(10):
        rounds = sum(i in configure_round(10, 0.3, 0, t) for t in range(7))
        want = epsilon(8 / 64, 2.0, ((1, 2 * rounds),) if rounds else (), 1e-5)
        assert priv["epsilon"][i] == want
    assert summary["final"]["epsilon"] == max(priv["epsilon"])


def test_gradient_tracking_queries_step_zero_twice_with_local_steps(tmp_path):
    from gossip.runner.loop import run

    over = ["problem.name=logistic", "problem.batch_size=8", "nodes=4", "rounds=3",
            "eval_every=3", "algorithm.name=gradient_tracking", "algorithm.local_steps=2",
            "privacy.clip=1.0", "privacy.noise_multiplier=1.0", f"out='{tmp_path}'", "name=g"]
    summary = run(load_config(None, over), quiet=True)
    from gossip.privacy.accounting import epsilon

    # init takes step 0 once, round t steps 2t, 2t + 1: step 0 twice, 5 more steps once
    assert summary["problem"]["privacy"]["epsilon"] == [epsilon(8 / 64, 1.0, ((1, 5), (2, 1)),
                                                                1e-5)] * 4


@pytest.mark.parametrize("over, words", [
    (["privacy.clip=0"], "privacy.clip must be > 0"),
    (["privacy.clip=1", "privacy.noise_multiplier=-1"], "privacy.noise_multiplier must be"),
    (["privacy.clip=1", "privacy.delta=1"], "privacy.delta must be in (0, 1)"),
    (["privacy.noise_multiplier=1"], "needs privacy.clip"),
    (["privacy.clip=1", "problem.name=quadratic"], "no per-sample gradients"),
    (["privacy.clip=1", "algorithm.name=mime"], "full-batch gradients"),
    (["privacy.clip=1", "problem.backend=loop"], "fused or vmap"),
    (["privacy.clip=1", "privacy.accountant=moments"], "privacy.accountant must be one of"),
])
def test_bad_privacy_keys_are_one_line_errors(over, words):
    with pytest.raises(ConfigError) as err:
        load_config(None, over)
    assert words in str(err.value) and "\n" not in str(err.value)


def test_off_by_default_is_the_problem_itself(problem):
    from gossip.privacy.dp_sgd import with_privacy

    cfg = load_config(None, [])
    assert cfg["privacy"]["clip"] is None and with_privacy(problem, cfg) is problem


def test_query_counts_stay_a_few_entries_and_survive_a_checkpoint(problem):
    """Steps two behind are folded into the released histogram: the counts stay small, the
    histogram is the same, and checkpoint_state -> restore gives the same epsilon inputs."""
    P = PrivateProblem(problem, clip=1.0, noise_multiplier=1.0, delta=1e-5, accountant="rdp",
                       seed=0, participates=lambda i, t: t % 3 != 0)
    nodes = range(4)
    X = problem.init_params(nodes)
    for t in range(50):
        P.gradients(X, nodes, t)
        if t % 7 == 0:
            P.gradients(X, nodes, t)  # a second query of the same batch
    assert all(len(per) <= 2 for per in P.calls.values())
    released = [t for t in range(50) if t % 3 != 0]
    twice = sum(1 for t in released if t % 7 == 0)
    assert P.histogram(nodes[0]) == ((1, len(released) - twice), (2, twice))
    Q = PrivateProblem(problem, clip=1.0, noise_multiplier=1.0, delta=1e-5, accountant="rdp",
                       seed=0, participates=lambda i, t: t % 3 != 0)
    Q.restore_checkpoint_state(P.checkpoint_state())
    assert [Q.histogram(i) for i in nodes] == [P.histogram(i) for i in nodes]
    G1, _ = P.gradients(X, nodes, 50)
    G2, _ = Q.gradients(X, nodes, 50)
    assert torch.equal(G1, G2)
    with pytest.raises(RuntimeError, match="after steps below"):
        P.gradients(X, nodes, 10)
    with pytest.raises(ConfigError, match="no valid \\[privacy\\] query counts"):
        Q.restore_checkpoint_state({})
