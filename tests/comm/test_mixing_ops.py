"""Local-diagonal and ELL gossip products equal the dense ``W[nodes][:, ids] @ rows`` exactly
(float64 to 1e-12) on every topology family, hosted slice and dtype, and ``apply_rows`` takes the
diagonal form exactly where it should."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import topologies
from gossip.comm import base
from gossip.comm.base import apply_rows, senders_to
from gossip.comm.mixing_ops import diagonal_plan, ell_plan, mix_diagonals, mix_ell
from gossip.placement import Placement


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
def test_diagonals_and_ell_equal_dense(n: int, dtype: torch.dtype) -> None:
    tol = 1e-12 if dtype == torch.float64 else 1e-5
    gen = torch.Generator().manual_seed(n)
    for name, W in _matrices(n).items():
        for nodes, ids in _slices(n):
            ids = np.arange(n) if ids is None else senders_to(W, nodes)
            X = torch.randn(len(ids), 3, 2, generator=gen, dtype=torch.float64).to(dtype)
            want = _dense(W, nodes, ids, X)
            plan = diagonal_plan(W, dtype, "cpu", nodes, ids)
            ell = ell_plan(W, dtype, "cpu", nodes, ids)
            for block in (None, 0, 1, 2, 5):
                got = mix_diagonals(X, plan, block)
                assert got.dtype == dtype and got.shape == want.shape
                torch.testing.assert_close(got.double(), want, rtol=0, atol=tol, msg=name)
                got = mix_ell(X, ell, block)
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
    ell = ell_plan(W, torch.float64, "cpu", range(lo, hi), ids)
    torch.testing.assert_close(mix_ell(X, ell, 3), want, rtol=0, atol=1e-12)


def test_apply_rows_takes_diagonals_for_large_rows_only() -> None:
    n = 36
    mats = _matrices(n)
    d = 2 * base._DIAG_ROW_BYTES // 8  # above the row-size threshold in float64
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
    assert base._diagonals(ring, range(n), full, torch.float64, torch.device("cpu")) is not None
    # a random graph has too many offsets: CSR
    er = mats["erdos_renyi"]
    assert base._diagonals(er, range(n), full, torch.float64, torch.device("cpu")) is None
    # a 4 x 4 slice stays one dense product
    tiny = topologies.mixing_matrix(topologies.build("ring", 4))
    plan = base._diagonals(tiny, range(4), np.arange(4), torch.float64, torch.device("cpu"))
    assert plan is None


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
    with pytest.raises(ValueError, match="rows"):
        mix_ell(torch.zeros(7, 2), ell_plan(W))
