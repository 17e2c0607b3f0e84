"""LocalComm against dense linear algebra, and the MPI-free parts of factory and device."""

from __future__ import annotations

import sys

import numpy as np
import pytest
import scipy.sparse as sp
import torch

import topologies
from gossip.comm import device
from gossip.comm.base import payload_bytes, payload_row_bytes
from gossip.comm.factory import install_abort_handler, launched_by_mpi, make_comm
from gossip.comm.local import LocalComm
from gossip.comm.mixing import senders_to
from gossip.errors import ConfigError


def patterns(n: int) -> list[sp.csr_array]:
    rng = np.random.default_rng(n)
    directed = sp.csr_array(sp.random_array((n, n), density=0.3, rng=rng) + sp.eye_array(n))
    sched = topologies.make_schedule("random_matching", n, seed=1)
    return [
        topologies.mixing_matrix(topologies.build("ring", n)),
        topologies.mixing_matrix(topologies.build("erdos_renyi", n, seed=2)),
        directed,
        sched.matrix(0),
        sched.matrix(1),
    ]


@pytest.mark.parametrize("n", [3, 7, 12])
def test_mix_equals_dense_product(n: int) -> None:
    X = torch.randn(n, 3, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(n))
    for W in patterns(n):
        want = torch.from_numpy(W.toarray() @ X.reshape(n, -1).numpy()).reshape(n, 3, 2)
        got = LocalComm(n).mix(X, W)
        assert torch.allclose(got, want, rtol=0, atol=1e-12)


@pytest.mark.parametrize("n", [4, 9])
def test_share_counts_off_diagonal_nonzeros(n: int) -> None:
    payload = (
        torch.zeros(n, 5),
        torch.zeros(n, 3, dtype=torch.uint8),
        torch.zeros(n, 2, dtype=torch.float16),
        torch.zeros(n, dtype=torch.int32),
    )
    row_bytes = 5 * 4 + 3 + 2 * 2 + 4
    assert payload_row_bytes(payload) == row_bytes
    for W in patterns(n):
        comm = LocalComm(n)
        ids, rows = comm.share(payload, W)[:2]
        D = W.toarray() != 0
        off = int((D & ~np.eye(n, dtype=bool)).sum())
        assert comm.stats.messages == off
        assert comm.stats.bytes_sent == off * row_bytes
        assert np.array_equal(ids, np.arange(n)) and rows[0] is payload[0]
        assert np.array_equal(senders_to(W, range(n)), np.arange(n))


def test_senders_to_is_the_column_pattern_of_the_rows() -> None:
    W = patterns(10)[2]
    D = W.toarray() != 0
    for lo, hi in [(0, 3), (3, 6), (8, 10)]:
        want = sorted(set(np.nonzero(D[lo:hi].any(axis=0))[0]) | set(range(lo, hi)))
        assert senders_to(W, range(lo, hi)).tolist() == want


def test_exchange_delivers_every_message_and_counts_sent_bytes() -> None:
    comm = LocalComm(5)
    msgs = {
        (0, 1): (torch.ones(3), torch.zeros(2, dtype=torch.uint8)),
        (1, 0): (torch.ones(2, 2, dtype=torch.float64),),
        (2, 2): (torch.ones(100),),
        (4, 3): (torch.tensor(1.0, dtype=torch.bfloat16),),
    }
    got = comm.exchange(msgs)
    assert got.keys() == msgs.keys()
    assert all(got[k] is msgs[k] for k in msgs)
    assert comm.stats.messages == 3
    assert (
        comm.stats.bytes_sent
        == 12 + 2 + 32 + 2
        == sum(payload_bytes(m) for (s, d), m in msgs.items() if s != d)
    )


def test_collectives_in_process() -> None:
    comm = LocalComm(4)
    X = torch.arange(8.0).reshape(4, 2)
    assert torch.equal(comm.allreduce_sum(X), X) and comm.allreduce_sum(X) is not X
    assert torch.equal(comm.mean_rows(X), torch.tensor([3.0, 4.0]))
    assert torch.equal(comm.allgather_rows(X), X)
    obj = {"a": [1]}
    assert comm.broadcast_object(obj) == obj and comm.broadcast_object(obj) is not obj
    assert comm.total_stats().as_dict() == {"bytes_sent": 0, "mpi_bytes_sent": 0, "messages": 0}


@pytest.mark.parametrize(
    ("env", "want"),
    [
        ({}, False),
        ({"OMPI_COMM_WORLD_SIZE": "1", "PMIX_RANK": "0"}, False),
        ({"OMPI_COMM_WORLD_SIZE": "4"}, True),
        ({"PMI_SIZE": "2"}, True),
        ({"PMI_SIZE": "1"}, False),
        ({"MPI_LOCALNRANKS": "3"}, True),
        ({"PMIX_RANK": "0"}, True),
        ({"OMPI_COMM_WORLD_SIZE": "junk"}, False),
    ],
)
def test_launched_by_mpi(env: dict, want: bool) -> None:
    assert launched_by_mpi(env) is want


def test_make_comm_is_local_without_launcher(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "MPI_LOCALNRANKS", "MV2_COMM_WORLD_SIZE"):
        monkeypatch.delenv(name, raising=False)
    for name in ("PMIX_SIZE", "PMIX_RANK", "PMI_RANK", "OMPI_COMM_WORLD_RANK"):
        monkeypatch.delenv(name, raising=False)
    comm = make_comm(6)
    assert isinstance(comm, LocalComm) and comm.n == 6 and comm.nodes == range(6)


def test_abort_handler_single_process_prints_one_line(capsys: pytest.CaptureFixture) -> None:
    previous = install_abort_handler(LocalComm(2))
    try:
        try:
            raise ConfigError("nodes=0 is not allowed; use nodes >= 1")
        except ConfigError:
            sys.excepthook(*sys.exc_info())
    finally:
        sys.excepthook = previous
    assert capsys.readouterr().err.strip() == "error: nodes=0 is not allowed; use nodes >= 1"


def test_pick_device() -> None:
    assert device.pick_device("cpu", 3) == torch.device("cpu")
    with pytest.raises(ConfigError, match="'gpu'.*auto, cpu, cuda"):
        device.pick_device("gpu")
    with pytest.raises(ConfigError, match="-1"):
        device.pick_device("auto", -1)
    if torch.cuda.is_available():
        k = torch.cuda.device_count()
        assert device.pick_device("cuda", 5) == torch.device("cuda", 5 % k)
        assert device.pick_device("auto", 1) == torch.device("cuda", 1 % k)
    else:
        assert device.pick_device("auto", 1) == torch.device("cpu")
        with pytest.raises(ConfigError, match="CUDA is not available"):
            device.pick_device("cuda", 0)


def test_cpu_buffers_go_to_mpi_without_copies() -> None:
    buf = torch.arange(10, dtype=torch.uint8)
    sent = device.send_buffer(buf, aware=False)
    assert sent is buf
    view = device.mpi_view(sent)
    assert isinstance(view, np.ndarray) and view.ctypes.data == buf.data_ptr()
    recv = device.recv_buffer(7, torch.device("cpu"), aware=True)
    assert recv.dtype == torch.uint8 and recv.shape == (7,) and recv.device.type == "cpu"
    x = torch.ones(2)
    assert device.to_device(x, torch.device("cpu")) is x


class _NoCuda:
    pass


class _Cuda:
    def __init__(self, answer) -> None:
        self.answer = answer

    def Query_cuda_support(self) -> bool:
        if isinstance(self.answer, Exception):
            raise self.answer
        return self.answer


def test_cuda_aware_only_when_reported() -> None:
    assert device.cuda_aware(_NoCuda()) is False
    assert device.cuda_aware(_Cuda(False)) is False
    assert device.cuda_aware(_Cuda(True)) is True
    assert device.cuda_aware(_Cuda(RuntimeError("no MPIX"))) is False
