"""Running code under ``mpiexec`` from tests.

Use from any test::

    from tests.mpi_util import json_lines, requires_mpi, run_mpi

    @requires_mpi
    def test_something():
        proc = run_mpi(2, ["-m", "gossip", "train", "--set", "nodes=4"], timeout=60)
        assert proc.returncode == 0, proc.stdout + proc.stderr

``run_mpi`` starts ``mpiexec -n P <this python> args...`` with the environment of every
``mpiexec`` start (:func:`gossip.runner.launch_env.mpi_env`: root allowed, oversubscription allowed,
one OpenMP thread per rank, the repository first on ``PYTHONPATH``), captures stdout and
stderr, and on timeout kills the whole process group (mpiexec and every rank) and fails the
test with what was printed so far: a hung collective fails in ``timeout`` seconds instead of
hanging the suite.

MPI tests must run wherever MPI is installed (CI installs it): ``mpi_available()`` is true
whenever ``mpi4py`` imports and an ``mpiexec`` is found next to ``sys.executable`` or on
``PATH``.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from gossip.runner.launch_env import mpi_env

__all__ = ["REPO_ROOT", "json_lines", "mpi_available", "mpiexec", "requires_mpi"]
__all__ += ["run_mpi"]

REPO_ROOT = Path(__file__).resolve().parent.parent



def mpiexec() -> str | None:
    """Path of ``mpiexec``: the one next to ``sys.executable`` (a venv's Open MPI wheel), else
    the first on ``PATH``, else ``None``."""
    local = Path(sys.executable).parent / "mpiexec"
    if local.is_file() and os.access(local, os.X_OK):
        return str(local)
    return shutil.which("mpiexec")


def mpi_available() -> bool:
    """Whether MPI tests can run here: ``mpi4py`` is installed and ``mpiexec`` is found."""
    return importlib.util.find_spec("mpi4py") is not None and mpiexec() is not None


requires_mpi = pytest.mark.skipif(
    not mpi_available(), reason="MPI tests need mpi4py and mpiexec (pip install '.[mpi]')"
)


def run_mpi(
    nprocs: int,
    args: list[str],
    *,
    timeout: float = 120,
    env: dict[str, str] | None = None,
    cwd: str | os.PathLike | None = None,
) -> subprocess.CompletedProcess:
    """Run ``mpiexec -n nprocs <sys.executable> *args`` and return the finished process.

    Parameters
    ----------
    nprocs : int
        Number of MPI ranks.
    args : list of str
        Arguments to the Python interpreter: a script path and its arguments, or
        ``["-m", "module", ...]``.
    timeout : float
        Seconds before the whole process group is killed and the test fails (with the output
        captured so far in the failure message).
    env : dict, optional
        Extra environment variables (override the defaults above and the current ones).
    cwd : path, optional
        Working directory (default: the repository root).

    Returns
    -------
    subprocess.CompletedProcess
        With ``returncode``, ``stdout`` and ``stderr`` (text). A non-zero exit is *not* an
        error here: check ``returncode`` yourself (tests of failures expect one).
    """
    launcher = mpiexec()
    if launcher is None:
        pytest.fail("mpiexec not found next to sys.executable or on PATH")
    full_env = mpi_env()
    full_env.update(env or {})
    cmd = [launcher, "-n", str(nprocs), sys.executable, *map(str, args)]
    proc = subprocess.Popen(
        cmd,
        cwd=str(cwd or REPO_ROOT),
        env=full_env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        out, err = proc.communicate()
        pytest.fail(
            f"mpiexec -n {nprocs} timed out after {timeout} s: {' '.join(cmd)}\n"
            f"--- stdout ---\n{out}\n--- stderr ---\n{err}"
        )
    return subprocess.CompletedProcess(cmd, proc.returncode, out, err)


def json_lines(text: str) -> list[dict]:
    """Every line of ``text`` that is a JSON object, parsed (other lines are skipped)."""
    found = []
    for line in text.splitlines():
        line = line.strip()
        if line.startswith("{") and line.endswith("}"):
            try:
                found.append(json.loads(line))
            except json.JSONDecodeError:
                continue
    return found
