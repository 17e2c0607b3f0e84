"""async_sgd: the event order, staleness and updates against hand-written references."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from gossip.algorithms.async_sgd import step_size
from gossip.config import load_config
from gossip.errors import ConfigError
from gossip.runner.experiment import Experiment
from gossip.runner.loop import run
from gossip.runner.rundir import read_metrics

BASE = ["problem.name=quadratic", "problem.dim=3", "problem.sigma=0.5", "dtype=float64",
        "algorithm.name=async_sgd", "algorithm.lr=0.05"]


def build(*extra) -> Experiment:
    return Experiment.build(load_config(None, [*BASE, *extra]))


def rounds(exp: Experiment, R: int) -> None:
    for t in range(R):
        exp.state, _ = exp.algorithm.round(exp.state, t, exp.ctx)


def test_zero_delay_is_sgd_step_for_step() -> None:
    # worker 1 (seed 2: the only straggler, first arrival at 100.5) does not arrive within
    # the run (8 updates of worker 0 by 15.5): worker 0 alone,
    # tau = 0, the k-th update x_{k+1} = x_k - eta g_0(x_k) at problem step index k
    exp = build("nodes=2", "topology.name=complete", "seed=2", "time.compute=1",
                "time.straggler_fraction=0.5", "time.stragglers=fixed", "time.slowdown=100",
                "time.latency=0.5")
    assert exp.ctx.time.straggling(0, 2).tolist() == [False, True]
    x = exp.state.X[0].clone()
    for t in range(4):
        exp.state, _ = exp.algorithm.round(exp.state, t, exp.ctx)
        for k in (2 * t, 2 * t + 1):
            G, _ = exp.problem.gradients(x.expand(2, -1), exp.comm.nodes, k)
            x = x - 0.05 * G[0]
        assert torch.equal(exp.state.X[0], x), t
    assert exp.algorithm.report(exp.state)["staleness"] == {"0": 8}
    assert exp.algorithm.sim_time(exp.state) == 1.5 + 7 * 2.0


def test_equal_compute_times_give_sgd_with_a_fixed_delay_step_for_step() -> None:
    # equal compute times (latency too: every cycle is as long): the workers arrive in the
    # order 0 .. n-1 every round; worker i's gradient of round t is taken at the model it got
    # in round t-1, step index t n (one batch per round)
    n = 4
    exp = build(f"nodes={n}", "time.compute=1", "time.latency=0.25")
    nodes, eta = exp.comm.nodes, 0.05
    x = exp.state.X[0].clone()
    held, version, k, hist = [x.clone() for _ in range(n)], [0] * n, 0, {}
    for t in range(5):
        G, _ = exp.problem.gradients(torch.stack(held), nodes, t * n)
        for i in range(n):
            tau = k - version[i]
            hist[tau] = hist.get(tau, 0) + 1
            x = x - eta * G[i]
            k += 1
            held[i], version[i] = x.clone(), k
        exp.state, _ = exp.algorithm.round(exp.state, t, exp.ctx)
        assert torch.equal(exp.state.X[0], x), t
    assert exp.algorithm.report(exp.state)["staleness"] == {str(a): b for a, b in hist.items()}
    assert hist == {0: 1, 1: 1, 2: 1, 3: 1 + 4 * n}
    # arrivals at c + l, then every c + 2 l: the 5 n-th update at c + l + 4 (c + 2 l)
    assert exp.algorithm.sim_time(exp.state) == 1.25 + 4 * 1.5


def test_staleness_of_two_speeds_matches_the_clock_ticks() -> None:
    # fixed stragglers at 2x, zero latency: worker i arrives at the multiples of its period
    # p_i in {1, 2}, ties by id; a tick-by-tick reference without an event queue.
    n, R = 5, 6
    exp = build(f"nodes={n}", "time.compute=1", "time.slowdown=2", "time.stragglers=fixed",
                "time.straggler_fraction=0.5", "seed=3")
    period = np.where(exp.ctx.time.straggling(0, n), 2, 1)
    assert set(period) == {1, 2}
    version, k, hist, T = [0] * n, 0, {}, 0
    while k < n * R:
        T += 1
        for i in range(n):
            if T % period[i] == 0 and k < n * R:
                tau = k - version[i]
                hist[str(tau)] = hist.get(str(tau), 0) + 1
                k += 1
                version[i] = k
                last = T
    rounds(exp, R)
    assert exp.algorithm.report(exp.state)["staleness"] == hist
    assert exp.algorithm.sim_time(exp.state) == last


def test_delay_adaptive_beats_constant_at_tuned_lr_with_heavy_delays() -> None:
    # 2 of 5 workers (seed 0) 50x slower for the whole run: tau_max >> tau_avg; tau_c the
    # default (the concurrency n = 5). The numbers are in the README's [time] section.
    def final(step, lr):
        exp = build("nodes=5", "problem.sigma=0.01", "problem.heterogeneity=0",
                    "problem.init_scale=3", "time.straggler_fraction=0.2", "time.slowdown=50",
                    "time.stragglers=fixed", f"algorithm.step={step}", f"algorithm.lr={lr}")
        rounds(exp, 60)
        return exp.problem.evaluate(exp.state.X, exp.comm)["distance_to_optimum"]

    grid = (0.005, 0.01, 0.02, 0.05, 0.1, 0.2)
    best = {step: min(final(step, lr) for lr in grid) for step in ("constant", "delay_adaptive")}
    assert best["delay_adaptive"] < 0.5 * best["constant"], best


def test_step_size_rule() -> None:
    assert step_size(0.1, 7, "constant", 2, "scale") == 0.1
    assert step_size(0.1, 2, "delay_adaptive", 2, "scale") == 0.1
    assert step_size(0.1, 8, "delay_adaptive", 2, "scale") == pytest.approx(0.0125)
    assert step_size(0.1, 3, "delay_adaptive", 2, "drop") == 0.0


def test_summary_records_and_bytes(tmp_path) -> None:
    n, R = 4, 3
    run(load_config(None, [*BASE, f"nodes={n}", f"rounds={R}", "eval_every=1",
                           "time.latency=0.1", f"out='{tmp_path}'", "name=a"]), quiet=True)
    summary = json.loads((tmp_path / "a" / "summary.json").read_text())
    assert summary["staleness"] == {"0": 1, "1": 1, "2": 1, "3": 1 + 4 * (R - 1)}
    assert summary["bytes_sent"] == n * R * 2 * 3 * 8 and summary["messages"] == n * R * 2
    sims = [r["sim_time"] for r in read_metrics(tmp_path / "a")]
    assert sims == pytest.approx([1.1 + 1.2 * t for t in range(R)])


@pytest.mark.parametrize("overrides, needle", [
    ([], "[time]"),
    (["time.compute=1", "faults.drop=0.1"], "no rule for a lost gradient"),
    (["time.compute=1", "faults.crash=[[1, 0, 2]]"], "no rule for a lost gradient"),
    (["time.compute=1", "attack.name=sign_flip", "attack.nodes=1"], "[attack]"),
])
def test_refused(overrides, needle) -> None:
    with pytest.raises(ConfigError) as info:
        build("nodes=4", *overrides)
    assert needle in str(info.value) and "\n" not in str(info.value)


def test_resume_continues_the_event_queue(tmp_path) -> None:
    over = [*BASE, "nodes=5", "time.straggler_fraction=0.3", "time.slowdown=10",
            "time.latency=0.01", "eval_every=2", f"out='{tmp_path}'"]
    whole = run(load_config(None, [*over, "rounds=6", "name=whole"]), quiet=True)
    run(load_config(None, [*over, "rounds=3", "name=part"]), quiet=True)
    again = run(load_config(None, [*over, "rounds=6", "name=part"]), quiet=True,
                resume=tmp_path / "part")
    clocks = ("wall_time", "comm_time", "compute_time")
    strip = [[{k: v for k, v in r.items() if k not in clocks} for r in read_metrics(tmp_path / n)
              if r["round"] % 2 == 0] for n in ("whole", "part")]  # part also has round 3
    assert strip[0] == strip[1] and len(strip[0]) == 3
    assert again["staleness"] == whole["staleness"] and sum(whole["staleness"].values()) == 30
