"""MPIComm: its share plans in process, and equivalence with LocalComm under ``mpiexec``.

The MPI launches run ``tests/comm/mpi_check_comm.py`` (every operation on several topologies,
uneven blocks, mixed-dtype payloads, compared with LocalComm on the same seeded data) and one
launch where a rank fails, which must end the whole run.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import topologies
from gossip.comm.local import LocalComm
from gossip.comm.placement import Placement
from tests.mpi_util import json_lines, requires_mpi, run_mpi

pytestmark = requires_mpi

CHECK = Path(__file__).with_name("mpi_check_comm.py")


def _patterns(n: int) -> list[sp.csr_array]:
    rng = np.random.default_rng(n)
    directed = sp.csr_array(sp.random_array((n, n), density=0.25, rng=rng) + sp.eye_array(n))
    sched = topologies.make_schedule("one_peer_exponential", n)
    return [
        topologies.mixing_matrix(topologies.build("ring", n)),
        topologies.mixing_matrix(topologies.build("erdos_renyi", n, seed=3)),
        directed,
        sched.matrix(0),
        sched.matrix(1),
    ]


@pytest.mark.parametrize(("n", "size"), [(10, 4), (7, 3), (5, 2), (6, 6), (9, 1)])
def test_share_plans_agree_between_ranks(n: int, size: int) -> None:
    from gossip.comm.mpi import share_plan

    placement = Placement(n, size)
    starts = placement.starts
    for W in _patterns(n):
        D = W.toarray() != 0
        plans = [share_plan(W, placement, r) for r in range(size)]
        local = LocalComm(n)
        local.count_share(W, 1)
        assert sum(p.messages for p in plans) == local.stats.messages
        for r, plan in enumerate(plans):
            block = placement.block(r)
            need = set(np.nonzero(D[block.start : block.stop].any(axis=0))[0]) | set(block)
            assert plan.ids.tolist() == sorted(need)
            assert plan.ids[plan.local_offset : plan.local_offset + len(block)].tolist() == list(
                block
            )
            sends = dict(plan.send)
            for R, count, offset in plans_recv(plans, r):
                got = plans[R].ids[offset : offset + count]
                assert got.tolist() == (starts[r] + sends[R]).tolist()
            assert set(sends) == {R for R, _, _ in plans_recv(plans, r)}


@settings(max_examples=40, deadline=None)
@given(
    n=st.integers(1, 12),
    density=st.floats(0.0, 1.0),
    seed=st.integers(0, 2**16),
    data=st.data(),
)
def test_share_plans_match_any_pattern(n: int, density: float, seed: int, data) -> None:
    """For any pattern and placement, the rows rank r sends to R are the rows R expects."""
    from gossip.comm.mpi import share_plan

    size = data.draw(st.integers(1, n))
    W = sp.csr_array(sp.random_array((n, n), density=density, rng=np.random.default_rng(seed)))
    placement = Placement(n, size)
    plans = [share_plan(W, placement, r) for r in range(size)]
    D = W.toarray() != 0
    assert sum(p.messages for p in plans) == int((D & ~np.eye(n, dtype=bool)).sum())
    for r, plan in enumerate(plans):
        b = placement.block(r)
        assert plan.ids.tolist() == sorted(set(np.nonzero(D[b.start : b.stop].any(0))[0]) | set(b))
        sends = dict(plan.send)
        assert set(sends) == {R for R, _, _ in plans_recv(plans, r)}
        for R, count, offset in plans_recv(plans, r):
            expect = plans[R].ids[offset : offset + count]
            assert (placement.starts[r] + sends[R]).tolist() == expect.tolist()
            assert all(placement.owner(j) == r for j in expect)


def plans_recv(plans: list, r: int) -> list[tuple[int, int, int]]:
    """Every (receiver, count, offset) entry whose sender is rank ``r``."""
    return [(R, c, off) for R, p in enumerate(plans) for src, c, off in p.recv if src == r]


def test_bytes_roundtrip_any_dtype_and_offset() -> None:
    from gossip.comm.mpi import _as_bytes, _from_bytes

    g = torch.Generator().manual_seed(0)
    tensors = [
        torch.randint(0, 256, (3, 3), generator=g, dtype=torch.uint8),
        torch.randn(3, 2, generator=g).to(torch.bfloat16),
        torch.randn(3, 1, generator=g, dtype=torch.float64),
        torch.randint(-5, 5, (3, 2), generator=g, dtype=torch.int32),
        torch.randn(3, 2, generator=g).to(torch.float16),
        torch.tensor([True, False, True]),
    ]
    buf = torch.cat([_as_bytes(t) for t in tensors])
    start = 0
    for t in tensors:  # offsets 9, 21, 45, ... are not aligned to the element sizes
        back = _from_bytes(buf, start, t.dtype, tuple(t.shape))
        assert back.dtype == t.dtype and torch.equal(back, t)
        start += t.numel() * t.element_size()
    assert start == buf.numel()


def test_single_rank_mpicomm_equals_localcomm() -> None:
    from mpi4py import MPI

    from gossip.comm.mpi import MPIComm

    if MPI.COMM_WORLD.Get_size() != 1:
        pytest.skip("in-process check for a one-rank world")
    n = 6
    comm, local = MPIComm(n), LocalComm(n)
    X = torch.randn(n, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    for W in _patterns(n):
        assert torch.allclose(comm.mix(X, W), local.mix(X, W), rtol=0, atol=1e-12)
    msgs = {(0, 1): (torch.ones(2),), (3, 3): (torch.zeros(1),)}
    assert comm.exchange(msgs).keys() == local.exchange(msgs).keys()
    assert comm.stats.as_dict() == local.stats.as_dict()
    with pytest.raises(ValueError, match="rows"):
        comm.share((torch.zeros(n - 1, 2),), _patterns(n)[0])


@pytest.mark.parametrize(("nprocs", "nodes"), [(2, [5, 3]), (3, [7, 3]), (4, [10, 4])])
def test_mpicomm_equals_localcomm(nprocs: int, nodes: list[int]) -> None:
    args = [str(CHECK)] + [a for n in nodes for a in ("--nodes", str(n))]
    proc = run_mpi(nprocs, args, timeout=180)
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output
    (report,) = json_lines(proc.stdout)
    assert report["failures"] == [], output
    assert report["size"] == nprocs and report["checks"] > 100
    for n, stats in zip(nodes, report["stats"]):
        assert stats["bytes_sent"] == stats["local_bytes_sent"] > 0
        if n == nprocs:  # one node per rank: every node-to-node message crosses ranks
            assert stats["mpi_bytes_sent"] == stats["bytes_sent"]
        else:  # messages inside a block stay in process
            assert 0 < stats["mpi_bytes_sent"] < stats["bytes_sent"]
    if nprocs > 2:  # ring with one node per rank: node messages are MPI messages
        ring = report["stats"][-1]
        assert ring["mpi_bytes_sent"] == ring["bytes_sent"] == 3 * nprocs * 2 * 7 * 4


ABORTING = """
import time
from gossip.comm.factory import install_abort_handler
from gossip.comm.mpi import MPIComm

comm = MPIComm(8)
install_abort_handler(comm)
if comm.rank == 2:
    time.sleep(0.5)
    print(f"raising at {time.time()}", flush=True)
    raise RuntimeError("boom on rank 2")
comm.barrier()
print("barrier passed", flush=True)
"""


def test_exception_on_one_rank_ends_every_rank() -> None:
    proc = run_mpi(4, ["-c", ABORTING], timeout=120)
    ended = time.time()
    output = proc.stdout + proc.stderr
    assert proc.returncode != 0, output
    assert "RuntimeError: boom on rank 2" in output and "[rank 2/4]" in output
    assert "barrier passed" not in output
    (raised,) = [float(x.split()[-1]) for x in proc.stdout.splitlines() if "raising at" in x]
    assert ended - raised < 30, f"the run ended {ended - raised:.1f} s after the exception"
