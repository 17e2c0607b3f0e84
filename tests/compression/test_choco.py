"""CHOCO-SGD on a ring of 16: average preserved every round, consensus under compression,
equality with D-SGD without compression; naive compressed gossip fails."""

from __future__ import annotations

import pytest
import torch

import topologies
from gossip.algorithms.base import Context
from gossip.algorithms.choco import Choco, CompressedGossipNaive
from gossip.comm.local import LocalComm
from gossip.compression import make_compressor
from gossip.errors import ConfigError
from gossip.problems.registry import make_problem

N, D = 16, 20


def choco(gamma: float, local_steps: int = 1) -> Choco:
    return Choco(Choco.Config(gamma=gamma, local_steps=local_steps))


class ZeroGradient:
    """Pure averaging: ``f_i = 0``, starting models ``X0``."""

    def __init__(self, X0: torch.Tensor) -> None:
        self.X0, self.dim, self.dtype = X0, X0.shape[1], X0.dtype
        self.layout = [("x", (self.dim,))]

    def init_params(self, nodes: range) -> torch.Tensor:
        return self.X0[nodes.start : nodes.stop].clone()

    def gradients(self, X, nodes, step):
        return torch.zeros_like(X), torch.zeros(X.shape[0], dtype=X.dtype)

    def evaluate(self, X, comm):
        return {}


def ring(schedule: str = "static"):
    graph = topologies.build("ring", N)
    return topologies.make_schedule("static", N, graph=graph), graph


def x0() -> torch.Tensor:
    return torch.randn(N, D, dtype=torch.float64, generator=torch.Generator().manual_seed(0))


def averaging(alg, compressor, rounds, schedule=None, graph=None):
    """Run pure averaging; returns relative distance to the true average and max drift of
    the node sum over all rounds."""
    if schedule is None:
        schedule, graph = ring()
    X0 = x0()
    ctx = Context(LocalComm(N), ZeroGradient(X0), schedule, graph, lambda t: 0.1, 0, compressor)
    state = alg.init(ctx)
    drift = 0.0
    for t in range(rounds):
        state, losses = alg.round(state, t, ctx)
        assert losses.shape == (N,)
        drift = max(drift, float((state.X.sum(0) - X0.sum(0)).abs().max()))
    err = ((state.X - X0.mean(0)) ** 2).sum(1).mean() / ((X0 - X0.mean(0)) ** 2).sum(1).mean()
    return float(err), drift, ctx.comm.stats


@pytest.mark.parametrize("name,opts,gamma,rounds,tol", [
    ("topk", {"ratio": 0.1}, 0.3, 200, 1e-3),
    ("sign", {}, 0.6, 150, 1e-4),
])
def test_choco_reaches_the_average_where_naive_does_not(name, opts, gamma, rounds, tol):
    err, drift, stats = averaging(choco(gamma), make_compressor(name, opts),
                                  rounds)
    assert err < tol
    assert drift < 1e-10  # the gossip step never changes the node sum
    row = make_compressor(name, opts).payload_row_bytes(D, None, torch.float64)
    assert stats.bytes_sent == rounds * 2 * N * row  # a ring: two messages per node and round
    err_naive, drift_naive, _ = averaging(
        CompressedGossipNaive(), make_compressor(name, opts), rounds
    )
    assert err_naive > 1e-2 and drift_naive > 1.0


@pytest.mark.parametrize("name,opts", [("qsgd", {"levels": 4}), ("randomk", {"k": 5}),
                                       ("lowrank", {"rank": 1})])
def test_choco_preserves_the_node_sum(name, opts):
    _, drift, _ = averaging(choco(0.2), make_compressor(name, opts), 10)
    assert drift < 1e-10


def test_choco_without_compression_is_dsgd():
    schedule, graph = ring()
    problem = make_problem("quadratic", {"dim": 5, "heterogeneity": 3.0, "sigma": 0.5},
                           n=N, seed=1, dtype=torch.float64)
    ctx = Context(LocalComm(N), problem, schedule, graph, lambda t: 0.05, 1, None)
    alg = choco(1.0, 2)
    state = alg.init(ctx)
    X = problem.init_params(range(N))
    W = torch.as_tensor(schedule.matrix(0).toarray())
    for t in range(5):
        state, _ = alg.round(state, t, ctx)
        for h in range(2):
            X = X - 0.05 * problem.gradients(X, range(N), 2 * t + h)[0]
        X = W @ X
        assert torch.allclose(state.X, X, atol=1e-12)


def test_choco_time_varying_uses_the_base_graph():
    graph = topologies.build("exponential", N)
    schedule = topologies.make_schedule("one_peer_exponential", N)
    err, drift, stats = averaging(choco(0.5), make_compressor("sign"), 120,
                                  schedule, graph)
    assert err < 1e-4 and drift < 1e-10
    # q_j goes to every base-graph neighbour of j (both directions) every round
    degree = sum(len(set(graph.predecessors(v)) | set(graph.successors(v))) for v in range(N))
    assert stats.bytes_sent == 120 * degree * (4 + 3)
    with pytest.raises(ConfigError, match="outside the base graph"):
        averaging(choco(0.5), None, 2, schedule, topologies.build("ring", N))


@pytest.mark.parametrize("kind", ["static", "one_peer_exponential"])
def test_receivers_are_computed_once_per_run(kind):
    """The holders of copies are one read-only matrix per (schedule, graph): every round
    hands the communicator the same object, so its share plan and counts hit their caches."""
    from gossip.algorithms.public_copies import receivers

    graph = topologies.build("exponential" if kind != "static" else "torus", N)

    def make():
        return topologies.make_schedule(kind, N, **({"graph": graph} if kind == "static" else {}))

    ctx = Context(LocalComm(N), ZeroGradient(x0()), make(), graph, lambda t: 0.1)
    base = receivers(ctx, "choco")
    assert receivers(ctx, "choco") is base
    with pytest.raises(ValueError):
        base.data[0] = 2.0
    other = Context(LocalComm(N), ZeroGradient(x0()), make(), graph, lambda t: 0.1)
    assert receivers(other, "choco") is not base  # another run's schedule: its own matrix
