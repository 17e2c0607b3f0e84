"""The classification problem under ``mpiexec -n 2`` gives the in-process numbers."""

import importlib.util
from pathlib import Path

import pytest

from tests.mpi_util import json_lines, requires_mpi, run_mpi

SCRIPT = Path(__file__).with_name("classification_mpi_script.py")


@requires_mpi
def test_mpi_equals_in_process():
    spec = importlib.util.spec_from_file_location("classification_mpi_script", SCRIPT)
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    local = script.main("local")
    proc = run_mpi(2, [SCRIPT, "mpi"], timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    (mpi,) = json_lines(proc.stdout)
    assert mpi["losses"] == pytest.approx(local["losses"], rel=1e-5)
    assert mpi["X"] == pytest.approx(local["X"], rel=1e-5, abs=1e-5)
    for key, value in local["metrics"].items():
        assert mpi["metrics"][key] == pytest.approx(value, rel=1e-5, abs=1e-6), key
