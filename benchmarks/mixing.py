"""Gossip mixing of an ``n x d`` block against the memory-bandwidth bound.

One gossip step is ``Y = W X`` (``y_i = sum_j W[i, j] x_j``, Lian et al. 2017) for an ``n x d``
float32 block ``X``. Its bound is one read of ``X`` and one write of ``Y``: exactly the traffic
of ``Y.copy_(X)``, so the bound is the measured time of that copy on the same sizes, and every
row reports ``ratio = time / copy time`` (1.0 = at the bound).

Formulations timed, for Metropolis ``W`` of a ring, a 2-D torus and the exponential graph:

- ``comm.mix``: ``LocalComm(n).mix(X, schedule.matrix(t))`` with ``t`` counting up, what a
  ``gossip train`` round calls (``schedule`` is the static schedule a run builds for the graph);
- ``apply_rows``: the raw ``apply_rows`` product of ``schedule.matrix(t)`` (the cached operator
  it picks: local diagonals for large rows of a ring/torus-like slice, else dense or CSR torch),
  without the byte counting;
- ``dense``: ``torch.mm`` with dense ``W`` (skipped when ``n^2 d > 1e10``);
- ``csr``: ``torch.sparse_csr_tensor(W) @ X``;
- ``rolls``: ``sum_o w_o * roll(X, -o)`` over the local diagonals ``o`` of ``W``
  (``w_o[i] = W[i, i + o]``, a wrapped diagonal ``k`` being the two offsets ``k`` and ``k - n``),
  the naive weighted-roll form;
- ``diagonals``: the same sum without temporaries, ``addcmul_`` on row slices
  (``gossip.comm.mixing_ops.mix_diagonals`` in one block);
- ``diagonals blocked``: ``diagonals`` applied one block of rows at a time (about 2 MB of ``X``),
  so the rows read for one offset are still in cache for the next;
- ``index_add``: ``Y.index_add_(0, i, w * X[j])`` over the edge list (in edge chunks);
- ``ell`` (with ``--extra``): :func:`mix_ell`, per output row up to max-degree
  ``(index, weight)`` pairs, ``Y = sum_k w[:, k] * X[idx[:, k]]`` in row blocks (measured and not
  adopted: it loses to CSR, so it lives here, not in ``gossip``). ``--extra`` also allows the
  non-circulant topologies ``random_matching`` and ``erdos_renyi``.

Offsets holding fewer than half the rows of their span (e.g. a torus' wrap-around edges) are
applied as strided slices when evenly spaced, else by ``index_add_`` on their rows only.

    python benchmarks/mixing.py                     # n = 16,256,1024; d = 1e4,1e5
    python benchmarks/mixing.py --quick             # n = 16; d = 1e4
    python benchmarks/mixing.py --device cuda
    python benchmarks/mixing.py --extra --topologies random_matching,erdos_renyi,ring
"""

from __future__ import annotations

import argparse
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
    time_per_call,
    write_results,
)

if typing.TYPE_CHECKING:
    import torch

    from gossip.comm.mixing_ops import DiagonalPlan

__all__ = ["COLUMNS", "METHODS", "EllPlan", "add_arguments", "ell_plan", "main", "methods"]
__all__ += ["mix_ell", "mix_rolls", "run", "schedule_of"]

COLUMNS = ["topology", "n", "d", "method", "ms", "gb_per_s", "ratio"]
METHODS = [
    "comm.mix",
    "apply_rows",
    "dense",
    "csr",
    "rolls",
    "diagonals",
    "diagonals blocked",
    "index_add",
]
TOPOLOGIES = ["ring", "torus", "exponential"]
EXTRA_TOPOLOGIES = ["random_matching", "erdos_renyi"]  # non-circulant W, with --extra
DENSE_MAX = 1e10  # n^2 d multiply-adds above which the dense product is skipped
GATHER_BYTES = 256 << 20  # temporary of one index_add chunk


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--sizes", type=int_list, default=None, help="n (default 16,256,1024; --quick: 16)"
    )
    parser.add_argument(
        "--dims", type=int_list, default=None, help="d (default 1e4,1e5; --quick: 1e4)"
    )
    parser.add_argument(
        "--topologies",
        default=",".join(TOPOLOGIES),
        help=f"comma-separated, from {', '.join(TOPOLOGIES)}",
    )
    parser.add_argument("--threads", type=int, default=1, help="torch.set_num_threads")
    parser.add_argument("--device", default="cpu", help="cpu or cuda[:k] (default cpu)")
    parser.add_argument("--repeats", type=int, default=3, help="timed batches per point")
    parser.add_argument("--quick", action="store_true", help="tiny sizes, one repeat")
    parser.add_argument("--out", type=Path, default=RESULTS, help="results folder")
    parser.add_argument(
        "--extra",
        action="store_true",
        help="also time the ELL form ('ell') and allow the topologies "
        + ", ".join(EXTRA_TOPOLOGIES),
    )


def schedule_of(topology: str, n: int):
    """The static Metropolis schedule of ``topology`` on ``n`` nodes, as ``gossip train``
    builds it (``topologies.make_schedule("static", graph=...)``).

    The exponential graph is directed; its Metropolis weights are those of the undirected
    graph with the same edges (symmetric, doubly stochastic). ``random_matching`` is the graph
    of round 0 of that schedule (seed 0; its Metropolis weights are the schedule's 1/2-1/2),
    ``erdos_renyi`` the default random graph of ``topologies.build``.
    """
    import topologies

    if topology == "random_matching":
        graph = topologies.make_schedule("random_matching", n).graph(0).to_undirected()
    else:
        graph = topologies.build(topology, n)
    if graph.is_directed():
        graph = graph.to_undirected()
    return topologies.make_schedule("static", n, graph=graph, rule="metropolis")


def mix_rolls(X: torch.Tensor, plan: DiagonalPlan) -> torch.Tensor:
    """``W X`` as ``sum_o w_o * roll(X, -o, 0)`` over the offsets of a whole-``W`` plan: one
    temporary per offset (``w_o`` is zero on the rows without an entry, so the roll's wrap is
    never used); strided and sparse offsets by ``index_add_`` on their rows."""
    import torch

    Y = torch.zeros_like(X)
    for o, w in plan.dense:
        Y += w * torch.roll(X, -o, 0)
    for o, lo, step, w in plan.strided:
        rows = torch.arange(lo, lo + step * len(w), step, device=X.device)
        Y.index_add_(0, rows, X.index_select(0, rows + o) * w)
    for o, rows, w in plan.sparse:
        Y.index_add_(0, rows, X.index_select(0, rows + o) * w)
    return Y


class EllPlan(typing.NamedTuple):
    """ELL form of an ``(n, n)`` matrix: ``idx[r, k]`` and ``w[r, k]`` for ``k < max degree``
    (padding entries point at row 0 with weight 0)."""

    idx: torch.Tensor
    w: torch.Tensor


def ell_plan(W, dtype: torch.dtype, device: torch.device | str = "cpu") -> EllPlan:
    """The :class:`EllPlan` of ``W`` (any scipy sparse matrix)."""
    import numpy as np
    import scipy.sparse as sp
    import torch

    S = sp.csr_array(W)
    b = S.shape[0]
    counts = np.diff(S.indptr)
    k = int(counts.max()) if b else 0
    idx = np.zeros((b, k), dtype=np.int64)
    w = np.zeros((b, k))
    slot = np.arange(S.nnz) - np.repeat(S.indptr[:-1], counts)
    row = np.repeat(np.arange(b), counts)
    idx[row, slot] = S.indices
    w[row, slot] = S.data
    return EllPlan(torch.from_numpy(idx).to(device), torch.tensor(w, dtype=dtype, device=device))


def mix_ell(X: torch.Tensor, plan: EllPlan, block_rows: int | None = None) -> torch.Tensor:
    """``W X`` from the :class:`EllPlan` of ``W``: ``y_r = sum_k w[r, k] X[idx[r, k]]``, one
    gather of a block of rows per ``k`` (``block_rows``: output rows per block, default about
    ``gossip.comm.mixing_ops.BLOCK_BYTES`` of rows; ``0``: one block)."""
    import torch

    from gossip.comm.mixing_ops import BLOCK_BYTES

    b = plan.idx.shape[0]
    if X.shape[0] != b:
        raise ValueError(f"X has {X.shape[0]} rows, the plan needs {b}")
    if block_rows is None:
        block_rows = max(1, BLOCK_BYTES // max(1, X[0].numel() * X.element_size()))
    step = block_rows or max(b, 1)
    Y = torch.zeros_like(X)
    for lo in range(0, b, step):
        hi = min(b, lo + step)
        for k in range(plan.idx.shape[1]):
            Y[lo:hi].addcmul_(plan.w[lo:hi, k, None], X.index_select(0, plan.idx[lo:hi, k]))
    return Y


def _index_add(X: torch.Tensor, rows, cols, vals) -> torch.Tensor:
    import torch

    Y = torch.zeros_like(X)
    chunk = max(1, GATHER_BYTES // max(1, X[0].numel() * X.element_size()))
    for s in range(0, len(rows), chunk):
        Y.index_add_(
            0, rows[s : s + chunk], X.index_select(0, cols[s : s + chunk]) * vals[s : s + chunk]
        )
    return Y


def methods(schedule, X: torch.Tensor, extra: bool = False) -> dict:
    """Every formulation of ``W X`` as a zero-argument callable (``None`` when skipped); with
    ``extra`` also the ELL form (:func:`mix_ell`, row blocks of ~2 MB).

    ``comm.mix`` and ``apply_rows`` take ``W = schedule.matrix(t)`` afresh on every call
    (``t = 0, 1, ...``), as a training round does; the other formulations are kernels built
    once from ``W(0)``.
    """
    import itertools
    import warnings

    import numpy as np
    import scipy.sparse as sp
    import torch

    from gossip.comm.local import LocalComm
    from gossip.comm.mixing import apply_rows
    from gossip.comm.mixing_ops import diagonal_plan, mix_diagonals

    n, d = X.shape
    dev, dt = X.device, X.dtype
    comm, ids, nodes = LocalComm(n), np.arange(n, dtype=np.int64), range(n)
    rounds = itertools.count()
    W = schedule.matrix(0)
    plan = diagonal_plan(W, dt, dev)
    csr = sp.csr_array(W, copy=True)  # W(t) is read-only; torch tensors want writeable arrays
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta")
        S = torch.sparse_csr_tensor(
            torch.from_numpy(csr.indptr.astype(np.int64)),
            torch.from_numpy(csr.indices.astype(np.int64)),
            torch.from_numpy(csr.data).to(dt),
            size=csr.shape,
            check_invariants=False,
        ).to(dev)
    coo = sp.coo_array(csr)
    rows = torch.from_numpy(coo.row.astype(np.int64)).to(dev)
    cols = torch.from_numpy(coo.col.astype(np.int64)).to(dev)
    vals = torch.from_numpy(coo.data).to(dtype=dt, device=dev)[:, None]
    Wd = torch.from_numpy(csr.toarray()).to(dtype=dt, device=dev)
    found = {
        "comm.mix": lambda: comm.mix(X, schedule.matrix(next(rounds))),
        "apply_rows": lambda: apply_rows(schedule.matrix(next(rounds)), nodes, ids, X),
        "dense": (lambda: Wd @ X) if n * n * d <= DENSE_MAX else None,
        "csr": lambda: S @ X,
        "rolls": lambda: mix_rolls(X, plan),
        "diagonals": lambda: mix_diagonals(X, plan, 0),
        "diagonals blocked": lambda: mix_diagonals(X, plan),
        "index_add": lambda: _index_add(X, rows, cols, vals),
        "_reference": lambda: torch.from_numpy(csr @ X.double().cpu().numpy()),
    }
    if extra:
        ell = ell_plan(W, dt, dev)
        found["ell"] = lambda: mix_ell(X, ell)
    return found


def measure(topology: str, n: int, d: int, args) -> list[dict]:
    """Rows for every method on one ``(topology, n, d)``, with the copy bound first."""
    import torch

    gen = torch.Generator().manual_seed(n * 7 + d)
    X = torch.randn(n, d, generator=gen).to(args.device)
    schedule = schedule_of(topology, n)
    timing = {"device": args.device, "repeats": 1 if args.quick else args.repeats}
    if args.quick:
        timing["min_seconds"] = 0.0
    Y = torch.empty_like(X)
    copy_s = time_per_call(lambda: Y.copy_(X), **timing)
    nbytes = 2 * X.numel() * X.element_size()
    found = methods(schedule, X, getattr(args, "extra", False))
    ref = found.pop("_reference")()
    rows = [_point(topology, n, d, "copy (bound)", copy_s, copy_s, nbytes)]
    for name, fn in found.items():
        if fn is None:
            rows.append(
                {
                    "topology": topology,
                    "n": n,
                    "d": d,
                    "method": name,
                    "note": f"skipped: n^2 d > {DENSE_MAX:.0e}",
                }
            )
            continue
        err = (fn().double().cpu() - ref).abs().max().item()
        if err > 1e-4:
            raise AssertionError(f"{name} differs from W @ X by {err:.2e} ({topology}, n={n})")
        rows.append(_point(topology, n, d, name, time_per_call(fn, **timing), copy_s, nbytes))
    return rows


def _point(topology, n, d, method, seconds, copy_s, nbytes) -> dict:
    return {
        "topology": topology,
        "n": n,
        "d": d,
        "method": method,
        "ms": 1e3 * seconds,
        "gb_per_s": nbytes / seconds / 1e9,
        "ratio": seconds / copy_s,
    }


def best(rows: list[dict]) -> list[dict]:
    """The fastest method (lowest ratio, the bound excluded) of every ``(topology, n, d)``."""
    out: dict[tuple, dict] = {}
    for r in rows:
        if "ratio" not in r or r["method"] == "copy (bound)":
            continue
        key = (r["topology"], r["n"], r["d"])
        if key not in out or r["ratio"] < out[key]["ratio"]:
            out[key] = r
    return list(out.values())


def run(args) -> int:
    """Measure, print the table and the best method per point, write the results."""
    import torch

    from gossip.errors import ConfigError

    torch.set_num_threads(args.threads)
    sizes = args.sizes or ([16] if args.quick else [16, 256, 1024])
    dims = args.dims or ([10_000] if args.quick else [10_000, 100_000])
    tops = [t for t in args.topologies.split(",") if t]
    allowed = TOPOLOGIES + (EXTRA_TOPOLOGIES if args.extra else [])
    for t in tops:
        if t not in allowed:
            raise ConfigError(f"unknown topology {t!r}; allowed: {', '.join(allowed)}")
    rows = []
    for t in tops:
        for n in sizes:
            for d in dims:
                rows += measure(t, n, d, args)
    info = machine(args.device, args.threads)
    fmt = {"ms": ".3f", "gb_per_s": ".2f", "ratio": ".2f", "d": lambda v: f"{v:.0e}"}
    winners = best(rows)
    text = "\n".join(
        [
            header("Gossip mixing vs the memory-bandwidth bound", info),
            markdown_table(COLUMNS, rows, fmt),
            "",
            "Closest to the bound, per point:",
            "",
            markdown_table(COLUMNS, winners, fmt),
        ]
    )
    print(text)
    write_results(
        args.out,
        f"mixing-{device_kind(args.device)}",
        info,
        COLUMNS,
        rows,
        text,
        {"best": winners},
    )
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    add_arguments(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    raise SystemExit(main())
