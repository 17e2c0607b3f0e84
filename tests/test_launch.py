"""``launch/local.sh`` run for real: argument errors, 2 ranks of the CLI, a 2-rank training run."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.mpi_util import REPO_ROOT, requires_mpi

LOCAL_SH = REPO_ROOT / "launch" / "local.sh"


def local_sh(*args: str, timeout: float = 120, cwd: Path | None = None):
    """Run ``launch/local.sh args...`` with this interpreter's venv; kill it all on timeout."""
    env = dict(os.environ)
    if sys.prefix != sys.base_prefix:
        env["VIRTUAL_ENV"] = sys.prefix
    path = env.get("PYTHONPATH", "")
    env["PYTHONPATH"] = str(REPO_ROOT) + (os.pathsep + path if path else "")
    proc = subprocess.Popen(
        ["bash", str(LOCAL_SH), *args], cwd=str(cwd or REPO_ROOT), env=env, text=True,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True,
    )
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
        pytest.fail(f"launch/local.sh {' '.join(args)} timed out\n{out}\n{err}")
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


@pytest.mark.parametrize("args", [(), ("two", "--version"), ("0", "--version"), ("-1",)])
def test_bad_rank_count_exits_2_with_usage(args):
    proc = local_sh(*args, timeout=30)
    assert proc.returncode == 2
    assert proc.stderr.startswith("usage: launch/local.sh NPROCS")
    assert proc.stdout == ""


@requires_mpi
def test_two_ranks_of_the_cli():
    from gossip import __version__

    proc = local_sh("2", "--version", timeout=90)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.splitlines() == [f"gossip {__version__}"] * 2


@requires_mpi
def test_two_rank_training_run(tmp_path):
    proc = local_sh(
        "2", "train", "--set", "problem.name=quadratic", "--set", "rounds=5", "--set", "nodes=4",
        "--set", "eval_every=5", "--out", str(tmp_path), "--name", "launch", "--quiet",
        timeout=180, cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    run_dir = tmp_path / "launch"
    assert proc.stdout.split() == [str(run_dir)]
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["status"] == "finished" and summary["world_size"] == 2
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [r["round"] for r in records] == [5]
    assert records[0]["bytes_sent"] > 0


def test_the_launch_environment_has_one_definition(tmp_path):
    """What local.sh exports is gossip.runner.launch_env.mpi_env; variables already set are kept."""
    from gossip.runner.launch_env import MPI_DEFAULTS, mpi_env

    base = {"PATH": os.environ["PATH"], "HOME": str(tmp_path), "OMP_NUM_THREADS": "3"}
    script = f'eval "$({sys.executable} -m gossip.runner.launch_env)"; env'
    proc = subprocess.run(["bash", "-c", script], env={**base, "PYTHONPATH": str(REPO_ROOT)},
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    got = dict(line.split("=", 1) for line in proc.stdout.splitlines() if "=" in line)
    want = mpi_env({**base, "PYTHONPATH": str(REPO_ROOT)})
    for key in [*MPI_DEFAULTS, "PYTHONPATH"]:
        assert got[key] == want[key], key
    assert got["OMP_NUM_THREADS"] == "3" and got["OMPI_ALLOW_RUN_AS_ROOT"] == "1"
    assert got["PYTHONPATH"] == str(REPO_ROOT)
    assert "gossip.runner.launch_env" in LOCAL_SH.read_text()
