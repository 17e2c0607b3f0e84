"""Run under ``mpiexec -n P``: a channel gives the same numbers in MPIComm as in LocalComm.

For dropping, symmetric dropping and replacing channels, every rank runs ``mix``, ``share``,
``exchange``, the uploads and a few D-SGD and FedAvg rounds through ``MPIComm`` on its block
and compares with ``LocalComm(n)`` on the full data. Rank 0 prints one JSON line::

    {"size": P, "checks": C, "failures": [...], "lost": L}

Usage: ``mpiexec -n P python tests/comm/mpi_check_channel.py``.
"""

from __future__ import annotations

import json
import warnings

import numpy as np
import torch

import topologies
from gossip.algorithms import Context, make_algorithm
from gossip.comm.channel import DropChannel, ReplaceChannel
from gossip.comm.factory import install_abort_handler
from gossip.comm.local import LocalComm
from gossip.comm.mpi import MPIComm
from gossip.problems.registry import make_problem
from tests.comm.mpi_check_comm import Checker, same

torch.set_num_threads(1)
warnings.filterwarnings("ignore", message="Sparse")


def flip(src, dst, t, rows):
    """A Byzantine payload that depends on the message and the round."""
    return tuple(-r + torch.as_tensor(dst * 10 + t, dtype=r.dtype)[:, None] for r in rows)


def channels():
    return [("drop", DropChannel(0.35, seed=4)),
            ("symmetric", DropChannel(0.5, seed=1, symmetric=True)),
            ("replace", ReplaceChannel([1, 4], flip))]


def hosted_edges(edges: np.ndarray, nodes: range) -> list:
    return [tuple(e) for e in edges.tolist() if nodes.start <= e[0] < nodes.stop]


def check_comm(n: int, check: Checker) -> int:
    comm, local = MPIComm(n), LocalComm(n)
    nodes = comm.nodes
    rows = slice(nodes.start, nodes.stop)
    W = topologies.mixing_matrix(topologies.build("erdos_renyi", n, seed=3))
    X = torch.randn(n, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(n))
    lost = 0
    for name, ch in channels():
        comm.channel, local.channel = ch, ch
        for t in range(3):
            got, want = comm.mix(X[rows], W, t), local.mix(X, W, t)[rows]
            check(torch.allclose(got, want, rtol=0, atol=1e-12), f"{name} t={t}: mix")
            d, dl = comm.share((X[rows],), W, t), local.share((X,), W, t)
            check(hosted_edges(d.failed, nodes) == [tuple(e) for e in d.failed.tolist()]
                  and hosted_edges(dl.failed, nodes) == [tuple(e) for e in d.failed.tolist()],
                  f"{name} t={t}: failed {d.failed.tolist()}")
            mine = [k for k, e in enumerate(dl.replaced.tolist()) if e[0] in nodes]
            check(hosted_edges(dl.replaced, nodes) == [tuple(e) for e in d.replaced.tolist()]
                  and (not mine or torch.equal(d.replaced_rows[0], dl.replaced_rows[0][mine])),
                  f"{name} t={t}: replaced")
            lost += len(d.failed)

            msgs = {(i, (i + k) % n): (X[i] * k, torch.tensor([i, k])) for i in range(n)
                    for k in range(3)}
            got = comm.exchange({e: m for e, m in msgs.items() if e[0] in nodes}, t)
            want = {e: m for e, m in local.exchange(msgs, t).items() if e[1] in nodes}
            check(got.keys() == want.keys() and all(same(got[e], want[e]) for e in want),
                  f"{name} t={t}: exchange")

            senders = np.array([0, 1, 2, 4, n - 1])
            mean, failed = comm.upload_mean(X[rows], 24, senders, t)
            lmean, lfailed = local.upload_mean(X, 24, senders, t)
            check(torch.allclose(mean, lmean, rtol=0, atol=1e-12)
                  and np.array_equal(failed, lfailed), f"{name} t={t}: upload_mean")
            ids, got_rows, failed = comm.gather_rows(X[rows], 24, senders, t)
            lids, lrows, lfailed = local.gather_rows(X, 24, senders, t)
            check(np.array_equal(ids, lids) and torch.equal(got_rows, lrows)
                  and np.array_equal(failed, lfailed), f"{name} t={t}: gather_rows")
    totals = comm.total_stats()
    check(totals.bytes_sent == local.stats.bytes_sent
          and totals.messages == local.stats.messages, f"n={n}: bytes {totals} {local.stats}")
    return lost


def check_rounds(n: int, check: Checker) -> None:
    """D-SGD and FedAvg rounds under each channel: MPI equals in process."""
    graph = topologies.build("erdos_renyi", n, seed=3)
    schedule = topologies.make_schedule("static", n, graph=graph)
    for name, ch in channels():
        for alg_name, opts in (("dsgd", {}), ("fedavg", {"client_fraction": 0.6})):
            finals = []
            for comm in (MPIComm(n), LocalComm(n)):
                comm.channel = ch
                problem = make_problem("quadratic", {"dim": 4, "sigma": 0.2}, n=n, seed=1,
                                       dtype=torch.float64)
                ctx = Context(comm=comm, problem=problem, schedule=schedule, graph=graph,
                              lr=lambda t: 0.05, seed=2)
                alg = make_algorithm(alg_name, opts)
                state = alg.init(ctx)
                for t in range(4):
                    state, _ = alg.round(state, t, ctx)
                finals.append((comm, state.X))
            (mpi, X), (local, X_local) = finals
            check(torch.allclose(X, X_local[mpi.nodes.start : mpi.nodes.stop], rtol=0,
                                 atol=1e-12), f"{name} {alg_name}: rounds")
            check(mpi.total_stats().bytes_sent == local.stats.bytes_sent,
                  f"{name} {alg_name}: bytes")


def main() -> None:
    world = MPIComm(7)
    install_abort_handler(world)
    check = Checker(world.rank)
    lost = sum(check_comm(n, check) for n in (5, 7))
    check_rounds(7, check)
    failures = sum(world.mpi.allgather(check.failures), [])
    lost = sum(world.mpi.allgather(lost))
    if world.rank == 0:
        print(json.dumps({"size": world.size, "checks": check.count, "failures": failures,
                          "lost": lost}), flush=True)


if __name__ == "__main__":
    main()
