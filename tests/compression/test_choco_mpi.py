"""CHOCO under ``mpiexec -n 4`` (uneven blocks of a ring of 10) equals the in-process run for
every operator, and the bytes equal each operator's formula: with one node per rank (ring of
4), the bytes handed to MPI are exactly ``messages x`` the hand-written wire size of a row."""

from __future__ import annotations

from pathlib import Path

from gossip.compression import compressor_names
from tests.mpi_util import json_lines, requires_mpi, run_mpi

CHECK = Path(__file__).with_name("mpi_check_choco.py")


@requires_mpi
def test_choco_mpi_equals_in_process_and_bytes_match_formula():
    proc = run_mpi(4, [CHECK], timeout=180)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    lines = [r for r in json_lines(proc.stdout) if "name" in r]
    wire = [r for r in json_lines(proc.stdout) if "wire" in r]
    assert {r["name"] for r in lines} == set(compressor_names())  # every registered operator
    for r in lines:
        assert r["max_diff"] < 1e-5, r
        assert r["bytes_sent"] == r["local_bytes_sent"] == r["expected_bytes"], r
        # what crossed ranks is whole encoded rows: a positive multiple of the formula
        assert r["mpi_bytes_sent"] > 0 and r["mpi_bytes_sent"] % r["row_bytes"] == 0, r
    (tune,) = [r for r in json_lines(proc.stdout) if "tune" in r]
    assert tune["tune"] == [tune["tune_local"]], tune  # the same gamma on every rank
    assert {r["wire"] for r in wire} == {r["name"] for r in lines}
    for r in wire:
        assert r["operator_row_bytes"] == r["formula_row_bytes"], r
        assert r["messages"] == 8, r  # ring of 4: two neighbours each
        assert r["mpi_bytes_sent"] == r["bytes_sent"] == 8 * r["formula_row_bytes"], r
