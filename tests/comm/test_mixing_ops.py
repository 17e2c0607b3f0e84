"""Local-diagonal gossip products equal the dense ``W[nodes][:, ids] @ rows`` exactly (float64
to 1e-12) on every topology family, hosted slice and dtype, and ``apply_rows`` takes the
diagonal form exactly where it should."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import topologies
from gossip.comm import mixing
from gossip.comm.mixing import apply_rows, mix_delta, senders_to
from gossip.comm.mixing_ops import add_rows, diagonal_plan, mix_diagonals, rows_operator
from gossip.comm.placement import Placement
from tests.mpi_util import json_lines, requires_mpi, run_mpi


def _matrices(n: int) -> dict[str, sp.csr_array]:
    exp = topologies.build("exponential", n).to_undirected()
    side = int(round(n**0.5))
    out = {
        "ring": topologies.mixing_matrix(topologies.build("ring", n)),
        "exponential": topologies.mixing_matrix(exp),
        "one_peer_exponential": sp.csr_array(
            topologies.make_schedule("one_peer_exponential", n).matrix(1)
        ),
        "random_matching": sp.csr_array(topologies.make_schedule("random_matching", n).matrix(0)),
        "erdos_renyi": topologies.mixing_matrix(topologies.build("erdos_renyi", n, seed=2)),
    }
    if side * side == n:
        out["torus"] = topologies.mixing_matrix(topologies.build("torus", n))
    return out


def _slices(n: int) -> list[tuple[range, np.ndarray | None]]:
    """Whole W, and the hosted blocks of 3 uneven ranks with the ids MPIComm would gather."""
    out: list[tuple[range, np.ndarray | None]] = [(range(n), None)]
    placement = Placement(n, 3)
    out += [(placement.block(r), "senders") for r in range(3)]
    return out


def _dense(W, nodes: range, ids: np.ndarray, X: torch.Tensor) -> torch.Tensor:
    S = sp.csr_array(W).toarray()[nodes.start : nodes.stop][:, ids]
    flat = X.reshape(X.shape[0], -1).double()
    return (torch.from_numpy(S) @ flat).reshape((len(nodes),) + tuple(X.shape[1:]))


@pytest.mark.parametrize("n", [9, 16, 25])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_diagonals_equal_dense(n: int, dtype: torch.dtype) -> None:
    tol = 1e-12 if dtype == torch.float64 else 1e-5
    gen = torch.Generator().manual_seed(n)
    for name, W in _matrices(n).items():
        for nodes, ids in _slices(n):
            ids = np.arange(n) if ids is None else senders_to(W, nodes)
            X = torch.randn(len(ids), 3, 2, generator=gen, dtype=torch.float64).to(dtype)
            want = _dense(W, nodes, ids, X)
            plan = diagonal_plan(W, dtype, "cpu", nodes, ids)
            for block in (None, 0, 1, 2, 5):
                got = mix_diagonals(X, plan, block)
                assert got.dtype == dtype and got.shape == want.shape
                torch.testing.assert_close(got.double(), want, rtol=0, atol=tol, msg=name)


def test_offsets_of_a_ring() -> None:
    n = 12
    W = topologies.mixing_matrix(topologies.build("ring", n))
    plan = diagonal_plan(W, torch.float64, "cpu")
    # wrapped diagonals 0, 1, n-1 become local offsets 0, +-1 and the two wrap corners
    assert sorted(o for o, _ in plan.dense) == [-(n - 1), -1, 0, 1, n - 1]
    assert plan.full and plan.dense[0][0] == 0 and plan.spans[0] == (0, n)
    assert plan.work_rows == W.nnz and not plan.sparse and not plan.strided
    torus = topologies.mixing_matrix(topologies.build("torus", 36))
    tplan = diagonal_plan(torus, torch.float64, "cpu")
    # the wrap-around of every grid row is an evenly spaced offset, not a gather
    assert len(tplan.strided) == 2 and not tplan.sparse
    assert {step for _, _, step, _ in tplan.strided} == {6}
    assert tplan.work_rows <= 1.25 * torus.nnz


@settings(max_examples=40, deadline=None)
@given(
    n=st.integers(1, 20),
    density=st.floats(0.0, 0.6),
    seed=st.integers(0, 2**16),
    data=st.data(),
)
def test_any_slice_of_any_matrix(n: int, density: float, seed: int, data) -> None:
    rng = np.random.default_rng(seed)
    W = sp.csr_array(sp.random_array((n, n), density=density, rng=rng))
    lo = data.draw(st.integers(0, n - 1))
    hi = data.draw(st.integers(lo + 1, n))
    ids = np.sort(rng.choice(n, size=data.draw(st.integers(1, n)), replace=False))
    X = torch.from_numpy(rng.standard_normal((len(ids), 4)))
    want = _dense(W, range(lo, hi), ids, X)
    plan = diagonal_plan(W, torch.float64, "cpu", range(lo, hi), ids)
    torch.testing.assert_close(mix_diagonals(X, plan, 2), want, rtol=0, atol=1e-12)


def _diagonals(W, nodes: range, ids: np.ndarray):
    """apply_rows' cached choice for a float64 CPU slice: a DiagonalPlan or None."""
    args = (W, nodes, ids, torch.float64, torch.device("cpu"))
    return mixing._diagonals(mixing._slice_key(*args), *args)


def test_apply_rows_takes_diagonals_for_large_rows_only() -> None:
    n = 36
    mats = _matrices(n)
    d = 2 * mixing._DIAG_ROW_BYTES // 8  # above the row-size threshold in float64
    gen = torch.Generator().manual_seed(0)
    for name, W in mats.items():
        for nodes, ids in _slices(n):
            ids = np.arange(n) if ids is None else senders_to(W, nodes)
            for dtype in (torch.float64, torch.float32):
                X = torch.randn(len(ids), d, generator=gen, dtype=torch.float64).to(dtype)
                got = apply_rows(W, nodes, ids, X)
                tol = 1e-12 if dtype == torch.float64 else 1e-5
                torch.testing.assert_close(
                    got.double(), _dense(W, nodes, ids, X), rtol=0, atol=tol, msg=name
                )
    ring = mats["ring"]
    full = np.arange(n)
    assert _diagonals(ring, range(n), full) is not None
    # a random graph has too many offsets: CSR
    er = mats["erdos_renyi"]
    assert _diagonals(er, range(n), full) is None
    # a 4 x 4 slice stays one dense product
    tiny = topologies.mixing_matrix(topologies.build("ring", 4))
    plan = _diagonals(tiny, range(4), np.arange(4))
    assert plan is None


@pytest.mark.parametrize(("n", "d"), [(16, 3), (16, 4096), (100, 3)])  # dense, diagonals, CSR
def test_float32_products_are_the_float64_product_rounded_once(n: int, d: int) -> None:
    """apply_rows sums in float64: a float32 result is the float64 product rounded once, bit
    for bit (summed in float32 it was off by up to a few ulps, with a bias: a float32 W is not
    stochastic). mix_delta likewise rounds ``W x - x`` once."""
    gen = torch.Generator().manual_seed(d)
    for name, W in _matrices(n).items():
        for nodes, ids in _slices(n):
            ids = np.arange(n) if ids is None else senders_to(W, nodes)
            own = np.searchsorted(ids, np.arange(nodes.start, nodes.stop))
            X = torch.randn(len(ids), d, generator=gen, dtype=torch.float64).float()
            want = _dense(W, nodes, ids, X)
            assert torch.equal(apply_rows(W, nodes, ids, X), want.float()), name
            delta = mix_delta(W, nodes, ids, X)
            assert torch.equal(delta, (want - X[own].double()).float()), name


@pytest.mark.parametrize("n", [9, 16, 100])
def test_consensus_is_a_fixed_point_in_float32(n: int) -> None:
    """``W 1 x^T = 1 x^T`` exactly for every row-stochastic W: no product moves a consensus,
    as a float32 copy of W (rows summing to ``1 +- 1e-8``) did; ``(W - I) 1 x^T`` is the
    float64 rows' ``1e-16`` off 1, not float32's ``1e-8``."""
    x = torch.randn(1, 64, generator=torch.Generator().manual_seed(n)).float() + 4
    for name, W in _matrices(n).items():
        X = x.expand(n, 64).contiguous()
        assert torch.equal(apply_rows(W, range(n), np.arange(n), X), X), name
        assert mix_delta(W, range(n), np.arange(n), X).abs().max() < 1e-14, name


def test_apply_rows_integer_rows_and_small_rows_unchanged() -> None:
    n = 20
    W = topologies.mixing_matrix(topologies.build("ring", n))
    ids = np.arange(n)
    Xi = torch.arange(n * 3).reshape(n, 3)
    got = apply_rows(W, range(n), ids, Xi)
    assert got.dtype == torch.float32
    torch.testing.assert_close(got.double(), _dense(W, range(n), ids, Xi), rtol=0, atol=1e-4)
    big = torch.arange(n * 8192, dtype=torch.int32).reshape(n, 8192) % 7
    got = apply_rows(W, range(n), ids, big)
    assert got.dtype == torch.float32
    torch.testing.assert_close(got.double(), _dense(W, range(n), ids, big), rtol=0, atol=1e-4)


def test_mix_rejects_wrong_row_count() -> None:
    W = topologies.mixing_matrix(topologies.build("ring", 6))
    with pytest.raises(ValueError, match="rows"):
        mix_diagonals(torch.zeros(5, 2), diagonal_plan(W))


# Run under mpiexec -n 3 (uneven blocks of 7 nodes, one of them remote on both sides): results
# handed out earlier are never overwritten by later calls that reuse internal buffers, a
# multi-tensor share (received through reused byte buffers) stays exact call after call, for
# small and large rows, and the same W object finds its plan by identity.
_REUSE_CHECK = """
import json, numpy as np, torch, topologies
from gossip.comm.local import LocalComm
from gossip.comm.mpi import MPIComm
n = 7
comm, local = MPIComm(n), LocalComm(n)
rows = slice(comm.nodes.start, comm.nodes.stop)
W = topologies.mixing_matrix(topologies.build("ring", n))
fails = []
def check(ok, what):
    if not ok:
        fails.append(what)
check(comm.plan(W) is comm.plan(W), "plan by id")
check(comm.plan(W.copy()) is comm.plan(W), "plan by pattern")
held = []
for seed, d in [(0, 5), (1, 5), (2, 5), (3, 6000), (4, 6000)]:
    gen = torch.Generator().manual_seed(seed)
    X = torch.randn(n, d, dtype=torch.float64, generator=gen)
    Y = torch.randint(0, 9, (n, 2), dtype=torch.int16, generator=gen)
    got = comm.mix(X[rows], W)
    ids, (gx, gy) = comm.share((X[rows], Y[rows]), W)[:2]
    want = local.mix(X, W)[rows]
    check(torch.allclose(got, want, rtol=0, atol=1e-12), f"mix {seed}")
    check(torch.equal(gx, X[ids]) and torch.equal(gy, Y[ids]), f"share {seed}")
    held.append((got.clone(), got, gx.clone(), gx, gy.clone(), gy))
for i, (a, b, c, e, f, g) in enumerate(held):
    check(torch.equal(a, b) and torch.equal(c, e) and torch.equal(f, g), f"kept {i}")
print(json.dumps({"rank": comm.rank, "fails": fails}), flush=True)
"""


@requires_mpi
def test_mpicomm_reuses_buffers_without_overwriting_results() -> None:
    proc = run_mpi(3, ["-c", _REUSE_CHECK], timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    reports = json_lines(proc.stdout)
    assert sorted(r["rank"] for r in reports) == [0, 1, 2]
    assert all(r["fails"] == [] for r in reports), reports


@pytest.mark.parametrize("n", [8, 16])
def test_add_rows_adds_exactly_the_remote_part(n: int) -> None:
    """hosted part + add_rows(remote part) == the whole slice product, for every placement."""
    gen = torch.Generator().manual_seed(n)
    for name, W in _matrices(n).items():
        for size in (2, 3, n):
            placement = Placement(n, size)
            for r in range(size):
                nodes = placement.block(r)
                ids = senders_to(W, nodes)
                hosted = (ids >= nodes.start) & (ids < nodes.stop)
                X = torch.randn(len(ids), 3, 2, generator=gen, dtype=torch.float64)
                want = _dense(W, nodes, ids, X)
                Y = apply_rows(W, nodes, ids[hosted], X[torch.from_numpy(hosted)])
                op = rows_operator(W, torch.float64, "cpu", nodes, ids[~hosted])
                got = add_rows(Y, op, X[torch.from_numpy(~hosted)])
                torch.testing.assert_close(got, want, rtol=0, atol=1e-12, msg=name)
                if len(ids[~hosted]) and Y.is_contiguous():
                    assert got.data_ptr() == Y.data_ptr()  # in place


def test_rows_operator_touches_only_rows_with_entries() -> None:
    W = topologies.mixing_matrix(topologies.build("ring", 12))
    ends = rows_operator(W, torch.float64, "cpu", range(0, 6), np.array([6, 11]))
    assert ends.at is not None and not isinstance(ends.at, slice)
    assert ends.at.tolist() == [0, 5] and ends.S.shape == (2, 2)
    first = rows_operator(W, torch.float64, "cpu", range(0, 6), np.array([11]))
    assert first.at == slice(0, 1)
    assert rows_operator(W, torch.float64, "cpu").at is None
    Y = torch.zeros(6, 2, dtype=torch.float64)
    add_rows(Y, ends, torch.ones(2, 2, dtype=torch.float64))
    assert Y[1:5].abs().sum() == 0 and torch.all(Y[[0, 5]] == 1 / 3)
