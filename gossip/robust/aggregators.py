"""Robust aggregation rules: pure functions of ``k`` received rows ``(k, d)``.

The server step of the centralized modes is ``w <- w - gamma agg({g_i})``; ``agg = mean`` is
plain SGD, the others bound what ``f`` Byzantine rows can do (see the lecture notes and the
papers cited per rule). Each rule is registered in :data:`AGGREGATORS` with its options
dataclass (the table ``algorithm.aggregator_options``) and built by :func:`make_aggregator`
into ``agg(rows, center) -> (d,)``; ``center`` is the reference point of centered clipping
(the previous aggregate at a server, the node's own model in decentralized use) and is ignored
by the other rules.

Exactness: the rules that average a selection (trimmed mean, multi-Krum, the Weiszfeld steps,
centered clipping) add the average *difference* to a reference row, ``z + 1/m sum (x_i - z)``,
so rows that are identical come back bit for bit (a plain ``1/m sum x_i`` of ``m`` equal
floats is not always that float). ``mean`` is the plain mean (what the fast paths compute).

Examples
--------
>>> import torch
>>> rows = torch.tensor([[1.0, 2.0]] * 4 + [[100.0, -50.0]])
>>> make_aggregator("cm", {})(rows).tolist()
[1.0, 2.0]
>>> make_aggregator("krum", {"f": 1})(rows).tolist()
[1.0, 2.0]
>>> make_aggregator("krum", {"f": 2})(rows)
Traceback (most recent call last):
...
gossip.errors.ConfigError: algorithm.aggregator_options.f=2 needs n > 2 f + 2 rows (krum), got 5
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

import torch

from gossip.errors import ConfigError
from gossip.options import at_least, non_negative, positive
from gossip.registry import NoOptions, Registry, option

__all__ = [
    "AGGREGATORS",
    "cclip",
    "cm",
    "krum",
    "krum_scores",
    "make_aggregator",
    "mean",
    "multi_krum",
    "rfa",
    "trimmed_mean",
]

#: Every rule by its ``algorithm.aggregator`` name; options in ``algorithm.aggregator_options``.
AGGREGATORS: Registry[Callable] = Registry("aggregator", "algorithm.aggregator_options")

Aggregate = Callable[..., torch.Tensor]


def _centered_mean(rows: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    """``z + 1/k sum_i (x_i - z)``: the mean of ``rows``, exactly ``z`` when all rows are."""
    return z + (rows - z).mean(0)


def mean(rows: torch.Tensor, center: torch.Tensor | None = None) -> torch.Tensor:
    """``1/k sum_i x_i`` (breakdown point 0)."""
    return rows.mean(0)


def cm(rows: torch.Tensor, center: torch.Tensor | None = None) -> torch.Tensor:
    """Coordinate-wise median (Yin et al. 2018, "Byzantine-Robust Distributed Learning:
    Towards Optimal Statistical Rates"): per coordinate the middle value, the mean of the two
    middle values for even ``k``. Exact for ``f < k / 2`` identical honest rows."""
    s = rows.sort(0).values
    k = s.shape[0]
    if k % 2:
        return s[k // 2].clone()
    lo, hi = s[k // 2 - 1], s[k // 2]
    return lo + (hi - lo) / 2


def trimmed_mean(rows: torch.Tensor, center: torch.Tensor | None = None, *,
                 trim: int = 1) -> torch.Tensor:
    """Coordinate-wise trimmed mean (Yin et al. 2018): per coordinate drop the ``trim``
    largest and ``trim`` smallest values and average the rest (about the median, see the
    module docstring). Needs ``k > 2 trim``; exact for ``f <= trim`` identical honest rows."""
    k = rows.shape[0]
    if k <= 2 * trim:
        raise ConfigError(f"algorithm.aggregator_options.trim={trim} needs more than 2 trim "
                          f"rows (trimmed_mean), got {k}")
    s = rows.sort(0).values[trim : k - trim]
    return _centered_mean(s, s[(k - 2 * trim) // 2])


def _check_krum(k: int, f: int, name: str) -> None:
    if k <= 2 * f + 2:
        raise ConfigError(f"algorithm.aggregator_options.f={f} needs n > 2 f + 2 rows "
                          f"({name}), got {k}")


def krum_scores(rows: torch.Tensor, f: int) -> torch.Tensor:
    """Krum's score of every row (Blanchard et al. 2017, "Machine Learning with Adversaries:
    Byzantine Tolerant Gradient Descent"): ``s_i = sum_{j in N_i} ||x_i - x_j||^2`` over the
    ``k - f - 2`` rows ``j != i`` closest to ``x_i``. Squared distances in float64."""
    x = rows.reshape(rows.shape[0], -1).to(torch.float64)
    d2 = torch.cdist(x, x).square()
    d2.fill_diagonal_(float("inf"))
    near = d2.sort(1).values[:, : rows.shape[0] - f - 2]
    return near.sum(1)


def krum(rows: torch.Tensor, center: torch.Tensor | None = None, *, f: int = 1
         ) -> torch.Tensor:
    """Krum: the row of the lowest score (:func:`krum_scores`; the first one on ties).
    Needs ``k > 2 f + 2``; picks an honest row when the ``k - f`` honest rows are identical."""
    _check_krum(rows.shape[0], f, "krum")
    return rows[int(torch.argmin(krum_scores(rows, f)))].clone()


def multi_krum(rows: torch.Tensor, center: torch.Tensor | None = None, *, f: int = 1,
               m: int = 0) -> torch.Tensor:
    """Multi-Krum (Blanchard et al. 2017): the mean of the ``m`` rows of lowest Krum score
    (``m = 0``: ``k - f``). The scores are computed once (as Flower and the authors'
    implementation do), not recomputed after each selection."""
    k = rows.shape[0]
    _check_krum(k, f, "multi_krum")
    m = k - f if m == 0 else min(m, k)
    best = torch.argsort(krum_scores(rows, f), stable=True)[:m]
    chosen = rows[best.to(rows.device)]
    return _centered_mean(chosen, chosen[0])


def rfa(rows: torch.Tensor, center: torch.Tensor | None = None, *, iterations: int = 8,
        nu: float = 1e-6) -> torch.Tensor:
    """Robust federated aggregation (Pillutla, Kakade, Harchaoui 2019, "Robust Aggregation for
    Federated Learning", Algorithm 2): ``iterations`` smoothed Weiszfeld steps towards the
    geometric median ``argmin_z sum_i ||z - x_i||``::

        beta_i = 1 / max(nu, ||z - x_i||),     z <- sum_i beta_i x_i / sum_i beta_i

    with equal weights ``alpha_i``. Departure: ``z`` starts at the coordinate-wise median
    (:func:`cm`; the paper leaves the start open, the authors' code starts at 0), and a step
    is written ``z + sum_i beta_i (x_i - z) / sum_i beta_i``. It minimises the
    ``nu``-smoothed objective, within about ``nu`` of the geometric median."""
    z = cm(rows)
    for _ in range(iterations):
        diff = rows - z
        beta = 1.0 / diff.reshape(rows.shape[0], -1).norm(dim=1).clamp_min(nu)
        z = z + (beta.reshape(-1, *[1] * (rows.dim() - 1)) * diff).sum(0) / beta.sum()
    return z


def cclip(rows: torch.Tensor, center: torch.Tensor | None = None, *, radius: float = 1.0,
          iterations: int = 1) -> torch.Tensor:
    """Centered clipping (Karimireddy, He, Jaggi 2021, "Learning from History for
    Byzantine Robust Optimization", eq. (CC)): ``iterations`` times::

        v <- v + 1/k sum_i (x_i - v) min(1, radius / ||x_i - v||)

    from ``v = center`` (zeros when none; the paper's ``v`` is the previous aggregate). With
    ``radius = inf`` one step is the mean; ``f`` Byzantine rows move ``v`` by at most
    ``f radius / k`` per step."""
    v = torch.zeros_like(rows[0]) if center is None else center
    for _ in range(iterations):
        diff = rows - v
        norm = diff.reshape(rows.shape[0], -1).norm(dim=1)
        scale = torch.where(norm > radius, radius / norm.clamp_min(1e-300), 1.0)
        v = v + (scale.reshape(-1, *[1] * (rows.dim() - 1)).to(rows.dtype) * diff).mean(0)
    return v


# -- the registry --------------------------------------------------------------------------


@dataclass(frozen=True)
class TrimmedMeanOptions:
    trim: int = option(1, "values dropped at each end per coordinate (>= f)",
                       check=at_least(1))


@dataclass(frozen=True)
class KrumOptions:
    f: int = option(1, "Byzantine rows tolerated (needs n > 2 f + 2)", check=non_negative)


@dataclass(frozen=True)
class MultiKrumOptions:
    f: int = option(1, "Byzantine rows tolerated (needs n > 2 f + 2)", check=non_negative)
    m: int = option(0, "rows averaged (0: n - f)", check=non_negative)


@dataclass(frozen=True)
class RfaOptions:
    iterations: int = option(8, "smoothed Weiszfeld steps", check=at_least(1))
    nu: float = option(1e-6, "smoothing nu of the Weiszfeld weights", check=positive)


@dataclass(frozen=True)
class CclipOptions:
    radius: float = option(1.0, "clipping radius tau", check=positive)
    iterations: int = option(1, "clipping iterations L", check=at_least(1))


for _name, _fn, _opts in (
    ("mean", mean, NoOptions),
    ("cm", cm, NoOptions),
    ("trimmed_mean", trimmed_mean, TrimmedMeanOptions),
    ("krum", krum, KrumOptions),
    ("multi_krum", multi_krum, MultiKrumOptions),
    ("rfa", rfa, RfaOptions),
    ("cclip", cclip, CclipOptions),
):
    AGGREGATORS.register(_name, _opts)(_fn)


def make_aggregator(name: str, options: dict) -> Aggregate:
    """``agg(rows, center=None) -> (d,)``: the rule ``name`` with its options checked
    (ConfigError naming ``algorithm.aggregator_options.<key>``)."""
    cfg = AGGREGATORS.config(name, options)
    return partial(AGGREGATORS[name], **{k: getattr(cfg, k) for k in cfg.__dataclass_fields__})
