"""Privacy accounting of DP-SGD with Google's ``dp-accounting`` library (no accountant here).

One noisy gradient of node ``i`` is a subsampled Gaussian mechanism: its mini-batch is a
``q_i = B / n_i`` fraction of its ``n_i`` training examples, every per-sample gradient is
clipped to ``C`` and the sum gets ``N(0, sigma^2 C^2 I)``. The library composes these events,
``SelfComposedDpEvent(PoissonSampledDpEvent(q_i, GaussianDpEvent(sigma)), T_i)``, and returns
``epsilon`` at ``delta`` with its RDP (per-step RDP vector from the library's
``RdpAccountant``, cached per ``(q, sigma)``, composed by addition, converted by its
``compute_epsilon``) (Mironov 2017; Mironov, Talwar & Zhang 2019;
the default, as in Abadi et al. 2016's moments accountant) or its PLD accountant (Koskela et al.
2020; Doroshenko et al. 2022; tighter), for the add-or-remove-one neighbouring relation.

Several gradients on the SAME mini-batch (SCAFFOLD/STORM-type corrections ``g(y; z) - g(x;
z)``, K-GT's initial gradient and its first local step, Local MixVR's two points) are one
query of their concatenation: ``k`` clipped gradients each of norm ``<= C`` have joint
sensitivity ``C sqrt(k)`` and independent noise ``sigma C`` each, i.e. one subsampled Gaussian
with noise multiplier ``sigma / sqrt(k)``. A node's queries are therefore a histogram
``{k: number of steps queried k times}`` (:func:`epsilon`).

With ``privacy.sampling = "poisson"`` (:mod:`gossip.privacy.poisson`) the mini-batches ARE
Poisson samples of rate ``q_i`` and the sum is divided by the expected size ``B``, so the
accounting below is exact for the run (up to the accountant's own numerical bounds).

Departure, stated plainly, for ``privacy.sampling = "shuffle"`` (the default): the
mini-batches are NOT Poisson samples. Classification walks a
fresh random permutation of ``D_i`` every epoch (shuffling, fixed batch size ``B``; a batch
that straddles two epochs may hold one example twice); logistic draws ``B`` of ``m`` without
replacement at every step. We account them as Poisson sampling with rate ``q_i = B / n_i``,
the common approximation in DP-SGD practice (Abadi et al. 2016 do the same with "lots");
shuffled batches are known not to enjoy the same amplification in the worst case (Chua et al.
2024, "How Private are DP-SGD Implementations?"), so the epsilons are those of the Poisson
idealisation, not a certificate for the shuffled run.
"""

from __future__ import annotations

import logging
import math
from contextlib import contextmanager
from functools import lru_cache

import dp_accounting
import numpy as np
from dp_accounting import pld, rdp

__all__ = ["ACCOUNTANTS", "dp_event", "epsilon"]

#: Values of ``privacy.accountant``.
ACCOUNTANTS = ("rdp", "pld")


def dp_event(q: float, noise_multiplier: float,
             histogram: tuple[tuple[int, int], ...]) -> dp_accounting.DpEvent:
    """The composition of a node's queries: for each ``(k, steps)`` of ``histogram``,
    ``steps`` Poisson-subsampled (rate ``q``) Gaussians of noise multiplier
    ``noise_multiplier / sqrt(k)``."""
    return dp_accounting.ComposedDpEvent([
        dp_accounting.SelfComposedDpEvent(
            dp_accounting.PoissonSampledDpEvent(
                q, dp_accounting.GaussianDpEvent(noise_multiplier / math.sqrt(k))),
            steps)
        for k, steps in histogram if steps > 0
    ])


@lru_cache(maxsize=4096)
def epsilon(q: float, noise_multiplier: float, histogram: tuple[tuple[int, int], ...],
            delta: float, accountant: str = "rdp") -> float:
    """``epsilon`` at ``delta`` of :func:`dp_event` (``inf`` for ``noise_multiplier = 0``
    and any query; 0 without queries), by the library's ``accountant`` (``rdp`` or ``pld``).

    Cached: nodes with the same ``(q, histogram)`` (equal data sizes) cost one call, so the
    per-node epsilons of a record are cheap.

    Examples
    --------
    >>> round(epsilon(0.01, 4.0, ((1, 10000),), 1e-5), 2)  # Abadi et al. 2016's setting
    1.04
    """
    if not any(steps for _, steps in histogram):
        return 0.0
    if noise_multiplier == 0:
        return math.inf
    with _quiet_absl():
        if accountant == "pld":
            acc = pld.PLDAccountant()
            acc.compose(dp_event(q, noise_multiplier, histogram))
            return float(acc.get_epsilon(delta))
        total = sum(steps * _step_rdp(q, noise_multiplier / math.sqrt(k))
                    for k, steps in histogram)
        return float(rdp.compute_epsilon(RDP_ORDERS, total, delta)[0])


#: The RDP accountant's default orders.
RDP_ORDERS = tuple(rdp.RdpAccountant()._orders)


@lru_cache(maxsize=1024)
def _step_rdp(q: float, noise_multiplier: float) -> np.ndarray:
    """The library's RDP of ONE Poisson-subsampled Gaussian at :data:`RDP_ORDERS` (its
    ``RdpAccountant`` after one ``compose``). RDP composes by addition (Mironov 2017, Prop. 1),
    which is what the accountant does with ``count``: ``steps * rdp`` is its composition,
    and only this vector (the costly part: a series per fractional order) is computed once per
    ``(q, sigma)``, so an epsilon at every record costs a sum and ``compute_epsilon``."""
    acc = rdp.RdpAccountant(RDP_ORDERS)
    acc.compose(dp_accounting.PoissonSampledDpEvent(
        q, dp_accounting.GaussianDpEvent(noise_multiplier)))
    return np.asarray(acc._rdp, dtype=float)


@contextmanager
def _quiet_absl():
    """The RDP accountant logs (absl) each fractional order whose series does not converge
    and leaves that order out (infinite RDP there): the bound over the remaining orders is
    still valid, only looser. Those lines are silenced."""
    absl = logging.getLogger("absl")
    level = absl.level
    absl.setLevel(logging.ERROR)
    try:
        yield
    finally:
        absl.setLevel(level)
