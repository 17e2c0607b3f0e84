"""Devices under MPI: which GPU a rank uses, and how tensors reach MPI's buffers.

Rank -> GPU binding: ranks on one host are numbered by their *node-local* rank (the rank in
the ``MPI.COMM_TYPE_SHARED`` split of the communicator) and rank ``l`` takes GPU
``l mod device_count``, so 8 ranks on a 4-GPU host put two ranks on each GPU.

Buffers: the communicator packs every message into one contiguous ``uint8`` tensor on the
payload's device. MPI may read a CUDA buffer only when the library reports CUDA support
(``MPI.Query_cuda_support()``, mpi4py >= 4 built against an MPI that has it); otherwise the
bytes are *staged*: copied into pinned host memory before sending, and received bytes are
copied back to the tensor's device after receiving. A CUDA pointer is never handed to mpi4py
unless CUDA support is reported.
"""

from __future__ import annotations

import torch

from gossip.errors import ConfigError

__all__ = [
    "DEVICE_SPECS",
    "cuda_aware",
    "local_rank",
    "mpi_view",
    "pick_device",
    "recv_buffer",
    "send_buffer",
    "to_device",
    "upload",
]

DEVICE_SPECS = ("auto", "cpu", "cuda")


def cuda_aware(MPI) -> bool:
    """Whether the MPI library behind ``MPI`` (the ``mpi4py.MPI`` module) accepts CUDA buffers.

    True only when ``MPI.Query_cuda_support()`` exists and returns true; any MPI that cannot
    say so is treated as host-only, so CUDA tensors are staged through host memory.
    """
    query = getattr(MPI, "Query_cuda_support", None)
    if query is None:
        return False
    try:
        return bool(query())
    except Exception:  # an MPI without the MPIX extension raises instead of saying no
        return False


def local_rank(comm) -> int:
    """This process's rank among the processes of its host (``COMM_TYPE_SHARED`` split).

    ``comm`` is an ``mpi4py`` communicator (or an object whose ``.mpi`` is one, such as
    :class:`gossip.comm.mpi.MPIComm`). Collective over ``comm``.
    """
    from mpi4py import MPI

    mpi_comm = getattr(comm, "mpi", comm)
    shared = mpi_comm.Split_type(MPI.COMM_TYPE_SHARED)
    try:
        return int(shared.Get_rank())
    finally:
        shared.Free()


def pick_device(spec: str, local_rank: int = 0) -> torch.device:
    """The torch device for a process with node-local rank ``local_rank``.

    ``"cpu"``: the CPU. ``"cuda"``: GPU ``local_rank mod device_count``; a
    :class:`~gossip.errors.ConfigError` when CUDA is not available. ``"auto"``: that GPU when
    CUDA is available, else the CPU.
    """
    if spec not in DEVICE_SPECS:
        raise ConfigError(f"unknown device {spec!r}; allowed: {', '.join(DEVICE_SPECS)}")
    if local_rank < 0:
        raise ConfigError(f"local rank must be >= 0, got {local_rank}")
    if spec == "cpu":
        return torch.device("cpu")
    if not torch.cuda.is_available():
        if spec == "cuda":
            raise ConfigError("device='cuda' but CUDA is not available; use device='cpu' or 'auto'")
        return torch.device("cpu")
    return torch.device("cuda", local_rank % torch.cuda.device_count())


def send_buffer(buf: torch.Tensor, aware: bool) -> torch.Tensor:
    """The tensor MPI reads when sending ``buf``: ``buf`` itself, or a pinned host copy.

    A CPU tensor is returned as is. A CUDA tensor is returned as is (after its stream is
    synchronised, so the packing kernels are done) when MPI is CUDA-aware, else copied into
    pinned host memory.
    """
    if buf.device.type != "cuda":
        return buf
    if aware:
        torch.cuda.current_stream(buf.device).synchronize()
        return buf
    host = torch.empty(buf.shape, dtype=buf.dtype, pin_memory=True)
    host.copy_(buf)
    return host


def recv_buffer(nbytes: int, device: torch.device, aware: bool) -> torch.Tensor:
    """An empty ``uint8`` buffer of ``nbytes`` that MPI may write into for data bound to
    ``device``: on the device when it is CPU or MPI is CUDA-aware, else in pinned host memory."""
    device = torch.device(device)
    if device.type != "cuda":
        return torch.empty(nbytes, dtype=torch.uint8)
    if aware:
        return torch.empty(nbytes, dtype=torch.uint8, device=device)
    return torch.empty(nbytes, dtype=torch.uint8, pin_memory=True)


def upload(t: torch.Tensor, device: torch.device) -> torch.Tensor:
    """The CPU tensor ``t`` on ``device`` without making the host wait for the GPU.

    A plain ``t.to(cuda)`` from pageable memory synchronises the stream (the host waits until
    the GPU has done all queued work); a copy from pinned memory with ``non_blocking=True`` is
    queued like a kernel. The pinned staging copy comes from torch's caching host allocator,
    which keeps it alive until the queued copy has read it. On the CPU ``t`` itself is returned.
    """
    device = torch.device(device)
    if device.type != "cuda":
        return t.to(device)
    return t.pin_memory().to(device, non_blocking=True)


def to_device(t: torch.Tensor, device: torch.device) -> torch.Tensor:
    """``t`` on ``device`` (a copy when it lives elsewhere; ``t`` itself otherwise)."""
    return t.to(device)


def mpi_view(buf: torch.Tensor):
    """What to hand to mpi4py for the bytes of ``buf``: a NumPy view of a CPU tensor, or the
    CUDA tensor itself (mpi4py reads its ``__cuda_array_interface__``; only when CUDA-aware)."""
    return buf.numpy() if buf.device.type == "cpu" else buf
