"""Run under ``mpiexec -n P``: MPIComm gives LocalComm's results and byte counts.

Every rank builds the same seeded data for all ``n`` nodes, runs each operation through
``MPIComm`` on its block, and compares with ``LocalComm(n)`` run on the full data in the same
process. Failures are collected per rank and gathered; rank 0 prints one JSON line::

    {"size": P, "nodes": [...], "checks": C, "failures": [...], "stats": {...}}

Usage: ``mpiexec -n P python tests/comm/mpi_check_comm.py --nodes 10 [--nodes 4 ...]``.
"""

from __future__ import annotations

import argparse
import json
import warnings

import numpy as np
import scipy.sparse as sp
import torch

import topologies
from gossip.comm.base import payload_row_bytes
from gossip.comm.device import local_rank
from gossip.comm.factory import install_abort_handler, make_comm
from gossip.comm.local import LocalComm
from gossip.comm.mixing import senders_to
from gossip.comm.mpi import MPIComm

torch.set_num_threads(1)
warnings.filterwarnings("ignore", message="Sparse")


class Checker:
    def __init__(self, rank: int) -> None:
        self.rank = rank
        self.count = 0
        self.failures: list[str] = []

    def __call__(self, ok: bool, what: str) -> None:
        self.count += 1
        if not ok:
            self.failures.append(f"rank {self.rank}: {what}")


def patterns(n: int) -> list[tuple[str, sp.csr_array]]:
    """Ring, random sparse graph, a directed random pattern, and time-varying schedules."""
    out = [("ring", topologies.mixing_matrix(topologies.build("ring", n)))]
    out.append(("erdos_renyi", topologies.mixing_matrix(topologies.build("erdos_renyi", n))))
    rng = np.random.default_rng(n)
    A = sp.random_array((n, n), density=0.3, rng=rng, format="csr") + sp.eye_array(n)
    out.append(("directed", sp.csr_array(A)))
    for name in ("random_matching", "one_peer_exponential"):
        sched = topologies.make_schedule(name, n, seed=7)
        out += [(f"{name}[{t}]", sched.matrix(t)) for t in range(3)]
    return out


def full_payload(n: int, seed: int) -> tuple[torch.Tensor, ...]:
    g = torch.Generator().manual_seed(seed)
    return (
        torch.randn(n, 5, generator=g),
        torch.randint(-1000, 1000, (n, 4), generator=g, dtype=torch.int32),
        torch.randint(0, 256, (n, 3), generator=g, dtype=torch.uint8),
        torch.randn(n, 2, generator=g).to(torch.float16),
        torch.randn(n, 3, generator=g).to(torch.bfloat16),
        torch.randn(n, generator=g, dtype=torch.float64),
    )


def expected_mpi_bytes(W: sp.csr_array, comm: MPIComm, row_bytes: int) -> int:
    """Rows this rank sends: for each peer, hosted columns used by the peer's rows."""
    D = W.toarray() != 0
    mine = comm.nodes
    total = 0
    for R in range(comm.size):
        if R != comm.rank:
            b = comm.placement.block(R)
            total += int(D[b.start : b.stop, mine.start : mine.stop].any(axis=0).sum())
    return total * row_bytes


def all_messages(n: int, seed: int) -> dict[tuple[int, int], tuple[torch.Tensor, ...]]:
    """The same point-to-point messages on every rank: mixed dtypes, shapes, a scalar."""
    rng = np.random.default_rng(seed)
    msgs = {}
    for src in range(n):
        for dst in rng.choice(n, size=3, replace=False):
            g = torch.Generator().manual_seed(1000 * src + int(dst))
            shape = (int(rng.integers(0, 4)), 2)
            msgs[(src, int(dst))] = (
                torch.randn(shape, generator=g),
                torch.randint(0, 256, (5,), generator=g, dtype=torch.uint8),
                torch.tensor(float(src - dst), dtype=torch.bfloat16),
                torch.randint(-9, 9, (2, 1, 3), generator=g, dtype=torch.int64),
            )
    return msgs


def same(a: tuple, b: tuple) -> bool:
    return len(a) == len(b) and all(
        x.dtype == y.dtype and x.shape == y.shape and torch.equal(x, y) for x, y in zip(a, b)
    )


def check_nodes(n: int, check: Checker) -> dict:
    comm, local = MPIComm(n), LocalComm(n)
    block = comm.nodes
    rows = slice(block.start, block.stop)
    mpi_expected = 0
    for name, W in patterns(n):
        X = torch.randn(n, 3, 2, generator=torch.Generator().manual_seed(n), dtype=torch.float64)
        got = comm.mix(X[rows], W)
        want = local.mix(X, W)[rows]
        check(torch.allclose(got, want, rtol=0, atol=1e-12), f"n={n} {name}: mix")
        X32 = X.float()
        got32 = comm.mix(X32[rows], W)
        # the same float64 sum rounded once: equal up to the order of the float64 sum (one ulp)
        want32 = local.mix(X32, W)[rows]
        check(torch.allclose(got32, want32, rtol=2**-23, atol=0), f"n={n} {name}: mix32")

        P = full_payload(n, seed=len(name))
        ids, got_rows = comm.share(tuple(t[rows] for t in P), W)[:2]
        check(np.array_equal(ids, senders_to(W, block)), f"n={n} {name}: share ids")
        lids, lrows = local.share(P, W)[:2]
        check(
            same(got_rows, tuple(t[ids] for t in lrows)) and np.array_equal(lids, np.arange(n)),
            f"n={n} {name}: share rows",
        )
        check(comm.plan(W) is comm.plan(W), f"n={n} {name}: plan cached")
        mpi_expected += expected_mpi_bytes(W, comm, X.element_size() * 6)
        mpi_expected += expected_mpi_bytes(W, comm, X32.element_size() * 6)
        mpi_expected += expected_mpi_bytes(W, comm, payload_row_bytes(P))
    check(comm.stats.mpi_bytes_sent == mpi_expected, f"n={n}: mpi bytes of share")

    msgs = all_messages(n, seed=n)
    mine = {k: v for k, v in msgs.items() if k[0] in block}
    got = comm.exchange(mine)
    want = {k: v for k, v in local.exchange(msgs).items() if k[1] in block}
    check(set(got) == set(want), f"n={n}: exchange keys {sorted(got)} != {sorted(want)}")
    check(all(same(tuple(got[k]), want[k]) for k in want if k in got), f"n={n}: exchange data")
    check(comm.exchange({}) == {}, f"n={n}: empty exchange")

    for dtype in (torch.float64, torch.float32, torch.int32, torch.float16, torch.bfloat16):
        parts = [torch.arange(6, dtype=torch.float64).reshape(2, 3) * (r + 1) for r in range(4)]
        x = parts[comm.rank % 4].to(dtype)
        want = sum(parts[r % 4] for r in range(comm.size)).to(dtype)
        got = comm.allreduce_sum(x)
        check(got.dtype == dtype and torch.equal(got, want), f"allreduce_sum {dtype}")
    X = torch.randn(n, 2, 3, generator=torch.Generator().manual_seed(5)).to(torch.bfloat16)
    check(torch.equal(comm.allgather_rows(X[rows]), X), f"n={n}: allgather_rows")
    mean = comm.mean_rows(X.double()[rows])
    check(torch.allclose(mean, X.double().mean(0), rtol=0, atol=1e-12), "mean_rows")
    obj = comm.broadcast_object({"rank": comm.rank, "n": n} if comm.rank == 0 else None)
    check(obj == {"rank": 0, "n": n}, "broadcast_object")
    comm.barrier()

    totals = comm.total_stats()
    check(totals.bytes_sent == local.stats.bytes_sent, f"n={n}: bytes_sent {totals} {local.stats}")
    check(totals.messages == local.stats.messages, f"n={n}: messages")
    return {"n": n, **totals.as_dict(), "local_bytes_sent": local.stats.bytes_sent}


def check_server(n: int, check: Checker) -> None:
    """The server's counted collectives: same values and byte counts as in process."""
    comm, local = MPIComm(n), LocalComm(n)
    rows = slice(comm.nodes.start, comm.nodes.stop)
    X = torch.randn(n, 2, 3, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    senders = np.array([0, n // 2, n - 1])
    for who in (None, senders):
        got, failed = comm.upload_mean(X[rows], 10, who)
        want, _ = local.upload_mean(X, 10, who)
        check(torch.allclose(got, want, rtol=0, atol=1e-12) and len(failed) == 0, "upload_mean")
        comm.broadcast(got[0], who)
        local.broadcast(want[0], who)
    ids, got, _ = comm.gather_rows(X[rows], 7, senders)
    check(np.array_equal(ids, senders) and torch.equal(got, X[senders]), "gather_rows")
    local.gather_rows(X, 7, senders)
    got, want = comm.allreduce_mean(X[rows]), local.allreduce_mean(X)
    check(torch.allclose(got, want, rtol=0, atol=1e-12), "allreduce_mean")
    totals = comm.total_stats()
    check(totals.bytes_sent == local.stats.bytes_sent > 0
          and totals.messages == local.stats.messages, f"n={n}: server bytes {totals}")


def check_ring_one_per_rank(check: Checker) -> dict:
    """One node per rank on a ring: every node-to-node message is one MPI message."""
    comm = MPIComm(_world_size())
    W = topologies.mixing_matrix(topologies.build("ring", comm.n))
    X = torch.randn(1, 7, generator=torch.Generator().manual_seed(comm.rank))
    for _ in range(3):
        X = comm.mix(X, W)
    t = comm.total_stats()
    check(t.mpi_bytes_sent == t.bytes_sent and t.bytes_sent > 0, f"ring one per rank {t}")
    return t.as_dict()


def _world_size() -> int:
    from mpi4py import MPI

    return MPI.COMM_WORLD.Get_size()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--nodes", type=int, action="append", required=True)
    args = parser.parse_args()
    comm = MPIComm(max(args.nodes))
    install_abort_handler(comm)
    check = Checker(comm.rank)
    made = make_comm(max(args.nodes))
    check(isinstance(made, MPIComm) and made.size == comm.size, "make_comm gives MPIComm")
    check(made.mpi is not comm.mpi and made.rank == comm.rank, "make_comm duplicates the world")
    check(local_rank(comm) == comm.rank, "local rank on one host")  # the tests use one host
    results = [check_nodes(n, check) for n in args.nodes]
    for n in args.nodes:
        check_server(n, check)
    if comm.size > 2:  # topologies' ring needs at least 3 nodes
        results.append(check_ring_one_per_rank(check))
    failures = sum(comm.mpi.allgather(check.failures), [])
    if comm.rank == 0:
        line = {"size": comm.size, "nodes": args.nodes, "checks": check.count}
        print(json.dumps({**line, "failures": failures, "stats": results}), flush=True)


if __name__ == "__main__":
    main()
