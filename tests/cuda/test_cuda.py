"""``device=cuda`` against the CPU: block gradients, the mix, a short D-SGD run, MPI staging.

Every test is marked ``cuda`` (``pytest -m cuda`` selects them; ``benchmarks/gpu_check.sh``
runs them) and skipped where ``torch.cuda.is_available()`` is false. The CPU computes the
reference; CUDA must agree to float64 rounding (1e-10 relative) in float64 and to float32
rounding where the block is float32. The MPI tests stage every message through pinned host
memory when the MPI library is not CUDA-aware (:mod:`gossip.comm.device`).
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

import topologies
from gossip.comm import device as dev
from gossip.comm.local import LocalComm
from gossip.config import load_config
from gossip.models import make_model, model_vector
from gossip.problems.classification.backends import fused_grads, loop_grads, vectorized_grads
from gossip.runner.loop import TrainingDiverged, run
from gossip.runner.rundir import read_metrics
from tests.mpi_util import json_lines, requires_mpi, run_mpi

pytestmark = [
    pytest.mark.cuda,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA (torch.cuda)"),
]

CLOCKS = ("wall_time", "compute_time", "comm_time")


def _block(n: int, dtype: torch.dtype, device: str):
    torch.manual_seed(0)
    model = make_model("mlp", (1, 8, 8), 10, {"hidden": [16, 12]}).to(dtype)
    g = torch.Generator().manual_seed(1)
    x0 = model_vector(model).detach()
    X = x0 + 0.1 * torch.randn(n, x0.numel(), generator=g, dtype=dtype)
    bx = torch.randn(n, 5, 1, 8, 8, generator=g, dtype=dtype)
    by = torch.randint(0, 10, (n, 5), generator=g)
    return model.to(device), X.to(device), bx.to(device), by.to(device)


@pytest.mark.parametrize("grads", [fused_grads, vectorized_grads, loop_grads])
@pytest.mark.parametrize(("dtype", "rtol"), [(torch.float64, 1e-10), (torch.float32, 1e-4)])
def test_block_gradients_equal_cpu(grads, dtype, rtol) -> None:
    cpu = grads(*_block(6, dtype, "cpu"))
    gpu = grads(*_block(6, dtype, "cuda"))
    for want, got in zip(cpu, gpu, strict=True):
        assert got.device.type == "cuda" and got.dtype == want.dtype
        scale = want.abs().max()
        assert torch.allclose(got.cpu(), want, rtol=0, atol=rtol * scale), grads.__name__


@pytest.mark.parametrize("graph", ["ring", "torus", "erdos_renyi", "complete"])
@pytest.mark.parametrize("d", [7, 70_000])  # small rows (dense/CSR) and large rows
def test_mix_equals_cpu(graph: str, d: int) -> None:
    n = 16
    W = topologies.mixing_matrix(topologies.build(graph, n))
    X = torch.randn(n, d, dtype=torch.float64, generator=torch.Generator().manual_seed(d))
    want = LocalComm(n).mix(X, W)
    got = LocalComm(n).mix(X.cuda(), W)
    assert got.device.type == "cuda"
    assert torch.allclose(got.cpu(), want, rtol=0, atol=1e-12)
    # float32 blocks are summed in float64 and rounded once on both devices: one ulp at most
    got32 = LocalComm(n).mix(X.float().cuda(), W).cpu()
    want32 = LocalComm(n).mix(X.float(), W)
    assert torch.allclose(got32, want32, rtol=2**-23, atol=0)


def _json(path: Path) -> dict:
    return json.loads(path.read_text())


def _records(tmp_path: Path, name: str, overrides: list[str]) -> list[dict]:
    config = load_config(None, [*overrides, f"out='{tmp_path}'", f"name='{name}'"])
    run(config, quiet=True)
    return read_metrics(tmp_path / name)


def _assert_close(cpu: list[dict], gpu: list[dict], rel: float) -> None:
    assert [r["round"] for r in cpu] == [r["round"] for r in gpu]
    for a, b in zip(cpu, gpu, strict=True):
        assert set(a) == set(b)
        for key, x in a.items():
            if key in CLOCKS:
                continue
            if isinstance(x, float):
                assert math.isclose(x, b[key], rel_tol=rel, abs_tol=1e-9), (a["round"], key)
            else:
                assert x == b[key], (a["round"], key)


DSGD_QUADRATIC = ["problem.name=quadratic", "nodes=8", "problem.dim=6", "rounds=40",
                  "eval_every=10", "dtype=float64"]
DSGD_MLP = ["problem.dataset=synthetic", "nodes=4", "rounds=20", "eval_every=10",
            "dtype=float64"]


@pytest.mark.parametrize("overrides", [DSGD_QUADRATIC, DSGD_MLP], ids=["quadratic", "mlp"])
def test_dsgd_run_equals_cpu(tmp_path: Path, overrides: list[str]) -> None:
    cpu = _records(tmp_path, "on-cpu", [*overrides, "device='cpu'"])
    gpu = _records(tmp_path, "on-gpu", [*overrides, "device='cuda'"])
    _assert_close(cpu, gpu, 1e-9)


def test_divergence_found_at_the_same_round_as_on_cpu(tmp_path: Path) -> None:
    # on the GPU in one process the losses are read at the next flush (round_losses.py)
    diverging = [*DSGD_QUADRATIC, "rounds=400", "eval_every=50", "algorithm.lr=5.0",
                 "dtype=float32"]
    messages = []
    for where in ("cpu", "cuda"):
        config = load_config(None, [*diverging, f"device='{where}'", f"out='{tmp_path}'",
                                    f"name='nan-{where}'"])
        with pytest.raises(TrainingDiverged) as info:
            run(config, quiet=True)
        messages.append(str(info.value).replace(f"nan-{where}", "RUN"))
    assert messages[0] == messages[1]
    cpu, gpu = (_json(tmp_path / f"nan-{w}" / "summary.json") for w in ("cpu", "cuda"))
    assert cpu["rounds_done"] == gpu["rounds_done"] and gpu["status"] == "diverged"


def test_pinned_staging_buffers() -> None:
    x = torch.arange(12, dtype=torch.uint8, device="cuda")
    host = dev.send_buffer(x, aware=False)
    assert host.device.type == "cpu" and host.is_pinned() and torch.equal(host, x.cpu())
    assert dev.send_buffer(x, aware=True) is x
    recv = dev.recv_buffer(5, torch.device("cuda"), aware=False)
    assert recv.device.type == "cpu" and recv.is_pinned() and recv.numel() == 5
    assert dev.recv_buffer(5, torch.device("cuda"), aware=True).device.type == "cuda"


@requires_mpi
def test_mpicomm_on_cuda_blocks_equals_localcomm() -> None:
    script = Path(__file__).with_name("mpi_check_cuda.py")
    proc = run_mpi(2, [str(script), "--nodes", "7"], timeout=180)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    (report,) = json_lines(proc.stdout)
    assert report["failures"] == [] and report["size"] == 2 and report["checks"] > 30


@requires_mpi
def test_train_under_mpi_on_cuda_equals_in_process(tmp_path: Path) -> None:
    gpu = _records(tmp_path, "local", [*DSGD_QUADRATIC, "device='cuda'"])
    args = ["-m", "gossip", "train", "--quiet", "--out", str(tmp_path), "--name", "mpi"]
    args += [a for o in [*DSGD_QUADRATIC, "device='cuda'"] for a in ("--set", o)]
    proc = run_mpi(2, args, timeout=180)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    _assert_close(gpu, read_metrics(tmp_path / "mpi"), 1e-9)
