"""The mixing caches hit in real runs and never serve a stale operator.

Counted, not timed: the builders behind the caches (``torch_matrix``, ``diagonal_plan``, the
message count; under MPI also the share plan and the remote-rows operator) are wrapped with
call counters (``tests/comm/mpi_count_builds.py``) while ``gossip.runner.loop.run`` trains. A static
topology builds each once, however many rounds; a time-varying schedule once per distinct
``W(t)``, with results equal to the dense ``W(t) @ X``; a resumed run builds its own and ends
where the uninterrupted run ends.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

import topologies
from gossip.comm.local import LocalComm
from gossip.config import load_config
from gossip.runner.loop import run
from gossip.runner.rundir import read_metrics
from tests.comm.mpi_count_builds import CLOCKS, count_builds
from tests.crashing_comm import CrashingComm
from tests.mpi_util import json_lines, requires_mpi, run_mpi

LOCAL = ["operator", "diagonals", "messages"]
QUAD = ["problem.name=quadratic", "nodes=6", "problem.dim=4", "eval_every=2"]


@pytest.fixture
def builds(monkeypatch):
    return count_builds(LOCAL, monkeypatch.setattr)


def _strip(records):
    return [{k: v for k, v in r.items() if k not in CLOCKS} for r in records]


@pytest.mark.parametrize(
    "sets,want",
    [
        ([], {"operator": 1, "diagonals": 0, "messages": 1}),
        # rows of 16 KB on 20 nodes: the ring takes the diagonal form, built once
        (["nodes=20", "problem.dim=4096"], {"operator": 0, "diagonals": 1, "messages": 1}),
        (["algorithm.name=gradient_tracking"], {"operator": 1, "diagonals": 0, "messages": 1}),
        (["algorithm.name=naive_compressed_dsgd"], {"operator": 1, "diagonals": 0,
                                                    "messages": 1}),
        (["topology.schedule=cycle", "topology.graphs=['ring']"],
         {"operator": 1, "diagonals": 0, "messages": 1}),
    ],
    ids=["dsgd", "dsgd-large-rows", "gt", "naive", "cycle-of-one"],
)
def test_static_run_builds_its_operator_once(tmp_path, builds, sets, want):
    run(load_config(None, [*QUAD, f"out='{tmp_path}'", "rounds=6", *sets]), quiet=True)
    assert dict(builds) == want


def test_one_peer_exponential_run_builds_once_per_distinct_matrix(tmp_path, builds):
    # n = 8: tau = 3 distinct W(t), seen twice each in 6 rounds
    sets = ["nodes=8", "topology.schedule=one_peer_exponential", "rounds=6"]
    run(load_config(None, [*QUAD, f"out='{tmp_path}'", *sets]), quiet=True)
    assert dict(builds) == {"operator": 3, "diagonals": 0, "messages": 3}


def _schedules(n: int) -> dict[str, topologies.Schedule]:
    ring = topologies.build("ring", n)
    others = [topologies.build("star", n), topologies.build("torus", n, shape=[4, n // 4])]
    return {
        "one_peer_exponential": topologies.make_schedule("one_peer_exponential", n),
        "random_matching": topologies.make_schedule("random_matching", n, seed=3),
        "random_graph": topologies.make_schedule("random_graph", n, seed=3),
        "churn": topologies.make_schedule("churn", n, graph=ring, offline=0.25, seed=3),
        "cycle": topologies.make_schedule("cycle", n, graphs=[ring, *others]),
    }


@pytest.mark.parametrize("d", [3, 4096])  # small rows (dense/CSR) and large (diagonals/CSR)
@pytest.mark.parametrize("name", list(_schedules(20)))
def test_time_varying_mix_is_exact_and_rebuilt_when_w_changes(builds, name, d):
    n = 20
    schedule = _schedules(n)[name]
    comm = LocalComm(n)
    gen = torch.Generator().manual_seed(d)
    kept = []  # every W(t), alive: their ids stay distinct
    for t in range(12):
        W = schedule.matrix(t)
        kept.append(W)
        X = torch.randn(n, d, generator=gen, dtype=torch.float64)
        want = torch.from_numpy(W.toarray() @ X.numpy())
        torch.testing.assert_close(comm.mix(X, W), want, rtol=0, atol=1e-12, msg=f"t={t}")
    distinct = len({id(W) for W in kept})
    if name == "one_peer_exponential":
        assert distinct == schedule.tau
    elif name == "cycle":
        assert distinct == 3
    else:
        assert distinct == 12
    assert builds["messages"] == distinct
    if d == 3:
        assert builds["operator"] == distinct and builds["diagonals"] == 0
    else:  # the diagonal form is tried for each W, CSR taken where it does not fit
        assert builds["diagonals"] == distinct and builds["operator"] <= distinct


@pytest.mark.parametrize(
    "sets,distinct",
    [([], 1), (["nodes=8", "topology.schedule=one_peer_exponential"], 3)],
    ids=["static", "one_peer_exponential"],
)
def test_resumed_run_rebuilds_its_own_operators(tmp_path, builds, sets, distinct):
    common = [*QUAD, f"out='{tmp_path}'", "rounds=10", "checkpoint_every=4", *sets]
    run(load_config(None, [*common, "name=full"]), quiet=True)
    n = load_config(None, common)["nodes"]
    with pytest.raises(RuntimeError, match="node lost"):
        run(load_config(None, [*common, "name=cut"]), comm=CrashingComm(n, 7), quiet=True)
    builds.clear()
    summary = run(resume=tmp_path / "cut", quiet=True)
    assert summary["rounds_done"] == 10
    assert _strip(read_metrics(tmp_path / "cut")) == _strip(read_metrics(tmp_path / "full"))
    # rounds 4..9 from the checkpoint of round 4, on the resumed run's own schedule
    assert builds["operator"] == distinct and builds["messages"] == distinct


@requires_mpi
@pytest.mark.parametrize(
    "sets,want",
    [
        ([], 1),
        (["algorithm.name=choco", "compression.name=topk", "compression.ratio=0.5"], 1),
        (["nodes=8", "topology.schedule=one_peer_exponential"], 3),
    ],
    ids=["dsgd", "choco", "one_peer_exponential"],
)
def test_mpi_run_builds_plans_once_per_distinct_matrix(tmp_path, sets, want):
    args = [f"--set={s}" for s in [*QUAD, "rounds=6", *sets]]
    proc = run_mpi(2, ["tests/comm/mpi_count_builds.py", "--out", str(tmp_path / "mpi"), *args],
                   timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    reports = sorted(json_lines(proc.stdout), key=lambda r: r["rank"])
    assert [r["rank"] for r in reports] == [0, 1]
    for r in reports:
        assert r["builds"]["share_plan"] == want, r
        if "algorithm.name=choco" not in sets:  # choco shares along receivers(), a new matrix
            assert r["builds"]["pattern_key"] == want, r  # each round: found by its pattern
        assert r["builds"]["operator"] + r["builds"]["diagonals"] == want, r
        assert r["builds"]["remote_operator"] in (0, want), r  # MPIComm.mix only (not choco)
    local = run(load_config(None, [*QUAD, f"out='{tmp_path}'", "rounds=6", *sets]), quiet=True)
    final = {k: v for k, v in local["final"].items() if k not in CLOCKS}
    assert reports[0]["final"] == pytest.approx(final, rel=1e-5, abs=1e-12)
    assert np.isfinite(final["train_loss"])
