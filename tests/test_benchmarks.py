"""Smoke tests of the benchmark scripts: each runs in ``--quick`` mode and writes its results.

No timing is asserted: a benchmark's numbers depend on the machine. What is checked is that the
script exits 0, prints its table, and writes a JSON file with the expected columns in every row
and a Markdown file holding the same table; plus exact properties of the helpers (the
hand-written MLP gradients equal autograd's, the alternative mixing formulations equal
``W @ X``).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from gossip.runner.launch_env import mpi_env
from tests.mpi_util import REPO_ROOT, requires_mpi

BENCH = REPO_ROOT / "benchmarks"


def _run(script: str, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(BENCH / script), *args],
        cwd=str(REPO_ROOT),
        env=mpi_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def _results(out: Path, name: str) -> dict:
    doc = json.loads((out / f"{name}.json").read_text())
    md = (out / f"{name}.md").read_text()
    header = "| " + " | ".join(doc["columns"]) + " |"
    assert header in md
    assert len(doc["rows"]) >= 1
    for key in ("cpu", "cores", "torch", "threads", "date", "command"):
        assert key in doc["machine"]
    return doc


def _measured(doc: dict) -> list[dict]:
    """Rows that carry numbers (rows with a ``note`` say why a mode did not run)."""
    rows = [r for r in doc["rows"] if "note" not in r]
    for r in rows:
        assert set(doc["columns"]) <= set(r)
    return rows


def test_bmm_grads_equal_autograd() -> None:
    sys.path.insert(0, str(REPO_ROOT))
    from benchmarks.simulation import _setup, bmm_grads
    from gossip.problems.classification.backends import vectorized_grads

    model, X, bx, by = _setup(3, "cpu")
    model, X, bx = model.double(), X.double(), bx.double()
    G, losses = bmm_grads(X, bx, by)
    G2, losses2 = vectorized_grads(model, X, bx, by)
    torch.testing.assert_close(G, G2, rtol=1e-12, atol=1e-14)
    torch.testing.assert_close(losses, losses2, rtol=1e-12, atol=1e-14)


@requires_mpi
def test_simulation_quick(tmp_path: Path) -> None:
    proc = _run("simulation.py", "--quick", "--sizes", "4", "--ranks", "2", "--out", str(tmp_path))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "| mode | n |" in proc.stdout
    doc = _results(tmp_path, "simulation-cpu")
    rows = _measured(doc)
    assert {r["mode"] for r in rows} == {"vmap", "fused", "bmm", "loop", "vmap+mix", "mpi"}
    assert all(r["node_steps_per_s"] > 0 for r in rows)
    for r in rows:
        assert r["node_steps_per_s"] == pytest.approx(r["n"] / (r["ms_per_step"] / 1e3))
    assert doc["speedups"]["vmap_over_loop"] > 0 and doc["speedups"]["fused_over_loop"] > 0
    assert doc["machine"]["threads"] == 1


@pytest.mark.parametrize(
    "topology,n",
    [("ring", 5), ("ring", 16), ("torus", 16), ("exponential", 12), ("torus", 9),
     ("random_matching", 9), ("erdos_renyi", 16)],
)
def test_mixing_formulations_equal_W_times_X(topology: str, n: int) -> None:
    sys.path.insert(0, str(REPO_ROOT))
    from benchmarks.mixing import METHODS, ell_plan, methods, mix_ell, mix_rolls, schedule_of
    from gossip.comm.mixing_ops import diagonal_plan, mix_diagonals

    schedule = schedule_of(topology, n)
    W = schedule.matrix(0)
    X = torch.randn(n, 7, generator=torch.Generator().manual_seed(n), dtype=torch.float64)
    expected = torch.from_numpy(W @ X.numpy())
    plan = diagonal_plan(W, X.dtype, X.device)
    assert {k for k, _ in plan.dense} >= {0}
    for block in (None, 1, 3, n):
        torch.testing.assert_close(mix_diagonals(X, plan, block), expected, rtol=0, atol=1e-12)
    torch.testing.assert_close(mix_rolls(X, plan), expected, rtol=0, atol=1e-12)
    ell = ell_plan(W, X.dtype)
    for block in (None, 0, 1, 3):
        torch.testing.assert_close(mix_ell(X, ell, block), expected, rtol=0, atol=1e-12)
    found = methods(schedule, X, extra=True)
    assert set(found) == {"_reference", "ell", *METHODS}
    for name, fn in found.items():
        if fn is not None:
            for _ in range(2):  # comm.mix and apply_rows take W(t) afresh on every call
                got = fn().double()
                torch.testing.assert_close(got, expected, rtol=0, atol=1e-12, msg=name)


def test_ell_of_any_matrix() -> None:
    import numpy as np
    import scipy.sparse as sp

    sys.path.insert(0, str(REPO_ROOT))
    from benchmarks.mixing import ell_plan, mix_ell

    rng = np.random.default_rng(0)
    for n, density in [(1, 1.0), (7, 0.0), (12, 0.3), (20, 0.6)]:
        W = sp.csr_array(sp.random_array((n, n), density=density, rng=rng))
        X = torch.from_numpy(rng.standard_normal((n, 4)))
        want = torch.from_numpy(W @ X.numpy())
        torch.testing.assert_close(mix_ell(X, ell_plan(W, X.dtype), 3), want, rtol=0, atol=1e-12)
    with pytest.raises(ValueError, match="rows"):
        mix_ell(torch.zeros(5, 2), ell_plan(sp.eye_array(6), torch.float32))


def test_mixing_quick(tmp_path: Path) -> None:
    proc = _run("mixing.py", "--quick", "--sizes", "9", "--dims", "1000", "--out", str(tmp_path))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    doc = _results(tmp_path, "mixing-cpu")
    rows = _measured(doc)
    assert {r["topology"] for r in rows} == {"ring", "torus", "exponential"}
    for t in ("ring", "torus", "exponential"):
        methods = {r["method"] for r in rows if r["topology"] == t}
        assert methods == {
            "copy (bound)",
            "comm.mix",
            "apply_rows",
            "dense",
            "csr",
            "rolls",
            "diagonals",
            "diagonals blocked",
            "index_add",
        }
    assert all(r["ratio"] == pytest.approx(1.0) for r in rows if r["method"] == "copy (bound)")
    assert len(doc["best"]) == 3


@requires_mpi
def test_mpi_gossip_quick(tmp_path: Path) -> None:
    proc = _run("mpi_gossip.py", "--quick", "--dims", "1000,20000", "--out", str(tmp_path))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    doc = _results(tmp_path, "mpi-gossip-cpu")
    rows = _measured(doc)
    assert [(r["ranks"], r["d"]) for r in rows] == [(2, 1000), (2, 20000)]
    for r in rows:
        assert r["bytes_per_msg"] == 4 * r["d"]
        assert r["ratio"] == pytest.approx(r["mix_ms"] / r["sendrecv_ms"])
