"""The robust server of allreduce / fedavg (aggregators, worker momentum) and the attacks on it."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from gossip.config import load_config
from gossip.errors import ConfigError
from gossip.problems.registry import make_problem
from gossip.robust.attacks import pick_byzantine
from gossip.runner.loop import run
from gossip.runner.rundir import read_metrics

N, D = 8, 4
BASE = ["problem.name=quadratic", f"nodes={N}", f"problem.dim={D}", "dtype=float64",
        "problem.heterogeneity=3.0", "eval_every=1"]


def _run(tmp_path, name, *sets, rounds=5):
    cfg = load_config(None, [*BASE, f"rounds={rounds}", *sets, f"out='{tmp_path}'",
                             f"name={name}"])
    summary = run(cfg, quiet=True)
    return read_metrics(tmp_path / name), summary


def _problem():
    return make_problem("quadratic", {"dim": D, "heterogeneity": 3.0}, n=N, seed=0)


def test_the_server_mean_with_no_byzantine_node_is_the_ring_mean(tmp_path):
    ring, _ = _run(tmp_path, "ring", "algorithm.name=allreduce")
    server, s = _run(tmp_path, "server", "algorithm.name=allreduce", "attack.name=sign_flip",
                     "attack.nodes=0")
    for a, b in zip(ring, server, strict=True):
        assert a["distance_to_optimum"] == pytest.approx(b["distance_to_optimum"], rel=1e-12)
    # the server path: every node uploads d floats and downloads d floats per round
    assert s["bytes_sent"] == 5 * 2 * N * D * 8
    assert s["attack"]["byzantine"] == []


def _worker_momentum_closed_form(beta: float, lr: float, rounds: int,
                                 flip: np.ndarray | None = None) -> np.ndarray:
    p = _problem()
    a, c = p.a_np, p.c_np
    x = np.zeros(D)
    m = np.zeros((N, D))
    for _ in range(rounds):
        g = a[:, None] * (x - c)
        m = (1 - beta) * g + beta * m
        sent = m.copy()
        if flip is not None:
            sent[flip] = -sent[flip]
        x = x - lr * sent.mean(0)
    return x


@pytest.mark.parametrize("alg", ["allreduce", "fedavg"])
def test_worker_momentum_with_the_mean_is_the_closed_form(tmp_path, alg):
    extra = ["algorithm.client_fraction=1.0"] if alg == "fedavg" else []
    rec, _ = _run(tmp_path, alg, f"algorithm.name={alg}", "algorithm.worker_momentum=0.5",
                  "algorithm.lr=0.1", *extra)
    x = _worker_momentum_closed_form(0.5, 0.1, 5)
    p = _problem()
    assert rec[-1]["distance_to_optimum"] == pytest.approx(((x - p.x_star_np) ** 2).sum(),
                                                           rel=1e-10)


def test_sign_flip_on_the_mean_and_honest_metrics(tmp_path):
    rec, s = _run(tmp_path, "flip", "algorithm.name=allreduce", "attack.name=sign_flip",
                  "attack.nodes=[1, 6]", "algorithm.worker_momentum=0.25", "algorithm.lr=0.1")
    byz = np.array([1, 6])
    x = _worker_momentum_closed_form(0.25, 0.1, 5, flip=byz)
    p = _problem()
    H = np.setdiff1d(np.arange(N), byz)
    x_h = (p.a_np[H, None] * p.c_np[H]).sum(0) / p.a_np[H].sum()
    assert rec[-1]["distance_to_optimum"] == pytest.approx(((x - x_h) ** 2).sum(), rel=1e-10)
    assert s["attack"] == {"name": "sign_flip", "nodes": [1, 6], "scale": 1.0,
                           "byzantine": [1, 6]}


def test_a_robust_rule_holds_where_the_mean_is_driven_away(tmp_path):
    # attack-free, the robust rules themselves sit off x* by their heterogeneity bias (cm 0.11,
    # krum 1.8 here); under the attack they stay near it while the mean goes to ~3000
    sets = ["attack.name=gaussian", "attack.nodes=2", "attack.std=1000.0", "algorithm.lr=0.1",
            "problem.heterogeneity=1.0"]
    mean, _ = _run(tmp_path, "mean", "algorithm.name=allreduce", *sets, rounds=60)
    for rule, opts in [("cm", "{}"), ("krum", "{f = 2}"), ("trimmed_mean", "{trim = 2}"),
                       ("rfa", "{}"), ("multi_krum", "{f = 2}")]:
        rec, s = _run(tmp_path, rule, "algorithm.name=allreduce",
                      f"algorithm.aggregator={rule}", f"algorithm.aggregator_options={opts}",
                      *sets, rounds=60)
        assert rec[-1]["distance_to_optimum"] < 5.0, rule
        assert s["bytes_sent"] == 60 * 2 * N * D * 8
    assert mean[-1]["distance_to_optimum"] > 1000.0


def test_alie_is_what_its_formula_says(tmp_path):
    # one round from x = 0 with cm on 8 workers, 2 Byzantine: they send mu - z sigma
    from gossip.robust.attacks import alie_z

    _, s = _run(tmp_path, "alie", "algorithm.name=allreduce", "attack.name=alie",
                "attack.nodes=2", "algorithm.aggregator=mean", "algorithm.lr=1.0", rounds=1)
    byz = pick_byzantine(2, N, 0)
    p = _problem()
    g = -p.a_np[:, None] * p.c_np
    H = np.setdiff1d(np.arange(N), byz)
    mu, sigma = g[H].mean(0), g[H].std(0)
    g[byz] = mu - alie_z(N, 2) * sigma
    x = -g.mean(0)
    x_h = (p.a_np[H, None] * p.c_np[H]).sum(0) / p.a_np[H].sum()
    got = json.loads((tmp_path / "alie" / "summary.json").read_text())["final"]
    assert got["distance_to_optimum"] == pytest.approx(((x - x_h) ** 2).sum(), rel=1e-10)
    assert s["attack"]["byzantine"] == byz.tolist()


def test_attack_configuration_errors(tmp_path):
    with pytest.raises(ConfigError, match="attack.name='alie' needs an algorithm that informs"):
        _run(tmp_path, "e1", "algorithm.name=dsgd", "attack.name=alie")
    with pytest.raises(ConfigError, match="label_flip' needs a classification problem"):
        _run(tmp_path, "e2", "algorithm.name=allreduce", "attack.name=label_flip")
    with pytest.raises(ConfigError, match="attack.nodes=8 must be in"):
        _run(tmp_path, "e3", "algorithm.name=allreduce", "attack.name=sign_flip",
             "attack.nodes=8")
    with pytest.raises(ConfigError, match="cannot run with algorithm.name='choco'"):
        _run(tmp_path, "e5", "algorithm.name=choco", "attack.name=gaussian",
             "compression.name=topk", "compression.ratio=0.5")
    with pytest.raises(ConfigError, match="unknown key attack.nodes"):
        load_config(None, ["attack.nodes=2"])
    with pytest.raises(ConfigError, match=r"aggregator must be one of \[cclip, cm, krum"):
        load_config(None, ["algorithm.name=allreduce", "algorithm.aggregator=median"])
    with pytest.raises(ConfigError, match="algorithm.aggregator_options.f must be >= 0"):
        _run(tmp_path, "e4", "algorithm.name=fedavg", "algorithm.aggregator=krum",
             "algorithm.aggregator_options={f = -1}")


def test_label_flip_flips_the_byzantine_nodes_labels_only():
    from gossip.problems.registry import make_problem as mk
    from gossip.runner.experiment import Experiment

    sets = ["problem.name=classification", "data.name=synthetic", "data.partition=iid",
            "problem.batch_size=8", "problem.hidden=[16]", "nodes=6",
            "algorithm.name=allreduce", "attack.name=label_flip", "attack.nodes=[0, 4]"]
    exp = Experiment.build(load_config(None, sets))
    clean = mk("classification", {"dataset": "synthetic", "partition": "iid", "batch_size": 8,
                                  "hidden": [16]}, n=6, seed=0)
    y, y0 = exp.problem.train_y, clean.train_y
    for i, part in enumerate(clean.parts):
        want = 9 - y0[part] if i in (0, 4) else y0[part]
        assert torch.equal(y[part], want), i
    assert exp.comm.channel.is_identity  # the labels, not the messages
    assert exp.attack.describe()["byzantine"] == [0, 4]
    assert exp.problem.honest.tolist() == [1, 2, 3, 5]


@pytest.mark.parametrize("alg,extra", [
    ("fedavg", ["algorithm.aggregator=cclip", "algorithm.worker_momentum=0.9",
                "algorithm.client_fraction=0.5", "attack.name=alie", "attack.nodes=2"]),
    ("clipped_gossip", ["attack.name=gaussian", "attack.nodes=1", "problem.sigma=0.3"]),
])
def test_resume_equals_uninterrupted(tmp_path, alg, extra):
    # the server's center and the workers' momenta are in the checkpoint
    sets = [f"algorithm.name={alg}", *extra, "checkpoint_every=5", "eval_every=5"]
    full, _ = _run(tmp_path, "full", *sets, rounds=10)
    _run(tmp_path, "cut", *sets, rounds=5)
    cfg = load_config(None, [*BASE, "rounds=10", *sets, f"out='{tmp_path}'", "name=cut"])
    run(cfg, resume=tmp_path / "cut", quiet=True)
    skip = ("wall_time", "compute_time", "comm_time")
    strip = [{k: v for k, v in r.items() if k not in skip} for r in full]
    cut = [{k: v for k, v in r.items() if k not in skip} for r in read_metrics(tmp_path / "cut")]
    assert cut == strip


def test_buckets_are_means_of_a_seeded_partition(tmp_path):
    from gossip.algorithms.robust_server import buckets

    rows = torch.arange(14, dtype=torch.float64).reshape(7, 2)
    one = buckets(rows, 1, seed=3, t=5)
    assert sorted(one[:, 0].tolist()) == rows[:, 0].tolist()  # a permutation
    assert torch.equal(buckets(rows, 2, 3, 5), buckets(rows, 2, 3, 5))
    two = buckets(rows, 2, seed=3, t=5)
    assert two.shape == (4, 2)
    assert torch.allclose(two[:3].sum(0) * 2 + two[3], rows.sum(0))  # 3 pairs and 1 single
    assert torch.allclose(buckets(rows, 7, 0, 0)[0], rows.mean(0))
    with pytest.raises(ConfigError, match="bucketing=2 has no effect"):
        _run(tmp_path, "x", "algorithm.name=allreduce", "algorithm.bucketing=2")


def test_train_loss_and_consensus_are_over_the_honest_nodes(tmp_path):
    """Under an attack a record's ``train_loss`` and ``consensus_distance`` are the honest
    nodes' (``1/|H| sum_{i in H}``, around their own mean), as the problem's metrics are: the
    loop's values equal those recomputed from the rounds by hand, and differ from the
    all-node ones."""
    from gossip.runner.experiment import Experiment

    sets = ["algorithm.name=dsgd", "attack.name=gaussian", "attack.nodes=[2]",
            "attack.std=10.0", "algorithm.lr=0.05"]
    rec, _ = _run(tmp_path, "honest", *sets, rounds=3)
    exp = Experiment.build(load_config(None, [*BASE, "rounds=3", *sets]))
    H = np.setdiff1d(np.arange(N), [2])
    for t in range(3):
        exp.state, losses = exp.algorithm.round(exp.state, t, exp.ctx)
        assert rec[t]["train_loss"] == pytest.approx(float(losses[H].mean()), rel=1e-12)
        assert rec[t]["train_loss"] != pytest.approx(float(losses.mean()), rel=1e-6)
    X = exp.algorithm.params(exp.state).to(torch.float64)
    honest = ((X[H] - X[H].mean(0)) ** 2).sum(1).mean()
    everyone = ((X - X.mean(0)) ** 2).sum(1).mean()
    assert rec[-1]["consensus_distance"] == pytest.approx(float(honest), rel=1e-12)
    assert rec[-1]["consensus_distance"] != pytest.approx(float(everyone), rel=1e-6)
