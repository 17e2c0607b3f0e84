"""Simulation throughput: node-steps per second of local SGD on a 784-128-10 MLP.

One *node-step* is one local SGD step of one node: the gradient of the cross-entropy of the
node's mini-batch of 32 random inputs (``f_i(x_i) = 1/B sum_k CE(mlp(x_i; a_k), y_k)``) and
``x_i <- x_i - eta g_i``. Data are random tensors made before the clock starts (no I/O in the
timed region). Modes, for ``n`` nodes:

- ``vmap``: the whole node block in one process,
  ``gossip.problems.classification.backends.vectorized_grads``
  (``torch.func.vmap(grad_and_value(functional_call))`` over the node axis);
- ``fused``: the same block with ``gossip.problems.classification.backends.fused_grads`` (the
  library's hand-written batched forward/backward for Flatten/Linear/ReLU chains, the default
  backend for ``mlp``);
- ``bmm``: the same block with the hand-written batched forward/backward :func:`bmm_grads`
  (no autograd): the reference for how fast any vectorisation of this model can be;
- ``loop``: the same block with ``gossip.problems.classification.backends.loop_grads``
  (one autograd call per node);
- ``vmap+mix``: a full D-SGD round ``X <- W (X - eta G)`` (Lian et al. 2017) with
  ``LocalComm(n).mix`` on a Metropolis ring;
- ``vmap+mix graph``, ``fused+mix graph`` (CUDA only): the same round, with the vmap or the
  fused gradients, replayed from a CUDA graph;
- ``mpi``: one MPI rank per node (``mpiexec -n P``, ``n = P``), each rank computing its node's
  gradient and mixing over ``gossip.comm.mpi.MPIComm`` on the ring.

``node-steps/s = n / (seconds per step)``. Prints a Markdown table and the speed-ups of
``fused`` and ``vmap`` over ``loop`` and over ``mpi`` at n = 64, and writes
``benchmarks/results/simulation-<cpu|cuda>.json`` and ``.md``.

    python benchmarks/simulation.py                      # n = 16,64,256,1024; MPI 2,4,8 ranks
    python benchmarks/simulation.py --quick              # n = 16, MPI 2 ranks (seconds)
    python benchmarks/simulation.py --device cuda --ranks 0
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import typing
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.common import (  # noqa: E402
    RESULTS,
    device_kind,
    header,
    int_list,
    machine,
    markdown_table,
    mpi_env,
    mpiexec,
    time_per_call,
    write_results,
)

if typing.TYPE_CHECKING:
    import torch

__all__ = ["COLUMNS", "add_arguments", "bmm_grads", "main", "run"]

COLUMNS = ["mode", "n", "processes", "threads", "ms_per_step", "node_steps_per_s", "gflop_per_s"]
BATCH = 32
HIDDEN = [128]
LR = 0.05
# FLOPs of one node-step: forward 2, backward 4 multiply-adds per weight per example.
WEIGHTS = 784 * HIDDEN[0] + HIDDEN[0] * 10
FLOP_PER_NODE_STEP = 6 * BATCH * WEIGHTS
COMPARE_N = 64


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--sizes",
        type=int_list,
        default=None,
        help="numbers of nodes n (default 16,64,256,1024; --quick: 16)",
    )
    parser.add_argument(
        "--loop-max",
        type=int,
        default=1024,
        help="largest n timed with the per-node loop (default 1024)",
    )
    parser.add_argument(
        "--ranks",
        type=lambda t: int_list(t, zero=True),
        default=None,
        help="MPI world sizes for the one-rank-per-node mode (default 2,4,8; --quick: 2); 0 = skip",
    )
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch.set_num_threads in the one-process modes (default 1)",
    )
    parser.add_argument("--device", default="cpu", help="cpu or cuda[:k] (default cpu)")
    parser.add_argument("--repeats", type=int, default=3, help="timed batches per point")
    parser.add_argument(
        "--quick",
        action="store_true",
        help="defaults n = 16 and 2 ranks, one short repeat: a smoke test",
    )
    parser.add_argument("--out", type=Path, default=RESULTS, help="results folder")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)


def _setup(n: int, device: str, seed: int = 0):
    """Model, stacked parameters ``X`` (n, d) and random batches, all on ``device``."""
    import torch

    from gossip.models import make_model, model_vector

    torch.manual_seed(seed)
    model = make_model("mlp", (784,), 10, {"hidden": HIDDEN}).to(device)
    x0 = model_vector(model).detach()
    gen = torch.Generator().manual_seed(seed + 1)
    X = (x0 + 0.01 * torch.randn(n, x0.numel(), generator=gen)).to(device)
    bx = torch.randn(n, BATCH, 784, generator=gen).to(device)
    by = torch.randint(0, 10, (n, BATCH), generator=gen).to(device)
    return model, X, bx, by


def _ring(n: int):
    import topologies

    if n == 2:
        import networkx as nx

        return topologies.mixing_matrix(nx.path_graph(2))
    return topologies.mixing_matrix(topologies.build("ring", n))


def _row(mode: str, n: int, processes: int, threads: int, seconds: float) -> dict:
    return {
        "mode": mode,
        "n": n,
        "processes": processes,
        "threads": threads,
        "ms_per_step": 1e3 * seconds,
        "node_steps_per_s": n / seconds,
        "gflop_per_s": n * FLOP_PER_NODE_STEP / seconds / 1e9,
    }


def _cuda_graph_round(round_fn, device: str) -> tuple[object, str]:
    """``round_fn`` captured in a CUDA graph (replay callable), or ``(None, reason)``."""
    import torch

    try:
        stream = torch.cuda.Stream(device=device)
        stream.wait_stream(torch.cuda.current_stream(device))
        with torch.cuda.stream(stream):
            for _ in range(3):  # warm-up on a side stream, as capture requires
                round_fn()
        torch.cuda.current_stream(device).wait_stream(stream)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            round_fn()
        return graph.replay, ""
    except Exception as e:  # capture is an optimisation: report why it did not apply
        return None, f"{type(e).__name__}: {str(e)[:120]}"


def bmm_grads(
    X: torch.Tensor, bx: torch.Tensor, by: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Hand-written batched forward and backward of the 784-128-10 MLP for every node.

    The reference for what any vectorisation can reach: three ``baddbmm``/``bmm`` per pass,
    no autograd. Row layout of ``X`` is ``gossip.models.flat``'s (``W1, b1, W2, b2``). For
    logits ``z``, ``dL/dz = (softmax(z) - onehot(y)) / B``; ``dL/dW2 = dz^T a``,
    ``dL/da = dz W2``, ``dL/dh = dL/da * 1[h > 0]``, ``dL/dW1 = dh^T x``.
    """
    import torch

    n, B, H = X.shape[0], bx.shape[1], HIDDEN[0]
    o1, o2, o3 = 784 * H, 784 * H + H, 784 * H + H + 10 * H
    W1, b1 = X[:, :o1].view(n, H, 784), X[:, o1:o2]
    W2, b2 = X[:, o2:o3].view(n, 10, H), X[:, o3:]
    h = torch.baddbmm(b1[:, None, :], bx, W1.transpose(1, 2))
    a = h.relu()
    z = torch.baddbmm(b2[:, None, :], a, W2.transpose(1, 2))
    logp = z.log_softmax(-1)
    losses = -logp.gather(-1, by[..., None]).mean((1, 2))
    dz = logp.exp_()
    dz.scatter_add_(-1, by[..., None], torch.full_like(dz[..., :1], -1.0)).div_(B)
    G = torch.empty_like(X)
    torch.bmm(dz.transpose(1, 2), a, out=G[:, o2:o3].view(n, 10, H))
    G[:, o3:] = dz.sum(1)
    dh = torch.bmm(dz, W2).mul_(h > 0)
    torch.bmm(dh.transpose(1, 2), bx, out=G[:, :o1].view(n, H, 784))
    G[:, o1:o2] = dh.sum(1)
    return G, losses


def measure_block(n: int, args, include_loop: bool) -> list[dict]:
    """Rows for ``vmap``, ``fused``, ``bmm``, ``loop`` (if ``include_loop``), ``vmap+mix``
    (and its CUDA graph)."""

    from gossip.comm.local import LocalComm
    from gossip.problems.classification.backends import fused_grads, loop_grads, vectorized_grads

    model, X, bx, by = _setup(n, args.device)
    repeats = 1 if args.quick else args.repeats
    timing = {"device": args.device, "repeats": repeats}
    if args.quick:
        timing["min_seconds"] = 0.0
    rows = []

    def vmap_step():
        G, _ = vectorized_grads(model, X, bx, by)
        X.sub_(G, alpha=LR)

    rows.append(_row("vmap", n, 1, args.threads, time_per_call(vmap_step, **timing)))

    def fused_step():
        G, _ = fused_grads(model, X, bx, by)
        X.sub_(G, alpha=LR)

    rows.append(_row("fused", n, 1, args.threads, time_per_call(fused_step, **timing)))

    def bmm_step():
        G, _ = bmm_grads(X, bx, by)
        X.sub_(G, alpha=LR)

    rows.append(_row("bmm", n, 1, args.threads, time_per_call(bmm_step, **timing)))
    if include_loop:

        def loop_step():
            G, _ = loop_grads(model, X, bx, by)
            X.sub_(G, alpha=LR)

        rows.append(
            _row(
                "loop",
                n,
                1,
                args.threads,
                time_per_call(loop_step, **{**timing, "min_seconds": 0.0}),
            )
        )

    comm, W = LocalComm(n), _ring(n)
    state = {"X": X}

    def dsgd_round():
        G, _ = vectorized_grads(model, state["X"], bx, by)
        state["X"] = comm.mix(state["X"] - LR * G, W)

    rows.append(_row("vmap+mix", n, 1, args.threads, time_per_call(dsgd_round, **timing)))

    if args.device.startswith("cuda"):
        # the round with either gradient backend (training takes fused for MLPs)
        for name, grads in (("vmap", vectorized_grads), ("fused", fused_grads)):
            Xs = X.clone()

            def static_round(grads=grads, Xs=Xs):  # fixed buffers, as a CUDA graph needs
                G, _ = grads(model, Xs, bx, by)
                Xs.copy_(comm.mix(Xs - LR * G, W))

            replay, reason = _cuda_graph_round(static_round, args.device)
            mode = f"{name}+mix graph"
            if replay is not None:
                row = _row(mode, n, 1, args.threads, time_per_call(replay, **timing))
            else:
                row = {"mode": mode, "n": n, "note": reason}
            rows.append(row)
    return rows


def worker(args) -> int:
    """One rank of the ``mpi`` mode: this rank's node does D-SGD rounds on the ring."""
    import time

    import torch
    from mpi4py import MPI

    from gossip.comm.mpi import MPIComm
    from gossip.problems.classification.backends import vectorized_grads

    torch.set_num_threads(1)
    world = MPI.COMM_WORLD
    P = world.Get_size()
    comm = MPIComm(P)
    W = _ring(P)
    model, X, bx, by = _setup(P, "cpu")
    lo = comm.rank
    state = {"X": X[lo : lo + 1].clone()}
    xb, yb = bx[lo : lo + 1].clone(), by[lo : lo + 1].clone()
    del X, bx, by

    def dsgd_round():
        G, _ = vectorized_grads(model, state["X"], xb, yb)
        state["X"] = comm.mix(state["X"] - LR * G, W)

    rounds = 3 if args.quick else 30
    dsgd_round()
    samples = []
    for _ in range(1 if args.quick else args.repeats):
        comm.barrier()
        start = time.perf_counter()
        for _ in range(rounds):
            dsgd_round()
        comm.barrier()
        samples.append((time.perf_counter() - start) / rounds)
    samples = world.allreduce(sorted(samples)[len(samples) // 2], op=MPI.MAX)
    if comm.rank == 0:
        print(json.dumps({"ranks": P, "seconds": samples}), flush=True)
    return 0


def measure_mpi(P: int, args) -> dict:
    """Launch ``P`` ranks of :func:`worker`; the row of the ``mpi`` mode for ``n = P``."""
    launcher = mpiexec()
    if launcher is None:
        return {"mode": "mpi", "n": P, "processes": P, "note": "mpiexec not found"}
    cmd = [
        launcher,
        "-n",
        str(P),
        sys.executable,
        str(Path(__file__).resolve()),
        "--worker",
        "--repeats",
        str(args.repeats),
    ] + (["--quick"] if args.quick else [])
    proc = subprocess.run(cmd, env=mpi_env(), capture_output=True, text=True, timeout=600)
    if proc.returncode != 0:
        raise RuntimeError(f"mpiexec -n {P} failed ({proc.returncode}):\n{proc.stderr[-2000:]}")
    found = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
    return _row("mpi", P, P, 1, found[-1]["seconds"])


def speedups(rows: list[dict], n: int = COMPARE_N) -> dict:
    """``fused`` and ``vmap`` node-steps/s over ``loop``'s at ``n``, ``fused`` over ``vmap``,
    and both over the fastest ``mpi`` row."""

    def rate(mode, size=None):
        hits = [
            r["node_steps_per_s"]
            for r in rows
            if r["mode"] == mode and "node_steps_per_s" in r and (size is None or r["n"] == size)
        ]
        return max(hits) if hits else None

    out = {"n": n}
    fu, vm, lp, mp = rate("fused", n), rate("vmap", n), rate("loop", n), rate("mpi")
    if fu and lp:
        out["fused_over_loop"] = fu / lp
    if fu and vm:
        out["fused_over_vmap"] = fu / vm
    if fu and mp:
        out["fused_over_mpi"] = fu / mp
    if vm and lp:
        out["vmap_over_loop"] = vm / lp
    if vm and mp:
        out["vmap_over_mpi"] = vm / mp
    if mp:
        out["mpi_ranks"] = max(
            r["n"]
            for r in rows
            if r["mode"] == "mpi" and "node_steps_per_s" in r and r["node_steps_per_s"] == mp
        )
    return out


def run(args) -> int:
    """Measure every mode, print the table, write the results; exit status 0."""
    import torch

    if args.worker:
        return worker(args)
    torch.set_num_threads(args.threads)
    load_start = [round(x, 2) for x in os.getloadavg()] if hasattr(os, "getloadavg") else None
    sizes = args.sizes or ([16] if args.quick else [16, 64, 256, 1024])
    ranks = [r for r in (args.ranks or ([2] if args.quick else [2, 4, 8])) if r]
    rows = []
    for n in sizes:
        rows += measure_block(n, args, include_loop=n <= args.loop_max)
    for P in ranks:
        rows.append(measure_mpi(P, args))
    ratio_n = COMPARE_N if COMPARE_N in sizes else sizes[0]
    sp = speedups(rows, ratio_n)
    info = machine(args.device, args.threads)
    table = markdown_table(
        COLUMNS, rows, {"ms_per_step": ".3f", "node_steps_per_s": ",.0f", "gflop_per_s": ".2f"}
    )
    lines = [f"Speed-ups at n = {ratio_n}:"]
    if "fused_over_loop" in sp:
        lines.append(f"- fused over the per-node loop: {sp['fused_over_loop']:.1f}x")
    if "fused_over_vmap" in sp:
        lines.append(f"- fused over vmap: {sp['fused_over_vmap']:.1f}x")
    if "fused_over_mpi" in sp:
        lines.append(
            f"- fused over one MPI rank per node (best of the rank counts, "
            f"{sp['mpi_ranks']} ranks): {sp['fused_over_mpi']:.1f}x"
        )
    if "vmap_over_loop" in sp:
        lines.append(f"- vmap over the per-node loop: {sp['vmap_over_loop']:.1f}x")
    if "vmap_over_mpi" in sp:
        lines.append(
            f"- vmap over one MPI rank per node (best of the rank counts, "
            f"{sp['mpi_ranks']} ranks): {sp['vmap_over_mpi']:.1f}x"
        )
    text = "\n".join(
        [
            header("Simulation throughput (784-128-10 MLP, batch 32 per node)", info),
            table,
            "",
            *lines,
            "",
            f"Load average at the start: {load_start}; at the end: {info.get('load_average')}.",
        ]
    )
    print(text)
    write_results(
        args.out,
        f"simulation-{device_kind(args.device)}",
        info,
        COLUMNS,
        rows,
        text,
        {"speedups": sp, "load_average_start": load_start},
    )
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    add_arguments(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    raise SystemExit(main())
