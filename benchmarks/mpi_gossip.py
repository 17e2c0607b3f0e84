"""MPI gossip round against raw mpi4py ``Sendrecv`` of the same bytes.

With one node per rank on a ring (``P`` ranks, Metropolis ``W``), one gossip round is
``x_i <- sum_j W[i, j] x_j`` through ``gossip.comm.mpi.MPIComm.mix``: each rank sends its row
(``d`` float32) to both ring neighbours and combines the rows it receives. The reference is the
least any implementation must do: ``comm.Sendrecv`` of the same ``d`` floats to the right
neighbour (receiving from the left) and to the left neighbour (receiving from the right); one
exchange when ``P = 2`` (both neighbours are the same rank, and ``MPIComm`` sends the row once).

Also timed: ``MPIComm.share`` alone (the messages, without the weighted sum), and
``sendrecv_sum``: the hand-written floor of a whole gossip round, the same ``Sendrecv`` calls
followed by ``y = W_ii x_i + sum_j W_ij x_j`` in plain torch (``mul`` then one ``add_`` per
received row), which says how much of ``mix`` is the arithmetic every implementation pays.
Every time is the slowest rank's median over batches of rounds, ``ratio = mix / Sendrecv``,
``ratio_floor = mix / sendrecv_sum``.

The script is its own launcher: ``python benchmarks/mpi_gossip.py`` starts
``mpiexec -n P python benchmarks/mpi_gossip.py --worker`` for every ``P`` in ``--ranks``.

    python benchmarks/mpi_gossip.py                         # P = 2,4,8; d = 1e4,1e5,1e6
    python benchmarks/mpi_gossip.py --quick                 # P = 2; d = 1e4
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.common import (  # noqa: E402
    RESULTS,
    header,
    int_list,
    machine,
    markdown_table,
    mpi_env,
    mpiexec,
    write_results,
)

__all__ = ["COLUMNS", "add_arguments", "main", "run", "worker"]

COLUMNS = ["ranks", "d", "bytes_per_msg", "sendrecv_ms", "sendrecv_sum_ms", "share_ms", "mix_ms"]
COLUMNS += ["ratio", "ratio_floor"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--ranks", type=int_list, default=None, help="P (default 2,4,8)")
    parser.add_argument("--dims", type=int_list, default=None, help="d (default 1e4,1e5,1e6)")
    parser.add_argument("--repeats", type=int, default=5, help="timed batches per point")
    parser.add_argument("--quick", action="store_true", help="P = 2, d = 1e4, few rounds")
    parser.add_argument("--out", type=Path, default=RESULTS, help="results folder")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)


def _timed(fn, world, rounds: int, repeats: int) -> float:
    """Slowest rank's median seconds per call of ``fn`` (batches of ``rounds`` calls)."""
    import time

    from mpi4py import MPI

    fn()
    samples = []
    for _ in range(repeats):
        world.Barrier()
        start = time.perf_counter()
        for _ in range(rounds):
            fn()
        samples.append((time.perf_counter() - start) / rounds)
    return world.allreduce(sorted(samples)[len(samples) // 2], op=MPI.MAX)


def _point(world, comm, W, peers: list[tuple[int, int]], d: int, args) -> dict:
    """Times of one ``d``: Sendrecv to ``peers`` ((dest, source) pairs), share, mix."""
    import numpy as np
    import torch

    x = torch.randn(1, d, generator=torch.Generator().manual_seed(world.Get_rank()))
    send = x.numpy()
    recv = [np.empty_like(send) for _ in peers]

    def sendrecv():
        for (dst, src), buf in zip(peers, recv):
            world.Sendrecv(send, dest=dst, recvbuf=buf, source=src)

    rank = world.Get_rank()
    weights = [float(W[rank, src]) for _, src in peers]
    received = [torch.from_numpy(buf) for buf in recv]
    self_weight = float(W[rank, rank])

    def sendrecv_sum():
        sendrecv()
        y = torch.mul(x, self_weight)
        for w, r in zip(weights, received):
            y.add_(r, alpha=w)
        return y

    rounds = 3 if args.quick else max(5, int(2e7 / (d * 4)))
    reps = 1 if args.quick else args.repeats
    row = {
        "ranks": world.Get_size(),
        "d": d,
        "bytes_per_msg": 4 * d,
        "sendrecv_ms": 1e3 * _timed(sendrecv, world, rounds, reps),
        "sendrecv_sum_ms": 1e3 * _timed(sendrecv_sum, world, rounds, reps),
        "share_ms": 1e3 * _timed(lambda: comm.share((x,), W), world, rounds, reps),
        "mix_ms": 1e3 * _timed(lambda: comm.mix(x, W), world, rounds, reps),
    }
    row["ratio"] = row["mix_ms"] / row["sendrecv_ms"]
    row["ratio_floor"] = row["mix_ms"] / row["sendrecv_sum_ms"]
    return row


def worker(args) -> int:
    """One rank: time ``Sendrecv``, ``MPIComm.share`` and ``MPIComm.mix`` for every ``d``."""
    import networkx as nx
    import torch
    from mpi4py import MPI

    import topologies
    from gossip.comm.mpi import MPIComm

    torch.set_num_threads(1)
    world = MPI.COMM_WORLD.Dup()
    P, rank = world.Get_size(), world.Get_rank()
    comm = MPIComm(P)
    graph = topologies.build("ring", P) if P > 2 else nx.path_graph(P)
    W = topologies.mixing_matrix(graph)
    right, left = (rank + 1) % P, (rank - 1) % P
    peers = [(right, left)] if P == 2 else [(right, left), (left, right)]
    for d in args.dims:
        row = _point(world, comm, W, peers, d, args)
        if rank == 0:
            print(json.dumps(row), flush=True)
    return 0


def launch(P: int, args) -> list[dict]:
    """Run :func:`worker` under ``mpiexec -n P``; its rows."""
    launcher = mpiexec()
    if launcher is None:
        raise RuntimeError("mpiexec not found next to sys.executable or on PATH")
    cmd = [launcher, "-n", str(P), sys.executable, str(Path(__file__).resolve()), "--worker"]
    cmd += ["--dims", ",".join(map(str, args.dims)), "--repeats", str(args.repeats)]
    cmd += ["--quick"] if args.quick else []
    proc = subprocess.run(cmd, env=mpi_env(), capture_output=True, text=True, timeout=600)
    if proc.returncode != 0:
        raise RuntimeError(f"mpiexec -n {P} failed ({proc.returncode}):\n{proc.stderr[-2000:]}")
    return [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]


def run(args) -> int:
    """Launch every world size, print the table, write the results."""
    if args.dims is None:
        args.dims = [10_000] if args.quick else [10_000, 100_000, 1_000_000]
    if args.worker:
        return worker(args)
    rows = []
    for P in args.ranks or ([2] if args.quick else [2, 4, 8]):
        rows += launch(P, args)
    info = machine("cpu", 1)
    fmt = {k: ".3f" for k in ("sendrecv_ms", "sendrecv_sum_ms", "share_ms", "mix_ms")}
    fmt.update({"ratio": ".2f", "ratio_floor": ".2f", "d": lambda v: f"{v:.0e}"})
    text = "\n".join(
        [
            header("MPI gossip round (ring, one node per rank) vs raw Sendrecv", info),
            markdown_table(COLUMNS, rows, fmt),
        ]
    )
    print(text)
    write_results(args.out, "mpi-gossip-cpu", info, COLUMNS, rows, text)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    add_arguments(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    raise SystemExit(main())
