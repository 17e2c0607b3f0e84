"""Run under ``mpiexec -n P``: MPIComm on CUDA blocks gives LocalComm's CPU results.

Each rank holds its block of a seeded ``n``-node payload on ``cuda`` and runs ``mix``,
``share``, ``exchange``, ``allreduce_sum`` and ``allgather_rows`` through ``MPIComm``; with an
MPI that is not CUDA-aware (``MPIComm.cuda_aware`` false) every message is staged through
pinned host memory (:mod:`gossip.comm.device`). Each result must live on the block's device and
equal ``LocalComm(n)`` on the CPU copy of the full data. Rank 0 prints one JSON line::

    {"size": P, "cuda_aware": false, "checks": C, "failures": [...]}

Usage: ``mpiexec -n 2 python tests/cuda/mpi_check_cuda.py --nodes 6 [--device cpu]`` (``cpu``:
the same checks on CPU blocks, to check the script where there is no GPU).
"""

from __future__ import annotations

import argparse
import json

import torch

import topologies
from gossip.comm.device import local_rank, pick_device
from gossip.comm.factory import install_abort_handler
from gossip.comm.local import LocalComm
from gossip.comm.mpi import MPIComm


def check_all(n: int, spec: str = "cuda") -> dict:
    comm, local = MPIComm(n), LocalComm(n)
    install_abort_handler(comm)
    device = pick_device(spec, local_rank(comm))
    if device.type == "cuda":
        torch.cuda.set_device(device)
    rows = slice(comm.nodes.start, comm.nodes.stop)
    failures: list[str] = []
    count = 0

    def check(ok: bool, what: str) -> None:
        nonlocal count
        count += 1
        if not ok:
            failures.append(f"rank {comm.rank}: {what}")

    def same(got: torch.Tensor, want: torch.Tensor, what: str, atol: float = 0.0) -> None:
        check(got.device == device, f"{what}: result on {got.device}, not {device}")
        got = got.cpu()
        ok = got.shape == want.shape and got.dtype == want.dtype
        check(ok and torch.allclose(got, want, rtol=0, atol=atol), f"{what}: values differ")

    g = torch.Generator().manual_seed(n)
    X64 = torch.randn(n, 3, 4, generator=g, dtype=torch.float64)
    ints = torch.randint(-99, 99, (n, 5), generator=g, dtype=torch.int32)
    graphs = {"ring": topologies.mixing_matrix(topologies.build("ring", n)),
              "erdos_renyi": topologies.mixing_matrix(topologies.build("erdos_renyi", n))}
    for name, W in graphs.items():
        same(comm.mix(X64[rows].to(device), W), local.mix(X64, W)[rows], f"{name} mix64", 1e-12)
        X32 = X64.float()
        same(comm.mix(X32[rows].to(device), W), local.mix(X32, W)[rows], f"{name} mix32", 1e-6)
        got = comm.share((X64[rows].to(device), ints[rows].to(device)), W)
        want = local.share((X64, ints), W)
        check(set(comm.nodes) <= set(got.ids.tolist()), f"{name} share: hosted ids missing")
        for k, part in enumerate(got.rows):
            same(part, want.rows[k][list(got.ids)], f"{name} share part {k}")
    msgs = {(s, (s + 1) % n): (torch.full((2, 3), float(s), device=device),
                                torch.arange(s + 1, dtype=torch.int64, device=device))
            for s in comm.nodes}
    got = comm.exchange(msgs)
    for (s, d), payload in got.items():
        check(d in comm.nodes, f"exchange: message for node {d} on rank {comm.rank}")
        same(payload[0], torch.full((2, 3), float(s), dtype=torch.float32), f"exchange {s}->{d}")
        same(payload[1], torch.arange(s + 1, dtype=torch.int64), f"exchange {s}->{d} ints")
    check(len(got) == len(comm.nodes), f"exchange: {len(got)} messages arrived")
    part = X64[rows].sum(0).to(device)
    same(comm.allreduce_sum(part), X64.sum(0), "allreduce_sum", 1e-12)
    same(comm.allgather_rows(X64[rows].to(device)), X64, "allgather_rows")
    return {"size": comm.size, "cuda_aware": comm.cuda_aware, "checks": count,
            "failures": comm.mpi.gather(failures, root=0)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--nodes", type=int, default=6)
    parser.add_argument("--device", default="cuda", help="cuda (the staged path) or cpu")
    args = parser.parse_args()
    report = check_all(args.nodes, args.device)
    if report["failures"] is not None:  # rank 0
        report["failures"] = [f for rank in report["failures"] for f in rank]
        print(json.dumps(report), flush=True)


if __name__ == "__main__":
    main()
