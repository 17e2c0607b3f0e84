"""Run under ``mpiexec -n 4``: CHOCO with every operator over MPIComm equals the in-process run,
and the bytes handed to MPI are each operator's wire formula.

Each rank also runs the whole problem on a LocalComm; rank 0 prints one JSON line per
operator with the largest difference of the models and both byte counts. Then, with one node
per rank on a ring of 4 (every message crosses ranks), each rank encodes its row of a
``(4, 60)`` block laid out as a matrix plus vectors and shares it; rank 0 prints one
``{"wire": name, ...}`` line with the bytes MPI was given and the hand-written formula.
"""

from __future__ import annotations

import json

import torch

import topologies
from gossip.algorithms.base import Context
from gossip.algorithms.choco import Choco
from gossip.comm.local import LocalComm
from gossip.comm.mpi import MPIComm
from gossip.compression import make_compressor
from gossip.problems.registry import make_problem
from tests.compression.cases import WIRE_DIM, WIRE_LAYOUT, operator_cases, wire_formula

N, ROUNDS = 10, 4


def run(comm, name, opts):
    graph = topologies.build("ring", N)
    schedule = topologies.make_schedule("static", N, graph=graph)
    problem = make_problem("quadratic", {"dim": 12, "sigma": 0.3}, n=N, seed=5,
                           dtype=torch.float32)
    ctx = Context(comm, problem, schedule, graph, lambda t: 0.05, 5, make_compressor(name, opts))
    alg = Choco(Choco.Config(gamma=0.3, local_steps=1))
    state = alg.init(ctx)
    for t in range(ROUNDS):
        state, _ = alg.round(state, t, ctx)
    return comm.allgather_rows(state.X), comm.total_stats(), problem.layout


def main() -> None:
    mpi = MPIComm(N)
    for name, opts in operator_cases():
        X_mpi, stats, layout = run(mpi, name, opts)
        mpi.stats = type(mpi.stats)()
        X_local, local_stats, _ = run(LocalComm(N), name, opts)
        row = make_compressor(name, opts).payload_row_bytes(12, layout)
        if mpi.rank == 0:
            print(json.dumps({
                "name": name, "max_diff": float((X_mpi - X_local).abs().max()),
                "bytes_sent": stats.bytes_sent, "local_bytes_sent": local_stats.bytes_sent,
                "mpi_bytes_sent": stats.mpi_bytes_sent, "row_bytes": row,
                "expected_bytes": ROUNDS * 2 * N * row,
            }), flush=True)
    tune_check(mpi)
    if mpi.size == 4:
        wire_check()


def tune_check(mpi: MPIComm) -> None:
    """``gamma = "tune"``: every rank ends with rank 0's choice, the in-process one."""
    def tuned(comm):
        graph = topologies.build("ring", N)
        schedule = topologies.make_schedule("static", N, graph=graph)
        problem = make_problem("quadratic", {"dim": 12}, n=N, seed=5, dtype=torch.float32)
        ctx = Context(comm, problem, schedule, graph, lambda t: 0.05, 5,
                      make_compressor("topk", {"ratio": 0.25}))
        alg = Choco(Choco.Config(gamma="tune"))
        alg.init(ctx)
        return alg.consensus_step(ctx).gamma

    mine = tuned(mpi)
    rows = mpi.allgather_rows(torch.full((len(mpi.nodes), 1), mine, dtype=torch.float64))
    if mpi.rank == 0:
        print(json.dumps({"tune": sorted(set(rows[:, 0].tolist())),
                          "tune_local": tuned(LocalComm(N))}), flush=True)


def wire_check() -> None:
    n = 4
    mpi = MPIComm(n)
    W = topologies.mixing_matrix(topologies.build("ring", n), "metropolis")
    X = torch.randn(n, WIRE_DIM, generator=torch.Generator().manual_seed(2))[mpi.nodes.start:
                                                                              mpi.nodes.stop]
    for name, opts in operator_cases():
        c = make_compressor(name, opts)
        state = c.init(WIRE_DIM, mpi.nodes, WIRE_LAYOUT, seed=3)
        payload, state = c.encode(X, state, 0)
        mpi.stats = type(mpi.stats)()
        mpi.share(payload, W)
        stats = mpi.total_stats()
        if mpi.rank == 0:
            print(json.dumps({
                "wire": name, "mpi_bytes_sent": stats.mpi_bytes_sent,
                "bytes_sent": stats.bytes_sent, "messages": stats.messages,
                "formula_row_bytes": wire_formula(name),
                "operator_row_bytes": c.payload_row_bytes(WIRE_DIM, WIRE_LAYOUT),
            }), flush=True)


if __name__ == "__main__":
    main()
