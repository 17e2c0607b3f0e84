"""The launch environment: what ``mpiexec`` needs, and how many torch threads a process uses.

:func:`mpi_env` is the one definition of the environment every ``mpiexec`` start of this
project gets (``launch/local.sh``, ``gossip sweep --mpi``, the MPI tests, the benchmarks):

- ``OMPI_ALLOW_RUN_AS_ROOT=1``, ``OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1``: Open MPI runs as root
  (containers);
- ``PRTE_MCA_rmaps_default_mapping_policy=:oversubscribe`` (Open MPI 5 / PRRTE) and
  ``OMPI_MCA_rmaps_base_oversubscribe=1`` (Open MPI 4): more ranks than cores;
- ``OMP_NUM_THREADS=1``: one thread per rank (several threads per rank make rounds 30-40x
  slower when ranks share cores);
- the repository first on ``PYTHONPATH``, so every rank imports this checkout.

A variable already set in the caller's environment keeps its value. ``python -m
gossip.runner.launch_env`` prints the variables as ``export`` lines for a shell (``launch/local.sh``
evaluates them).

:func:`torch_threads` is the one rule for torch's intra-op threads of a run (the ``threads``
key): a positive ``threads`` is used as given; ``threads = 0`` (the default) takes
``OMP_NUM_THREADS`` when it is set (the SLURM recipe sets it to the CPUs per task), else 1.

Examples
--------
>>> env = mpi_env({"OMP_NUM_THREADS": "4"})
>>> env["OMP_NUM_THREADS"], env["OMPI_ALLOW_RUN_AS_ROOT"]
('4', '1')
>>> torch_threads(0, {}), torch_threads(0, {"OMP_NUM_THREADS": "8"}), torch_threads(2, {})
(1, 8, 2)
"""

from __future__ import annotations

import os
import shlex
import sys
from collections.abc import Mapping
from pathlib import Path

from gossip.errors import ConfigError

__all__ = ["MPI_DEFAULTS", "REPO_ROOT", "mpi_env", "shell_exports", "torch_threads"]

#: The folder that holds the ``gossip`` package (the repository in a checkout).
REPO_ROOT = Path(__file__).resolve().parents[2]

#: Variables every ``mpiexec`` start gets unless the caller's environment sets them.
MPI_DEFAULTS: dict[str, str] = {
    "OMPI_ALLOW_RUN_AS_ROOT": "1",
    "OMPI_ALLOW_RUN_AS_ROOT_CONFIRM": "1",
    "PRTE_MCA_rmaps_default_mapping_policy": ":oversubscribe",
    "OMPI_MCA_rmaps_base_oversubscribe": "1",
    "OMP_NUM_THREADS": "1",
}


def mpi_env(base: Mapping[str, str] | None = None) -> dict[str, str]:
    """``base`` (default ``os.environ``) plus :data:`MPI_DEFAULTS` where unset, with
    :data:`REPO_ROOT` first on ``PYTHONPATH``: the environment for ``mpiexec``."""
    env = dict(os.environ if base is None else base)
    for key, value in MPI_DEFAULTS.items():
        env.setdefault(key, value)
    root = str(REPO_ROOT)
    rest = [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p and p != root]
    env["PYTHONPATH"] = os.pathsep.join([root, *rest])
    return env


def shell_exports(base: Mapping[str, str] | None = None) -> str:
    """The variables :func:`mpi_env` sets or changes, as ``export KEY=VALUE`` lines."""
    before = dict(os.environ if base is None else base)
    env = mpi_env(before)
    keys = [*MPI_DEFAULTS, "PYTHONPATH"]
    return "\n".join(f"export {k}={shlex.quote(env[k])}" for k in keys if before.get(k) != env[k])


def torch_threads(threads: int, environ: Mapping[str, str] | None = None) -> int:
    """Torch threads of a run: ``threads`` when positive, else ``OMP_NUM_THREADS`` when set
    (its first entry: ``"4,2"`` means 4), else 1.

    Raises
    ------
    ConfigError
        ``OMP_NUM_THREADS`` is set but not a positive integer.
    """
    if threads > 0:
        return threads
    env = os.environ if environ is None else environ
    text = env.get("OMP_NUM_THREADS", "").strip()
    if not text:
        return 1
    first = text.split(",")[0].strip()
    if not first.isdigit() or int(first) < 1:
        raise ConfigError(
            f"OMP_NUM_THREADS={text!r} is not a positive integer; set it to one, or set "
            "threads=N in the config"
        )
    return int(first)


if __name__ == "__main__":
    print(shell_exports())
    sys.exit(0)
