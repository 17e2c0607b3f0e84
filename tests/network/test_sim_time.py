"""``[time]``: simulated time per round (gossip/network/sim_time.py) against its closed form.

On a ring every node sends and receives the same bytes, so a constant model gives
``T = H c + k L + 8 s / B`` per round with ``s`` the bytes a node sends per round (the run's
``bytes_sent / (n rounds)``, compressed where the algorithm compresses). Under ``mpiexec`` the
same numbers: the ``*-time`` cases of ``tests/run_scripts/equivalence.py``.
"""

from __future__ import annotations

import doctest

import numpy as np
import pytest

from gossip.config import load_config
from gossip.errors import ConfigError
from gossip.network import sim_time as sim_time_module
from gossip.network.sim_time import TimeModel
from gossip.runner.loop import run
from gossip.runner.rundir import read_metrics

N, ROUNDS, DIM = 6, 4, 12
BASE = ["problem.name=quadratic", f"nodes={N}", f"rounds={ROUNDS}", "eval_every=2",
        f"problem.dim={DIM}"]
MODEL = ["time.compute=0.5", "time.latency=0.02", "time.bandwidth=1e5"]


def train(tmp_path, name, *extra):
    summary = run(load_config(None, [*BASE, f"out='{tmp_path}'", f"name={name}", *extra]),
                  quiet=True)
    return read_metrics(tmp_path / name), summary


def test_docstring_examples() -> None:
    result = doctest.testmod(sim_time_module)
    assert result.failed == 0 and result.attempted > 0


@pytest.mark.parametrize("alg, extra, H, phases", [
    ("dsgd", ["algorithm.local_steps=3"], 3, 1),
    ("choco", ["compression.name=topk", "compression.k=3"], 1, 1),
    ("gradient_tracking", [], 1, 1),
    ("relaysum_model", ["algorithm.tree=chain"], 1, 1),
])
def test_constant_model_on_a_ring_is_the_closed_form(tmp_path, alg, extra, H, phases) -> None:
    records, summary = train(tmp_path, alg, f"algorithm.name={alg}", *extra, *MODEL)
    sent = summary["bytes_sent"] / (N * ROUNDS)  # per node and round: the same on a ring
    if alg == "relaysum_model":  # a chain tree: the end nodes send half, the inner nodes set T
        sent = summary["bytes_sent"] / (2 * (N - 1) * ROUNDS) * 2
    per_round = H * 0.5 + phases * 0.02 + 8 * sent / 1e5
    assert [r["sim_time"] for r in records] == pytest.approx(
        [2 * per_round, 4 * per_round], rel=1e-12)
    if alg == "choco":  # compressed: top-3 of 12 floats, far below the dense 48 bytes
        assert sent < 2 * DIM * 4


def test_ring_allreduce_pays_latency_per_step(tmp_path) -> None:
    records, _ = train(tmp_path, "ar", "algorithm.name=allreduce", *MODEL)
    chunk = DIM // N  # every node sends 2 (d - d_i) floats in 2 (n - 1) steps
    per_round = 0.5 + 2 * (N - 1) * 0.02 + 8 * 2 * (DIM - chunk) * 4 / 1e5
    assert records[-1]["sim_time"] == pytest.approx(ROUNDS * per_round, rel=1e-12)


def test_without_a_time_section_there_is_no_sim_time(tmp_path) -> None:
    plain, _ = train(tmp_path, "plain")
    timed, _ = train(tmp_path, "timed", "time.compute=1.0")
    assert "sim_time" not in plain[0] and timed[-1]["sim_time"] == pytest.approx(ROUNDS)
    strip = [{k: v for k, v in r.items() if not k.endswith("_time")} for r in (plain + timed)]
    assert strip[:2] == strip[2:]  # the time model changes no other metric


def test_stragglers_are_drawn_from_the_seed() -> None:
    per_round = TimeModel(straggler_fraction=0.1, slowdown=10.0, seed=4)
    draws = np.stack([per_round.straggling(t, 5000) for t in range(3)])
    assert np.all(np.abs(draws.mean(1) - 0.1) < 0.015)
    assert not np.array_equal(draws[0], draws[1])
    fixed = TimeModel(straggler_fraction=0.1, stragglers="fixed", seed=4)
    assert np.array_equal(fixed.straggling(0, 50), fixed.straggling(7, 50))
    assert np.array_equal(draws[0], TimeModel(straggler_fraction=0.1, seed=4).straggling(0, 5000))
    one = TimeModel(compute=1.0, straggler_fraction=1.0, slowdown=10.0)  # everyone straggles
    zeros = np.zeros(3)
    assert one.round_time(0, np.ones(3), zeros, zeros) == 10.0


def test_bad_time_keys_are_refused() -> None:
    with pytest.raises(ConfigError, match="time.slowdown must be >= 1"):
        load_config(None, [*BASE, "time.slowdown=0.5"])
    with pytest.raises(ConfigError, match="time.stragglers must be one of"):
        load_config(None, [*BASE, "time.stragglers=sometimes"])


def test_resume_continues_the_simulated_clock_and_the_faults(tmp_path) -> None:
    extra = ["time.straggler_fraction=0.5", "time.slowdown=3", *MODEL, "faults.drop=0.3",
             "faults.crash_rate=0.2", "faults.recover_rate=0.5", "problem.sigma=0.5"]
    full, _ = train(tmp_path, "full", *extra)
    short = [f"rounds={ROUNDS // 2}", "name=short", f"out='{tmp_path}'"]
    run(load_config(None, [*BASE, *extra, *short]), quiet=True)
    longer = load_config(None, [*BASE, *extra, "name=short", f"out='{tmp_path}'"])
    run(longer, resume=tmp_path / "short", quiet=True)
    clocks = ("wall_time", "comm_time", "compute_time")
    strip = [[{k: v for k, v in r.items() if k not in clocks} for r in m]
             for m in (full, read_metrics(tmp_path / "short"))]
    assert strip[0] == strip[1] and "sim_time" in strip[1][-1]
