"""Communicators: in process (:class:`LocalComm`) and over MPI (``gossip.comm.mpi.MPIComm``).

``MPIComm`` is imported only on demand (``make_comm`` under ``mpiexec``), so importing this
package never loads mpi4py.
"""

from gossip.comm.base import CommStats, Communicator, Payload
from gossip.comm.factory import install_abort_handler, launched_by_mpi, make_comm
from gossip.comm.local import LocalComm
from gossip.comm.mixing import apply_rows, senders_to

__all__ = [
    "CommStats",
    "Communicator",
    "LocalComm",
    "Payload",
    "apply_rows",
    "install_abort_handler",
    "launched_by_mpi",
    "make_comm",
    "senders_to",
]
