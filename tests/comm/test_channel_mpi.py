"""A dropping or replacing channel gives the same numbers under ``mpiexec -n 2/3`` as in
process (``tests/comm/mpi_check_channel.py``)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.mpi_util import json_lines, requires_mpi, run_mpi

pytestmark = requires_mpi

CHECK = Path(__file__).with_name("mpi_check_channel.py")


@pytest.mark.parametrize("nprocs", [2, 3])
def test_channel_under_mpi_equals_in_process(nprocs: int) -> None:
    proc = run_mpi(nprocs, [str(CHECK)], timeout=240)
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output
    (report,) = json_lines(proc.stdout)
    assert report["failures"] == [], output
    assert report["size"] == nprocs and report["checks"] > 100
    assert report["lost"] > 0  # the channels did drop messages
