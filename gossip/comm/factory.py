"""Choosing the communicator: in process, or over MPI when started by ``mpiexec``.

``make_comm(n)`` returns :class:`~gossip.comm.local.LocalComm` for a plain ``python`` /
``gossip`` start and :class:`~gossip.comm.mpi.MPIComm` under ``mpiexec -n P`` with ``P > 1``.
``mpi4py`` is imported only when a launcher's environment says more than one process may be
involved, so single-process runs never initialise MPI.

``install_abort_handler(comm)`` makes an uncaught exception on any rank end the whole run:
without it, the other ranks would wait forever in their next collective.
"""

from __future__ import annotations

import os
import sys
import traceback

from gossip.comm.base import Communicator
from gossip.errors import GossipError, TopologyError

__all__ = ["SIZE_VARIABLES", "install_abort_handler", "launch_rank", "launched_by_mpi",
           "make_comm"]

# Launcher variables that give the world size: Open MPI, MPICH / Intel MPI (Hydra), PMI-1/2,
# MVAPICH, SLURM's srun with PMI.
SIZE_VARIABLES = (
    "OMPI_COMM_WORLD_SIZE",
    "PMI_SIZE",
    "MPI_LOCALNRANKS",
    "MV2_COMM_WORLD_SIZE",
    "PMIX_SIZE",
)
# Variables set by a launcher that does not give the size (PMIx): more than one rank possible.
_RANK_VARIABLES = ("PMIX_RANK", "PMI_RANK", "OMPI_COMM_WORLD_RANK")


def launched_by_mpi(environ: dict[str, str] | None = None) -> bool:
    """Whether this process was started by an MPI launcher with possibly more than one rank.

    A world size in the environment (``OMPI_COMM_WORLD_SIZE``, ``PMI_SIZE``,
    ``MPI_LOCALNRANKS``, ...) decides: true when it is above 1. Without one, a launcher's rank
    variable (``PMIX_RANK``, ``PMI_RANK``) means ranks may exist, so true. Else false.
    """
    env = os.environ if environ is None else environ
    for name in SIZE_VARIABLES:
        value = env.get(name, "").strip()
        if value:
            try:
                return int(value) > 1
            except ValueError:
                continue
    return any(env.get(name, "").strip() for name in _RANK_VARIABLES)


def launch_rank(environ: dict[str, str] | None = None) -> int:
    """This process's rank as its launcher's environment gives it (0 when there is none).

    Read without initialising MPI, so a configuration error found before the communicator
    exists is still printed by rank 0 alone (:func:`gossip.cli.main`).

    >>> launch_rank({"OMPI_COMM_WORLD_RANK": "3"}), launch_rank({})
    (3, 0)
    """
    env = os.environ if environ is None else environ
    for name in _RANK_VARIABLES:
        value = env.get(name, "").strip()
        if value.isdigit():
            return int(value)
    return 0


def make_comm(n: int) -> Communicator:
    """The communicator for ``n`` nodes in this launch.

    ``LocalComm(n)`` when not launched by ``mpiexec`` or when the MPI world has one rank;
    otherwise ``MPIComm(n)`` (a :class:`~gossip.errors.ConfigError` when there are more ranks
    than nodes). Torch threads are the run's business
    (:func:`gossip.runner.launch_env.torch_threads`).
    """
    from gossip.comm.local import LocalComm

    if not launched_by_mpi():
        return LocalComm(n)
    from mpi4py import MPI

    if MPI.COMM_WORLD.Get_size() == 1:
        return LocalComm(n)
    from gossip.comm.mpi import MPIComm

    return MPIComm(n)


def install_abort_handler(comm: Communicator):
    """Make an uncaught exception on this rank end every rank of the run, non-zero.

    Installs a ``sys.excepthook`` that prints the error, prefixed with the rank (the one-line
    message of a :class:`~gossip.errors.GossipError` or ``TopologyError``, else the full
    traceback), and calls
    ``comm.abort`` with exit code 2 for user mistakes, 130 for an interrupt and 1 for bugs.
    With one process it only prints (the interpreter then exits with 1). Returns the previous
    hook.
    """
    previous = sys.excepthook

    def hook(kind, value, tb) -> None:
        if isinstance(value, (GossipError, TopologyError)):
            message, code = f"error: {value}", 2
        elif issubclass(kind, KeyboardInterrupt):
            message, code = "interrupted", 130
        else:
            message, code = "".join(traceback.format_exception(kind, value, tb)).rstrip(), 1
        if comm.size == 1:
            print(message, file=sys.stderr, flush=True)
            return
        comm.abort(f"[rank {comm.rank}/{comm.size}] {message}", code)

    sys.excepthook = hook
    return previous
