"""Secure aggregation (Bonawitz et al. 2017), simulated: masks cancel exactly in integers, the
server's view of one client is uniform noise, dropouts are recovered, bytes follow the formula,
and fedavg / allreduce with it follow the plain runs to the quantisation bound."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from gossip.algorithms.fedavg import configure_round
from gossip.comm.channel import Channel
from gossip.comm.local import LocalComm
from gossip.errors import ConfigError
from gossip.privacy.secure_aggregation import (
    SecAgg,
    SecureAggregationOptions,
    decode,
    encode,
    fraction_bits,
    make_secagg,
    masked_inputs,
    round_bytes,
    secure_mean,
)
from gossip.problems.registry import make_problem
from tests.algorithms.alg_helpers import context, quadratic, run, static_schedule


class Lose(Channel):
    """The uploads of the clients in ``lost`` never arrive (every round)."""

    def __init__(self, lost) -> None:
        self.lost = np.asarray(lost, dtype=np.int64)

    def arrives(self, src, dst, t):
        return ~np.isin(np.asarray(src), self.lost)


def params(m: int, bits: int = 32, clip: float = 4.0, threshold: float = 0.5,
           double_mask: bool = True, seed: int = 7) -> SecAgg:
    cfg = SecureAggregationOptions(True, bits, clip, threshold, double_mask)
    return make_secagg(cfg, m, seed, "fedavg")


def rows(n: int, d: int, seed: int = 0, scale: float = 1.0) -> torch.Tensor:
    return scale * torch.randn(n, d, generator=torch.Generator().manual_seed(seed),
                               dtype=torch.float64)


@pytest.mark.parametrize(("bits", "m", "clip"), [(16, 2, 1.0), (32, 100, 8.0), (48, 16, 0.3)])
def test_fraction_bits_is_the_largest_without_overflow(bits, m, clip):
    f = fraction_bits(bits, m, clip)
    limit = 2 ** (bits - 1) - 1
    assert m * math.ceil(clip * 2**f) <= limit < m * math.ceil(clip * 2 ** (f + 1))


def test_encode_decode_round_trip_within_half_a_step():
    p = params(4)
    X = rows(4, 50, scale=2.0)
    back = torch.stack([decode(q, p.bits, p.frac) for q in encode(X, p.bits, p.frac, p.clip)])
    assert (back - X.clamp(-4, 4)).abs().max() <= 2.0 ** (-p.frac - 1)
    # saturation at the clip
    big = torch.tensor([[10.0, -10.0]], dtype=torch.float64)
    assert decode(encode(big, p.bits, p.frac, p.clip)[0], p.bits, p.frac).tolist() == [4.0, -4.0]


@pytest.mark.filterwarnings("ignore:secure aggregation saturated")  # saturation is exact too
@settings(max_examples=20, deadline=None)
@given(m=st.integers(2, 7), seed=st.integers(0, 2**31), t=st.integers(0, 50),
       bits=st.sampled_from([16, 32, 48]), double=st.booleans())
def test_masks_cancel_exactly_in_integers(m, seed, t, bits, double):
    p = params(m, bits=bits, double_mask=double, seed=seed)
    X = rows(m, 9, seed=seed % 1000, scale=3.0)
    senders = np.arange(m)
    Y = masked_inputs(p, X, senders, range(m), t)
    assert int(Y.min()) >= 0 and int(Y.max()) < 2**bits
    M = 2**bits
    if not double:  # pairwise masks alone cancel in the server's sum
        assert torch.equal(Y.sum(0) % M, encode(X, p.bits, p.frac, p.clip).sum(0) % M)
    q = torch.round(X.clamp(-p.clip, p.clip) * 2.0**p.frac).to(torch.int64)  # signed q_i
    mean = secure_mean(p, LocalComm(m), X, senders, t).mean
    # exact: the decoded integer is sum_i q_i (the same float steps as decode(S) / m)
    assert torch.equal(mean, q.sum(0).to(torch.float64) / 2.0**p.frac / m)
    assert (mean - X.clamp(-p.clip, p.clip).mean(0)).abs().max() <= 2.0 ** (-p.frac - 1)


def test_one_masked_vector_is_uniform_and_independent_of_the_update():
    m, d = 5, 20000
    p = params(m, bits=16, clip=1.0)
    senders = np.arange(m)
    X = rows(m, d, scale=0.1)
    zero = torch.zeros_like(X)
    y = masked_inputs(p, X, senders, range(m), t=3)
    y0 = masked_inputs(p, zero, senders, range(m), t=3)
    for row in (y[2], y0[2]):  # uniform on Z_{2^16}: chi-square over 16 bins
        counts = torch.bincount(row // 2**12, minlength=16).double()
        chi2 = ((counts - d / 16) ** 2 / (d / 16)).sum()
        assert chi2 < 50  # 15 degrees of freedom: P(chi2 > 50) < 1e-5
    # another seed: a completely different vector, the same sum
    other = masked_inputs(params(m, bits=16, clip=1.0, seed=8), X, senders, range(m), t=3)
    assert (other[2] == y[2]).double().mean() < 0.01
    q = encode(X, p.bits, p.frac, p.clip)
    assert (y[2] == q[2]).double().mean() < 0.01  # the update itself does not show through
    a = secure_mean(p, LocalComm(m), X, senders, 3).mean
    b = secure_mean(params(m, bits=16, clip=1.0, seed=8), LocalComm(m), X, senders, 3).mean
    assert torch.equal(a, b)


@pytest.mark.parametrize("double", [True, False])
def test_dropouts_recovered_mean_over_survivors(double):
    m, d = 8, 11
    p = params(m, threshold=0.5, double_mask=double)
    comm = LocalComm(m)
    comm.channel = Lose([1, 4, 6])
    X = rows(m, d, seed=3)
    senders = np.arange(m)
    out = secure_mean(p, comm, X, senders, t=2)
    survivors = [0, 2, 3, 5, 7]
    assert out.survivors.tolist() == survivors and out.dropped.tolist() == [1, 4, 6]
    q = torch.round(X[survivors].clamp(-p.clip, p.clip) * 2.0**p.frac).to(torch.int64)
    assert torch.equal(out.mean, q.sum(0).to(torch.float64) / 2.0**p.frac / len(survivors))
    assert (out.mean - X[survivors].mean(0)).abs().max() <= 2.0 ** (-p.frac - 1)


def _bytes_of(p, comm, X, senders, t):
    before = comm.stats.bytes_sent
    out = secure_mean(p, comm, X, senders, t)
    return out, comm.stats.bytes_sent - before


@pytest.mark.parametrize(("lost", "double"), [((), True), ((), False), ((2,), True),
                                              ((0, 5), False)])
def test_bytes_equal_the_formula(lost, double):
    m, d = 6, 13
    p = params(m, bits=24, double_mask=double)
    comm = LocalComm(m)
    comm.channel = Lose(lost)
    out, sent = _bytes_of(p, comm, rows(m, d), np.arange(m), 0)
    assert out.mean is not None
    assert sent == round_bytes(p, m, m - len(lost), d)["total"]
    # the formula by hand for one case: 6 clients, 1 dropped, double masking
    if lost == (2,):
        E = 2 * 4 + 2 * 32 + 28
        expect = (6 * 64 + 36 * 68) + 2 * 30 * E + 6 * math.ceil(13 * 24 / 8) \
            + (5 * 5 * 4 + 5 * (1 + 5) * 36)
        assert sent == expect


def test_below_threshold_aborts_and_counts_no_unmasking():
    m, d = 6, 4
    p = params(m, threshold=0.8)  # t = ceil(4.8) = 5
    assert p.threshold == 5
    comm = LocalComm(m)
    comm.channel = Lose([1, 3])
    out, sent = _bytes_of(p, comm, rows(m, d), np.arange(m), 0)
    assert out.mean is None and out.survivors.tolist() == [0, 2, 4, 5]
    b = round_bytes(p, m, 4, d)
    assert b["unmask"] == 0 and sent == b["total"]


def test_fedavg_aborted_round_changes_nothing_and_is_recorded():
    n = 6
    problem = quadratic(n=n, dim=3)
    schedule, graph = static_schedule("ring", n)
    ctx = context(problem, schedule, graph)
    ctx.comm.channel = Lose([0, 1, 2])
    opts = {"client_fraction": 1.0, "secure_aggregation": True,
            "secure_aggregation_threshold": 0.6}
    alg, state = run("fedavg", opts, ctx, rounds=0)
    new, _ = alg.round(state, 0, ctx)
    assert torch.equal(new.X, state.X) and torch.equal(new.V, state.V)
    assert alg.metrics(new) == {"secure_aggregation_aborted": 1}
    assert alg.metrics(run("fedavg", {}, ctx, rounds=0)[1]) == {}


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("name", ["fedavg", "allreduce"])
def test_runs_follow_the_plain_runs_to_the_quantisation_bound(name, dtype):
    n, rounds, eta = 8, 12, 0.05
    problem = make_problem("quadratic", {"dim": 4, "heterogeneity": 5.0, "a_min": 1.0,
                                         "a_max": 3.0}, n=n, seed=0, dtype=dtype)
    schedule, graph = static_schedule("ring", n)
    base = {"client_fraction": 0.5, "local_steps": 2} if name == "fedavg" else {}
    # the clip above every gradient and update of the run (else it saturates them)
    secure = {**base, "secure_aggregation": True, "secure_aggregation_clip": 100.0}
    _, _, plain = run(name, base, context(problem, schedule, graph, lr=eta), rounds, True)
    _, _, sec = run(name, secure, context(problem, schedule, graph, lr=eta), rounds, True)
    m = len(configure_round(n, 0.5, 0, 0)) if name == "fedavg" else n
    f = fraction_bits(32, m, 100.0)
    step = 1.0 if name == "fedavg" else eta  # server_lr on Delta, or eta on g_bar
    float_eps = 1e-6 if dtype == torch.float32 else 1e-13
    worst = 0.0
    for t, (a, b) in enumerate(zip(plain, sec, strict=True)):
        assert a.dtype == b.dtype == dtype
        # each round's mean is off by <= 2^{-f-1} per entry; the quadratic's steps contract
        # (|1 - eta a| < 1), so the errors add up at most
        gap = float((a - b).abs().max())
        assert gap <= (t + 1) * step * 2.0 ** (-f - 1) + float_eps * (t + 1), (t, gap)
        worst = max(worst, gap)
    assert worst > 0  # the secure run quantises: not the plain run by accident


def test_bad_input_one_line_errors():
    n = 6
    problem = quadratic(n=n, dim=3)
    schedule, graph = static_schedule("ring", n)
    ctx = context(problem, schedule, graph)
    with pytest.raises(ConfigError, match="secure_aggregation=true with algorithm.aggregator="
                       "'krum'"):
        run("fedavg", {"secure_aggregation": True, "aggregator": "krum"}, ctx, 0)
    with pytest.raises(ConfigError, match="worker_momentum"):
        run("allreduce", {"secure_aggregation": True, "worker_momentum": 0.5}, ctx, 0)
    with pytest.raises(ConfigError, match="at least 2 clients per round"):
        run("fedavg", {"secure_aggregation": True, "client_fraction": 0.1}, ctx, 0)
    with pytest.raises(ConfigError, match="could overflow int64"):
        params(2**15, bits=48)
    with pytest.raises(ConfigError, match="no fractional bit"):
        params(100, bits=16, clip=1000.0)
    with pytest.raises(ConfigError) as err:
        run("allreduce", {"secure_aggregation": True, "aggregator": "cm"}, ctx, 0)
    assert "\n" not in str(err.value)


@settings(max_examples=15, deadline=None)
@given(lost=st.sets(st.integers(0, 6), max_size=5), double=st.booleans(),
       t=st.integers(0, 20))
def test_any_dropout_set_recovers_the_survivors_sum_or_aborts(lost, double, t):
    m = 7
    p = params(m, threshold=0.3, double_mask=double)  # t = 3
    comm = LocalComm(m)
    comm.channel = Lose(sorted(lost))
    X = rows(m, 5, seed=t)
    out = secure_mean(p, comm, X, np.arange(m), t)
    survivors = sorted(set(range(m)) - lost)
    assert out.survivors.tolist() == survivors
    if len(survivors) < p.threshold:
        assert out.mean is None
        return
    q = torch.round(X[survivors].clamp(-p.clip, p.clip) * 2.0**p.frac).to(torch.int64)
    assert torch.equal(out.mean, q.sum(0).to(torch.float64) / 2.0**p.frac / len(survivors))


def test_secure_run_resumes_from_its_checkpoint(tmp_path):
    from gossip.config import load_config
    from gossip.runner.loop import run as train
    from gossip.runner.rundir import read_metrics

    common = ["problem.name=quadratic", "nodes=6", "problem.dim=3", "algorithm.name=fedavg",
              "algorithm.client_fraction=0.5", "algorithm.secure_aggregation=true",
              "algorithm.secure_aggregation_threshold=1", "faults.drop=0.2", "eval_every=2",
              "checkpoint_every=2", f"out='{tmp_path}'"]
    train(load_config(None, [*common, "rounds=8", "name=full"]), quiet=True)
    train(load_config(None, [*common, "rounds=4", "name=part"]), quiet=True)
    train(load_config(None, [*common, "rounds=8", "name=part"]), resume=tmp_path / "part",
          quiet=True)
    times = ("wall_time", "compute_time", "comm_time")
    full, part = ([{k: v for k, v in r.items() if k not in times} for r in read_metrics(
        tmp_path / name)] for name in ("full", "part"))
    assert part == full
    assert full[-1]["secure_aggregation_aborted"] > 0  # threshold 1: any dropout aborts


def test_saturation_is_warned_not_silent():
    """Entries beyond the clip are saturated by the encoding: a warning says so, none without."""
    import warnings

    from gossip.privacy.secure_aggregation import _warn_saturated

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        _warn_saturated(torch.tensor([1.0, -2.0]), 2.0)  # within [-c, c]: no warning
    with pytest.warns(UserWarning, match="saturated entries .* to \\+-2.0"):
        _warn_saturated(torch.tensor([1.0, -2.5]), 2.0)
