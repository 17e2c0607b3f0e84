"""Poisson-subsampled DP-SGD batches (``privacy.sampling = "poisson"``): inclusion rates, the
empty batch, unbiasedness against the full-batch gradient, per-sample sums over the realised
batch, placement independence, the option's error."""

import math

import numpy as np
import pytest
import torch

from gossip.config import load_config
from gossip.errors import ConfigError
from gossip.privacy.dp_sgd import PrivateProblem
from gossip.privacy.per_sample import linear_model_clipped_sum
from gossip.privacy.poisson import inclusion_mask, poisson_batches
from gossip.problems.classification import make_classification_problem
from gossip.problems.classification.grads import loop_grads
from gossip.problems.registry import make_problem


def _private(p, **kw):
    args = {"clip": 1e300, "noise_multiplier": 0.0, "delta": 1e-5, "accountant": "rdp",
            "seed": 4, "sampling": "poisson", **kw}
    return PrivateProblem(p, **args)


def _logistic(batch_size=4, n=3, m=20, dim=4):
    return make_problem("logistic", {"dim": dim, "samples_per_node": m, "batch_size": batch_size},
                        n=n, seed=0, dtype=torch.float64)


def test_each_example_is_included_with_probability_q():
    """Over T steps example k's count is Binomial(T, q): within 5 standard deviations for
    every example; the realised batch size has mean B = q n."""
    sizes, B, T = [40, 25], 5, 3000
    pos, w = zip(*(poisson_batches(7, range(2), sizes, B, t) for t in range(T)), strict=True)
    for i, n in enumerate(sizes):
        q = B / n
        counts = np.zeros(n)
        lens = []
        for p, ww in zip(pos, w, strict=True):
            chosen = p[i][ww[i] > 0]
            assert len(np.unique(chosen)) == len(chosen)  # each example at most once
            counts[chosen] += 1
            lens.append(len(chosen))
        assert np.all(np.abs(counts / T - q) < 5 * math.sqrt(q * (1 - q) / T))
        assert abs(np.mean(lens) - B) < 5 * math.sqrt(n * q * (1 - q) / T)
    # seeded by (seed, node, step) only: a node's batch does not depend on its block
    whole, w_whole = poisson_batches(7, range(2), sizes, B, 11)
    alone, w_alone = poisson_batches(7, range(1, 2), sizes, B, 11)
    assert np.array_equal(whole[1][w_whole[1] > 0], alone[0][w_alone[0] > 0])


def test_empty_batch_releases_only_noise_and_reports_loss_zero():
    p = _logistic(batch_size=1)  # q = 1/20: node 0's batch is empty w.p. 0.95^20 ~ 0.36
    t = next(t for t in range(100) if not inclusion_mask(4, 0, t, 20, 1 / 20).any())
    X = torch.randn(3, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    G, losses = _private(p, clip=0.5).gradients(X, range(3), t)
    assert torch.equal(G[0], p.reg * X[0]) and losses[0] == 0  # sum 0, no noise
    sigma = 2.0
    G, _ = _private(p, clip=0.5, noise_multiplier=sigma).gradients(X, range(3), t)
    xi = np.random.default_rng([4, 0, t, 0, 0xD95C]).standard_normal(4)
    assert torch.allclose(G[0], sigma * 0.5 * torch.as_tensor(xi) / 1 + p.reg * X[0],
                          rtol=1e-14, atol=0)


def test_expected_gradient_is_the_full_batch_mean():
    """At clip = inf and no noise, E[S / B] = sum_k q g_k / B = (1/n) sum_k g_k: exactly with
    weights q on every example; and the average over many sampled steps within 5 standard
    errors."""
    B, m = 4, 20
    p = _logistic(batch_size=B, m=m)
    X = torch.randn(3, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    full = p.full_gradients(X, range(3))[0] - p.reg * X
    S, _, _ = linear_model_clipped_sum(X, p.A, p.b, math.inf,
                                       torch.full((3, m), B / m, dtype=torch.float64))
    assert torch.allclose(S / B, full, rtol=1e-13, atol=1e-15)
    private, T = _private(p), 2000
    G = torch.stack([private.gradients(X, range(3), t)[0] - p.reg * X for t in range(T)])
    se = G.std(0) / math.sqrt(T)
    assert ((G.mean(0) - full).abs() < 5 * se).all()


@pytest.mark.parametrize("backend", ["fused", "vmap"])
def test_classification_sums_over_the_realised_batch(backend):
    """Padded, weighted per-sample paths = clipped per-sample loop over exactly the included
    examples (positions mapped through the node's part), loss their mean."""
    cfg = {"dataset": "synthetic", "alpha": 0.5, "batch_size": 6, "hidden": [8],
           "partition": "iid", "backend": backend}
    problem = make_classification_problem(cfg, n=3, seed=3, dtype=torch.float64)
    private = _private(problem, clip=0.05)
    X = problem.init_params(range(3))
    G, losses = private.gradients(X, range(3), 2)
    pos, w = poisson_batches(4, range(3), private.sizes, 6, 2)
    for i in range(3):
        idx = torch.from_numpy(problem.parts[i][pos[i][w[i] > 0]])
        bx, by = problem.train_x[idx], problem.train_y[idx]
        per = torch.stack([loop_grads(problem.model, X[i:i + 1], bx[None, j:j + 1],
                                      by[None, j:j + 1])[0][0] for j in range(len(idx))])
        clipped = per * torch.clamp(0.05 / per.norm(dim=-1), max=1.0).unsqueeze(-1)
        want = clipped.sum(0) / 6 + problem.weight_decay * X[i]
        assert torch.allclose(G[i], want, rtol=1e-10, atol=1e-12)
        _, loss = loop_grads(problem.model, X[i:i + 1], bx[None], by[None])
        assert losses[i].item() == pytest.approx(loss.item(), rel=1e-12)


def test_shuffle_is_the_default_and_bad_sampling_is_a_one_line_error():
    assert load_config(None, ["privacy.clip=1"])["privacy"]["sampling"] == "shuffle"
    with pytest.raises(ConfigError) as err:
        load_config(None, ["privacy.clip=1", "privacy.sampling=uniform"])
    msg = str(err.value)
    assert "privacy.sampling must be one of [shuffle, poisson]" in msg and "\n" not in msg
    with pytest.raises(ConfigError, match="shuffle, poisson"):
        _private(_logistic(), sampling="fixed")
