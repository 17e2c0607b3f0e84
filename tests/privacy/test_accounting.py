"""The accountant is dp-accounting's: epsilon equals the library's value and a published one."""

import math

import dp_accounting
import numpy as np
import pytest
from dp_accounting import pld, rdp

from gossip.privacy.accounting import epsilon


def test_epsilon_is_the_librarys_value():
    q, sigma, steps, delta = 0.01, 4.0, 10_000, 1e-5  # Abadi et al. 2016's lot rate and sigma
    event = dp_accounting.SelfComposedDpEvent(
        dp_accounting.PoissonSampledDpEvent(q, dp_accounting.GaussianDpEvent(sigma)), steps)
    for name, acc in (("rdp", rdp.RdpAccountant()), ("pld", pld.PLDAccountant())):
        acc.compose(event)
        assert epsilon(q, sigma, ((1, steps),), delta, name) == acc.get_epsilon(delta)
    assert epsilon(q, sigma, ((1, steps),), delta, "pld") < epsilon(q, sigma, ((1, steps),),
                                                                     delta, "rdp")


def test_published_tf_privacy_mnist_number():
    """TF Privacy's MNIST tutorial: N = 60000, B = 256, sigma = 1.1, 60 epochs, delta = 1e-5
    "satisfies differential privacy with eps = 3.01" (tensorflow/privacy tutorials README), with
    its RDP orders and the classical conversion eps = min_a rdp(a) + log(1/delta) / (a - 1)
    (Mironov 2017, Prop. 3); the library's RDP gives it, and its tighter conversion less."""
    q, sigma, steps, delta = 256 / 60000, 1.1, 14063, 1e-5
    orders = [1 + x / 10.0 for x in range(1, 100)] + list(range(12, 64))
    acc = rdp.RdpAccountant(orders)
    acc.compose(dp_accounting.PoissonSampledDpEvent(q, dp_accounting.GaussianDpEvent(sigma)),
                steps)
    classical = min(np.asarray(acc._rdp) + math.log(1 / delta) / (np.asarray(orders) - 1))
    assert round(classical, 2) == 3.01
    assert epsilon(q, sigma, ((1, steps),), delta) <= classical


def test_repeated_queries_on_one_batch_are_one_query_at_sigma_over_sqrt_k():
    q, sigma, delta = 0.05, 2.0, 1e-5
    both = epsilon(q, sigma, ((1, 30), (2, 20)), delta)
    acc = rdp.RdpAccountant()
    acc.compose(dp_accounting.PoissonSampledDpEvent(q, dp_accounting.GaussianDpEvent(sigma)), 30)
    acc.compose(dp_accounting.PoissonSampledDpEvent(
        q, dp_accounting.GaussianDpEvent(sigma / math.sqrt(2))), 20)
    assert both == pytest.approx(acc.get_epsilon(delta), rel=1e-12)
    assert both > epsilon(q, sigma, ((1, 50),), delta)  # costlier than 50 fresh batches


def test_no_queries_and_no_noise():
    assert epsilon(0.1, 1.0, (), 1e-5) == 0.0
    assert epsilon(0.1, 0.0, ((1, 3),), 1e-5) == math.inf
    steps = [epsilon(0.1, 1.0, ((1, t),), 1e-5) for t in (1, 10, 100)]
    assert steps == sorted(steps) and len(set(steps)) == 3
