"""``[faults]``: lost messages and crashed nodes from the config (gossip/network/faults.py).

Exact properties: without faults a run is bit for bit the run without ``[faults]``; symmetric
drops keep D-SGD's average moving by the gradients only; gradient tracking's invariant holds
under symmetric drops and crashes and fails under per-direction drops; a crashed node's state
is frozen and resumes. Under ``mpiexec`` the same numbers: the ``*-faults`` cases of
``tests/run_scripts/equivalence.py``.
"""

from __future__ import annotations

import doctest

import numpy as np
import pytest
import torch

from gossip.comm.channel import IDENTITY, SERVER, Compose, DropChannel, ReplaceChannel
from gossip.config import load_config
from gossip.errors import ConfigError
from gossip.network import faults as faults_module
from gossip.network.faults import CrashChannel, Crashes, fault_channel
from gossip.runner.experiment import Experiment
from gossip.runner.loop import run
from gossip.runner.rundir import read_metrics

BASE = ["problem.name=quadratic", "nodes=8", "problem.dim=3", "problem.sigma=0.5",
        "dtype=float64", "topology.name=erdos_renyi"]


def cfg(*extra, tmp=None):
    out = [f"out='{tmp}'"] if tmp is not None else []
    return load_config(None, [*BASE, *out, *extra])


def test_docstring_examples() -> None:
    result = doctest.testmod(faults_module)
    assert result.failed == 0 and result.attempted > 0


@pytest.mark.parametrize("alg", ["dsgd", "gradient_tracking", "relaysum_model"])
def test_no_faults_is_bit_identical_to_no_faults_section(tmp_path, alg) -> None:
    quiet = ["faults.drop=0.0", "faults.crash=[]", "faults.recover_rate=0.5",
             "faults.symmetric=false"]
    assert fault_channel(cfg(*quiet)) is IDENTITY
    runs = []
    for i, extra in enumerate(([], quiet)):
        run(cfg(f"algorithm.name={alg}", "rounds=6", "eval_every=2", f"name=r{i}",
                *extra, tmp=tmp_path), quiet=True)
        runs.append(read_metrics(tmp_path / f"r{i}"))
    clocks = ("wall_time", "comm_time", "compute_time")
    strip = [[{k: v for k, v in r.items() if k not in clocks} for r in m] for m in runs]
    assert strip[0] == strip[1]


def _rounds(exp: Experiment, rounds: int):
    """``(t, state before, state after, G at the state before)`` per round, in process."""
    nodes = exp.comm.nodes
    for t in range(rounds):
        before = exp.state
        G, _ = exp.problem.gradients(before.X, nodes, t)
        exp.state, _ = exp.algorithm.round(before, t, exp.ctx)
        yield t, before, exp.state, G


def test_symmetric_drops_and_crashes_keep_the_dsgd_average_exact() -> None:
    """``x_bar <- x_bar - eta/n sum_{i up} g_i``: the mixing matrix stays doubly stochastic."""
    exp = Experiment.build(cfg("faults.drop=0.4", "faults.crash=[[1, 2, 5], [6, 3]]",
                               "faults.crash_rate=0.1", "faults.recover_rate=0.5",
                               "algorithm.lr=0.05"))
    crashes = Crashes(8, 0, [[1, 2, 5], [6, 3]], 0.1, 0.5)
    lost = 0
    for t, before, after, G in _rounds(exp, 12):
        up = torch.as_tensor(~crashes.down(t))
        want = before.X.mean(0) - 0.05 * (G * up[:, None]).sum(0) / 8
        assert torch.allclose(after.X.mean(0), want, rtol=0, atol=1e-12), t
        W = exp.schedule.matrix(t)
        lost += len(exp.comm.share((before.X,), W, t).failed)
    assert lost > 10  # messages were lost


def test_per_direction_drops_move_the_dsgd_average() -> None:
    exp = Experiment.build(cfg("faults.drop=0.4", "faults.symmetric=false", "algorithm.lr=0.05"))
    moved = [float((a.X.mean(0) - b.X.mean(0) + 0.05 * G.mean(0)).abs().max())
             for _, b, a, G in _rounds(exp, 4)]
    assert max(moved) > 1e-3


@pytest.mark.parametrize("symmetric", [True, False])
def test_gradient_tracking_invariant_under_faults(symmetric) -> None:
    """``sum_i y_i = sum_i g_i(x_i)`` survives symmetric drops and crashes, not per-direction
    drops (the module docstring's claim)."""
    exp = Experiment.build(cfg("algorithm.name=gradient_tracking", "faults.drop=0.3",
                               f"faults.symmetric={str(symmetric).lower()}",
                               "faults.crash=[[2, 1, 4]]", "algorithm.lr=0.05"))
    gaps = [float((s.Y.sum(0) - s.G.sum(0)).abs().max()) for _, _, s, _ in _rounds(exp, 8)]
    if symmetric:
        assert max(gaps) < 1e-12
    else:
        assert max(gaps) > 1e-3


def test_a_crashed_node_is_frozen_and_resumes() -> None:
    exp = Experiment.build(cfg("faults.crash=[[3, 2, 5]]", "algorithm.momentum=0.5"))
    for t, before, after, _ in _rounds(exp, 7):
        frozen = torch.equal(after.X[3], before.X[3]) and torch.equal(after.M[3], before.M[3])
        assert frozen == (2 <= t < 5), t
        assert not torch.equal(after.X[0], before.X[0])
    assert exp.comm.channel.arrives(np.array([3, 0, 3]), np.array([0, 3, SERVER]), 2).tolist() \
        == [False, False, False]


def test_crash_chain_is_a_markov_chain_with_the_given_rates() -> None:
    c = Crashes(4000, seed=3, crash_rate=0.2, recover_rate=0.5)
    d0, d1 = c.down(0), c.down(1)
    assert abs(d0.mean() - 0.2) < 0.03  # up before round 0
    assert abs((~d1[d0]).mean() - 0.5) < 0.05 and abs(d1[~d0].mean() - 0.2) < 0.03
    stop = Crashes(4000, seed=3, crash_rate=0.2)  # crash-stop: once down, down for good
    assert np.all(stop.down(5)[stop.down(2)])
    assert np.array_equal(Crashes(50, 1, crash_rate=0.3).down(7), c.__class__(
        50, 1, crash_rate=0.3).down(7))


def test_compose_ands_arrivals_and_chains_replacements() -> None:
    src, dst = np.arange(40) % 9, (np.arange(40) * 5 + 2) % 9
    drop, crash = DropChannel(0.3, seed=1), CrashChannel(Crashes(9, schedule=[[4, 0]]))
    both = Compose(drop, crash, IDENTITY)
    assert np.array_equal(both.arrives(src, dst, 3),
                          drop.arrives(src, dst, 3) & (src != 4) & (dst != 4))
    plus = ReplaceChannel([1], lambda s, d, t, rows: tuple(r + 1 for r in rows))
    times = ReplaceChannel([1, 2], lambda s, d, t, rows: tuple(r * 10 for r in rows))
    chain = Compose(plus, times)
    s = np.array([0, 1, 2])
    assert chain.replaces(s, s + 3, 0).tolist() == [False, True, True]
    rows = (torch.tensor([[1.0], [5.0]]),)  # the rows of the replaced messages 1, 2
    assert chain.replace(s[1:], s[1:] + 3, 0, rows)[0].ravel().tolist() == [20.0, 50.0]
    assert Compose(IDENTITY).is_identity


@pytest.mark.parametrize("overrides, needle", [
    (["algorithm.name=choco", "compression.name=topk", "faults.drop=0.1"], "choco"),
    (["algorithm.name=beer", "compression.name=topk", "faults.crash=[[0, 1]]"], "beer"),
    (["algorithm.name=relaysum_model", "faults.crash_rate=0.1"], "does not support crashed"),
    (["algorithm.name=allreduce", "faults.drop=0.1"], "no effect"),
    (["faults.crash=[[8, 1]]"], "node 8"),
    (["faults.crash=[[1, 3, 3]]"], "from_round < to_round"),
    (["faults.drop=1.5"], "faults.drop must be in [0, 1]"),
])
def test_refused_at_config_time(overrides, needle) -> None:
    with pytest.raises(ConfigError) as info:
        cfg(*overrides)
    assert needle in str(info.value) and "\n" not in str(info.value)


def test_faults_follow_a_channel_set_in_code_and_do_not_stack() -> None:
    from gossip.comm.local import LocalComm
    from gossip.network.faults import FaultChannel, with_faults

    attack = ReplaceChannel([1], lambda s, d, t, rows: rows)
    comm = LocalComm(8)
    comm.channel = attack
    Experiment.build(cfg("faults.drop=0.2"), comm)
    first = comm.channel
    assert isinstance(first, FaultChannel) and first.before is attack
    Experiment.build(cfg("faults.crash=[[0, 1]]"), comm)  # the drops of the first run go
    assert comm.channel.before is attack and len(comm.channel.channels) == 2
    Experiment.build(cfg(), comm)
    assert comm.channel is attack
    assert with_faults(IDENTITY, cfg()) is IDENTITY


def test_an_attack_and_faults_compose(tmp_path) -> None:
    """``[attack]`` and ``[faults]`` together: the communicator's channel chains both (the
    attack first), the omniscient adversary is still found and told the honest rows, and a run
    whose faults lose nothing equals the attack alone bit for bit."""
    from gossip.robust.attacks import AttackChannel, adversary

    attack = ["algorithm.name=fedavg", "algorithm.client_fraction=1.0", "attack.name=alie",
              "attack.nodes=2", "algorithm.aggregator=cm", "rounds=6", "eval_every=2"]
    exp = Experiment.build(cfg(*attack, "faults.drop=0.3"))
    assert isinstance(exp.comm.channel, Compose)
    assert isinstance(adversary(exp.comm.channel), AttackChannel)
    runs = []
    for i, extra in enumerate(([], ["faults.drop=1e-12"], ["faults.drop=0.3"])):
        run(cfg(*attack, *extra, f"name=a{i}", tmp=tmp_path), quiet=True)
        runs.append(read_metrics(tmp_path / f"a{i}"))
    clocks = ("wall_time", "comm_time", "compute_time")
    strip = [[{k: v for k, v in r.items() if k not in clocks} for r in m] for m in runs]
    assert strip[0] == strip[1]  # a drop rate of 1e-12 loses nothing in 6 rounds
    assert strip[2] != strip[0]  # drops change the run: the faults are not ignored
