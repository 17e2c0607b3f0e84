"""Properties of the robust aggregation rules (gossip.robust.aggregators)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.optimize
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from gossip.errors import ConfigError
from gossip.robust.aggregators import AGGREGATORS, cclip, krum_scores, make_aggregator, rfa


def _rows(n: int, f: int, d: int, seed: int, scale: float = 100.0):
    """``n - f`` identical honest rows and ``f`` Byzantine rows at random positions."""
    rng = np.random.default_rng(seed)
    h = rng.standard_normal(d)
    rows = np.tile(h, (n, 1))
    bad = rng.choice(n, size=f, replace=False)
    rows[bad] = scale * rng.standard_normal((f, d))
    return torch.tensor(rows), torch.tensor(h), bad


# rule -> (options for f, the largest f it tolerates among n rows)
EXACT = {
    "cm": (lambda f: {}, lambda n: (n - 1) // 2),
    "trimmed_mean": (lambda f: {"trim": max(f, 1)}, lambda n: (n - 1) // 2),
    "krum": (lambda f: {"f": f}, lambda n: (n - 3) // 2),
    "multi_krum": (lambda f: {"f": f}, lambda n: (n - 3) // 2),
}


@settings(max_examples=40, deadline=None)
@given(n=st.integers(4, 12), frac=st.floats(0, 1), d=st.integers(1, 6), seed=st.integers(0, 99),
       rule=st.sampled_from(sorted(EXACT)))
def test_identical_honest_rows_come_back_exactly(n, frac, d, seed, rule):
    options, breakdown = EXACT[rule]
    f = int(frac * breakdown(n))
    rows, h, _ = _rows(n, f, d, seed)
    out = make_aggregator(rule, options(f))(rows)
    assert torch.equal(out, h), (rule, n, f)


def test_mean_breaks_down_with_one_byzantine_row():
    rows, h, _ = _rows(8, 0, 3, 0)
    assert torch.allclose(make_aggregator("mean", {})(rows), h, rtol=0, atol=1e-15)
    rows, h, _ = _rows(8, 1, 3, 0, scale=1e6)
    assert (make_aggregator("mean", {})(rows) - h).norm() > 1e3


@pytest.mark.parametrize("n", [5, 8, 11])
def test_krum_picks_an_honest_row(n):
    # honest rows differ (noise), f < (n - 2) / 2 Byzantine rows sit together far away
    rng = np.random.default_rng(n)
    f = (n - 3) // 2
    honest = rng.standard_normal((n - f, 4))
    byz = 5.0 + 0.01 * rng.standard_normal((f, 4))
    rows = torch.tensor(np.concatenate([byz, honest]))
    out = make_aggregator("krum", {"f": f})(rows)
    assert any(torch.equal(out, r) for r in rows[f:])
    assert int(torch.argmin(krum_scores(rows, f))) >= f


def _geometric_median(x: np.ndarray) -> np.ndarray:
    res = scipy.optimize.minimize(lambda z: np.linalg.norm(x - z, axis=1).sum(), x.mean(0),
                                  method="Nelder-Mead",
                                  options={"xatol": 1e-12, "fatol": 1e-14, "maxiter": 40000})
    return res.x


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_rfa_is_the_geometric_median(seed):
    x = np.random.default_rng(seed).standard_normal((9, 3)) * np.array([1.0, 3.0, 0.5])
    want = _geometric_median(x)
    got = rfa(torch.tensor(x), iterations=2000, nu=1e-12).numpy()
    assert np.abs(got - want).max() < 1e-6


def test_rfa_with_an_honest_majority_lands_within_nu():
    rows, h, _ = _rows(9, 4, 3, 7)
    out = make_aggregator("rfa", {"iterations": 50, "nu": 1e-9})(rows)
    assert (out - h).norm() < 1e-8


def test_cclip_with_infinite_radius_is_the_mean():
    rows = torch.randn(7, 5, dtype=torch.float64)
    center = torch.randn(5, dtype=torch.float64)
    out = cclip(rows, center, radius=math.inf, iterations=1)
    assert torch.allclose(out, rows.mean(0), rtol=0, atol=1e-14)


def test_cclip_moves_at_most_f_radius_over_n_from_an_honest_center():
    n, f, tau = 10, 3, 0.5
    rows, h, _ = _rows(n, f, 4, 3, scale=1e3)
    out = cclip(rows, h.clone(), radius=tau, iterations=1)
    assert (out - h).norm() <= f * tau / n + 1e-12


def test_every_rule_is_registered_with_its_options():
    assert AGGREGATORS.names() == sorted(
        ["mean", "cm", "trimmed_mean", "krum", "multi_krum", "rfa", "cclip"])
    with pytest.raises(ConfigError, match="algorithm.aggregator_options.radius must be > 0"):
        make_aggregator("cclip", {"radius": 0})
    with pytest.raises(ConfigError, match="unknown key algorithm.aggregator_options.f"):
        make_aggregator("cm", {"f": 1})
    with pytest.raises(ConfigError, match="trim=3 needs more than 2 trim rows"):
        make_aggregator("trimmed_mean", {"trim": 3})(torch.zeros(6, 2))
