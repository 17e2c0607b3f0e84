"""async_gossip (AD-PSGD): event order, pairs and updates against hand-written references."""

from __future__ import annotations

import json

import pytest
import torch

from gossip.algorithms.async_gossip import partner
from gossip.config import load_config
from gossip.errors import ConfigError
from gossip.runner.experiment import Experiment
from gossip.runner.loop import run
from gossip.runner.rundir import read_metrics

UNTIMED = ["problem.name=quadratic", "problem.dim=3", "problem.sigma=0.5", "dtype=float64",
           "algorithm.name=async_gossip", "algorithm.lr=0.05"]
BASE = [*UNTIMED, "time.compute=1"]


def build(*extra) -> Experiment:
    return Experiment.build(load_config(None, [*BASE, *extra]))


def rounds(exp: Experiment, R: int) -> None:
    for t in range(R):
        exp.state, _ = exp.algorithm.round(exp.state, t, exp.ctx)


def consensus(X: torch.Tensor) -> float:
    return float((X - X.mean(0)).norm())


def test_without_gradients_pair_averages_keep_the_mean_and_reach_it() -> None:
    exp = build("nodes=6", "topology.name=ring", "time.straggler_fraction=0.3",
                "time.slowdown=3", "time.latency=0.1", "seed=4")
    exp.ctx.lr = lambda t: 0.0  # the config wants lr > 0; only the pair averages remain
    X0 = torch.randn(6, 3, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    exp.state = exp.state._replace(X=3 * X0, W=3 * X0)  # the problem starts all nodes alike
    mean0 = exp.state.X.mean(0).clone()
    start = consensus(exp.state.X)
    assert start > 1
    dist = []
    for t in range(40):
        exp.state, _ = exp.algorithm.round(exp.state, t, exp.ctx)
        assert torch.allclose(exp.state.X.mean(0), mean0, rtol=0, atol=1e-12), t
        dist.append(consensus(exp.state.X))
    assert dist[-1] < 1e-6 * start and dist[-1] < dist[19] < dist[0]
    assert torch.allclose(exp.state.X, mean0.expand_as(exp.state.X), rtol=0, atol=1e-6)


def test_event_order_and_pairs_match_a_tick_by_tick_reference() -> None:
    # ring 0-1-2-3-0; seed 3: node 0 the only (fixed) straggler, 2 s per gradient, the others
    # 1 s; latency 0.5: node i's events at c_i, then every 0.5 + c_i. No noise: the gradient
    # a_i (x_hat_i - c_i) does not depend on the step index.
    exp = build("nodes=4", "topology.name=ring", "seed=3", "problem.sigma=0",
                "time.straggler_fraction=0.25", "time.stragglers=fixed", "time.slowdown=2",
                "time.latency=0.5")
    X0 = torch.randn(4, 3, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    exp.state = exp.state._replace(X=X0.clone(), W=X0.clone())  # distinct starting models
    assert exp.ctx.time.straggling(0, 4).tolist() == [True, False, False, False]
    # (time, node, partner) of the first 12 events (3 rounds); ties by node id
    events = [(1.0, 1, 2), (1.0, 2, 3), (1.0, 3, 0), (2.0, 0, 3), (2.5, 1, 0), (2.5, 2, 3),
              (2.5, 3, 2), (4.0, 1, 2), (4.0, 2, 1), (4.0, 3, 2), (4.5, 0, 1), (5.5, 1, 2)]
    neighbours = {0: [1, 3], 1: [0, 2], 2: [1, 3], 3: [0, 2]}
    count = dict.fromkeys(range(4), 0)
    for _, i, j in events:  # the pairs are the seeded uniform draws
        assert partner(3, i, count[i], neighbours[i]) == j
        count[i] += 1
    eta, nodes = 0.05, exp.comm.nodes
    x = [row.clone() for row in exp.state.X]
    x_hat = [row.clone() for row in x]
    for r in range(3):
        for _, i, j in events[4 * r: 4 * r + 4]:
            g = exp.problem.gradients(torch.stack(x_hat), nodes, 0)[0][i]
            x[i] = x[j] = (x[i] + x[j]) / 2
            x[i] = x[i] - eta * g
            x_hat[i] = x[i].clone()
        exp.state, _ = exp.algorithm.round(exp.state, r, exp.ctx)
        assert torch.allclose(exp.state.X, torch.stack(x), rtol=0, atol=1e-14), r
        assert exp.algorithm.sim_time(exp.state) == events[4 * r + 3][0]


def test_converges_near_the_optimum_on_a_homogeneous_quadratic() -> None:
    exp = build("nodes=8", "topology.name=ring", "problem.heterogeneity=0",
                "problem.sigma=0.01", "problem.init_scale=3", "time.straggler_fraction=0.25",
                "time.slowdown=4", "algorithm.lr=0.2")
    start = exp.problem.evaluate(exp.state.X, exp.comm)["distance_to_optimum"]
    rounds(exp, 60)
    end = exp.problem.evaluate(exp.state.X, exp.comm)["distance_to_optimum"]
    assert end < 1e-2 * start and end < 0.05, (start, end)


def test_records_bytes_and_sim_time(tmp_path) -> None:
    n, R = 4, 3
    run(load_config(None, [*BASE, f"nodes={n}", f"rounds={R}", "eval_every=1",
                           "time.latency=0.1", f"out='{tmp_path}'", "name=a"]), quiet=True)
    summary = json.loads((tmp_path / "a" / "summary.json").read_text())
    # every event: d = 3 float64 values each way, 2 messages
    assert summary["bytes_sent"] == n * R * 2 * 3 * 8 and summary["messages"] == n * R * 2
    sims = [r["sim_time"] for r in read_metrics(tmp_path / "a")]
    # equal times: all n nodes' events at 1 + 1.1 t in round t
    assert sims == pytest.approx([1 + 1.1 * t for t in range(R)])


def test_refused_without_time() -> None:
    with pytest.raises(ConfigError) as info:
        Experiment.build(load_config(None, [*UNTIMED, "nodes=4"]))
    assert "[time]" in str(info.value) and "\n" not in str(info.value)


@pytest.mark.parametrize("overrides, needle", [
    (["faults.drop=0.1"], "no rule for a lost half"),
    (["faults.crash=[[1, 0, 2]]"], "no rule for a lost half"),
    (["compression.name=topk", "compression.ratio=0.5"], "compression"),
    (["attack.name=sign_flip", "attack.nodes=1"], "[attack]"),
])
def test_refused(overrides, needle) -> None:
    with pytest.raises(ConfigError) as info:
        build("nodes=4", *overrides)
    assert needle in str(info.value) and "\n" not in str(info.value)


def test_resume_continues_the_event_queue(tmp_path) -> None:
    over = [*BASE, "nodes=5", "time.straggler_fraction=0.3", "time.slowdown=10",
            "time.latency=0.01", "eval_every=2", f"out='{tmp_path}'"]
    run(load_config(None, [*over, "rounds=6", "name=whole"]), quiet=True)
    run(load_config(None, [*over, "rounds=3", "name=part"]), quiet=True)
    run(load_config(None, [*over, "rounds=6", "name=part"]), quiet=True, resume=tmp_path / "part")
    clocks = ("wall_time", "comm_time", "compute_time")
    strip = [[{k: v for k, v in r.items() if k not in clocks} for r in read_metrics(tmp_path / n)
              if r["round"] % 2 == 0] for n in ("whole", "part")]  # part also has round 3
    assert strip[0] == strip[1] and len(strip[0]) == 3
