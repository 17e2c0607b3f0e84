"""The message channel in process: drops, replacements, what the receiver is told, bytes.

Under ``mpiexec`` the same channels give the same numbers: ``test_channel_mpi.py``.
"""

from __future__ import annotations

import doctest
import time

import numpy as np
import pytest
import scipy.sparse as sp
import torch

import topologies
from gossip.comm import channel as channel_module
from gossip.comm.channel import SERVER, DropChannel, ReplaceChannel, uniform
from gossip.comm.local import LocalComm
from gossip.comm.timed import TimedComm
from gossip.compression import make_compressor
from tests.algorithms.alg_helpers import FixedSchedule, context, quadratic, run, static_schedule


def ring(n: int) -> sp.csr_array:
    return topologies.mixing_matrix(topologies.build("ring", n))


def erdos(n: int) -> sp.csr_array:
    return topologies.mixing_matrix(topologies.build("erdos_renyi", n, seed=2))


def negate(src, dst, t, rows):
    """A Byzantine payload: the sent rows negated, plus the destination id."""
    return tuple(-r + torch.as_tensor(dst, dtype=r.dtype)[:, None] for r in rows)


def test_docstring_examples() -> None:
    result = doctest.testmod(channel_module)
    assert result.failed == 0 and result.attempted > 0


def test_decisions_depend_on_seed_src_dst_t_only() -> None:
    src, dst = np.arange(200) % 13, (np.arange(200) * 7 + 1) % 13
    ch = DropChannel(0.3, seed=5)
    a = ch.arrives(src, dst, 4)
    assert np.array_equal(a, DropChannel(0.3, seed=5).arrives(src, dst, 4))
    perm = np.random.default_rng(0).permutation(200)  # per message, not per position
    assert np.array_equal(ch.arrives(src[perm], dst[perm], 4), a[perm])
    assert not np.array_equal(a, ch.arrives(src, dst, 5))
    assert not np.array_equal(a, DropChannel(0.3, seed=6).arrives(src, dst, 4))
    u = uniform(1, np.arange(20000), np.zeros(20000), 0)
    assert 0 <= u.min() and u.max() < 1 and abs(u.mean() - 0.5) < 0.01
    sym = DropChannel(0.5, seed=2, symmetric=True)
    assert np.array_equal(sym.arrives(src, dst, 3), sym.arrives(dst, src, 3))


def test_drop_probability_zero_equals_identity_bit_for_bit() -> None:
    """Every path through the channel (mix, share of public copies, exchange, uploads)."""
    cases = [("dsgd", {"momentum": 0.9}, None), ("gradient_tracking", {}, None),
             ("choco", {"gamma": 0.5}, ("topk", {"k": 2})), ("beer", {}, ("qsgd", {})),
             ("relaysum_model", {}, None), ("naive_compressed_dsgd", {}, ("qsgd", {})),
             ("fedavg", {"client_fraction": 0.5, "local_steps": 2}, ("topk", {"k": 2})),
             ("allreduce", {}, None), ("allreduce", {}, ("sign", {}))]
    for name, opts, compression in cases:
        hist = []
        for channel in (None, DropChannel(0.0, seed=3)):
            prob = quadratic(8, 6, seed=1, sigma=0.3)
            ctx = context(prob, *static_schedule("ring", 8), lr=0.05)
            if compression:
                ctx.compressor = make_compressor(*compression)
            if channel is not None:
                ctx.comm.channel = channel
            _, _, h = run(name, opts, ctx, 6, record=True)
            hist.append((h, ctx.comm.stats.as_dict()))
        (a, sa), (b, sb) = hist
        assert sa == sb, name
        assert all(torch.equal(x, y) for x, y in zip(a, b)), name


@pytest.mark.parametrize("W", [ring(9), erdos(9)])
def test_share_reports_the_failed_messages_and_counts_them_as_sent(W) -> None:
    n = 9
    X = torch.randn(n, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    plain, lossy = LocalComm(n), LocalComm(n)
    lossy.channel = DropChannel(0.4, seed=1)
    got = lossy.share((X,), W, t=7)
    plain.share((X,), W, t=7)
    coo = sp.coo_array(W)
    off = coo.row != coo.col
    dst, src = coo.row[off], coo.col[off]
    lost = ~lossy.channel.arrives(src, dst, 7)
    assert lost.any() and not lost.all()
    want = sorted(zip(dst[lost].tolist(), src[lost].tolist()))
    assert [tuple(e) for e in got.failed.tolist()] == want
    assert not got.complete and len(got.replaced) == 0
    assert torch.equal(got.rows[0], X)  # the rows as sent
    assert lossy.stats == plain.stats  # a lost message was sent


@pytest.mark.parametrize("W", [ring(10), erdos(10)])
def test_lost_weight_goes_to_the_diagonal_and_symmetric_drops_keep_the_average(W) -> None:
    n = 10
    X = torch.randn(n, 3, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    comm = LocalComm(n)
    comm.channel = DropChannel(0.5, seed=4, symmetric=True)
    for t in range(4):
        Y = comm.mix(X, W, t)
        failed = comm.share((X,), W, t).failed
        assert len(failed)
        A = W.toarray()
        for i, j in failed.tolist():  # the effective matrix
            A[i, i] += A[i, j]
            A[i, j] = 0.0
        assert np.allclose(A, A.T) and np.allclose(A.sum(1), 1)  # doubly stochastic
        want = torch.from_numpy(A @ X.reshape(n, -1).numpy()).reshape(X.shape)
        assert torch.allclose(Y, want, rtol=0, atol=1e-12)
        assert torch.allclose(Y.mean(0), X.mean(0), rtol=0, atol=1e-12)


def test_everything_lost_leaves_each_node_alone() -> None:
    """Drop probability 1: D-SGD, naive compressed D-SGD and RelaySum/Model are local SGD
    (D-SGD with ``W = I``)."""
    alone = context(quadratic(6, 4, seed=2), FixedSchedule(sp.eye_array(6, format="csr")),
                    None, lr=0.05)
    want = run("dsgd", {}, alone, 5)[1].X
    for name in ("dsgd", "naive_compressed_dsgd", "relaysum_model"):
        ctx = context(quadratic(6, 4, seed=2), *static_schedule("ring", 6), lr=0.05)
        ctx.comm.channel = DropChannel(1.0)
        opts = {"lr_correction": "none"} if name == "relaysum_model" else {}
        got = run(name, opts, ctx, 5)[1].X
        assert torch.allclose(got, want, rtol=0, atol=1e-12), name


def test_replaced_payload_reaches_every_receiver_of_the_sender() -> None:
    n, bad = 8, 3
    W = erdos(n)
    X = torch.randn(n, 5, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    comm = LocalComm(n)
    comm.channel = ReplaceChannel([bad], negate)
    got = comm.share((X,), W, t=0)
    receivers = [i for i in range(n) if i != bad and W[i, bad] != 0]
    assert [tuple(e) for e in got.replaced.tolist()] == [(i, bad) for i in receivers]
    for k, i in enumerate(receivers):
        assert torch.equal(got.replaced_rows[0][k], -X[bad] + i)
    assert len(got.failed) == 0 and torch.equal(got.rows[0], X)
    # mix: every receiver of `bad` mixes the replaced row; `bad` itself keeps its own
    Y = comm.mix(X, W, 0)
    A = W.toarray()
    for i in range(n):
        rows = X.clone()
        if i != bad:
            rows[bad] = -X[bad] + i
        assert torch.allclose(Y[i], torch.from_numpy(A[i]) @ rows, rtol=0, atol=1e-12)


def test_replacement_must_keep_the_payload_shape() -> None:
    comm = LocalComm(4)
    comm.channel = ReplaceChannel([0], lambda s, d, t, rows: tuple(r[:, :1] for r in rows))
    with pytest.raises(ValueError, match="keep its tensors"):
        comm.share((torch.zeros(4, 3),), ring(4), t=0)


def test_a_channel_needs_the_round() -> None:
    comm = LocalComm(4)
    comm.mix(torch.zeros(4, 2), ring(4))  # the identity does not
    comm.channel = DropChannel(0.1)
    with pytest.raises(ValueError, match="pass the round t"):
        comm.mix(torch.zeros(4, 2), ring(4))


def test_exchange_leaves_lost_messages_out_and_replaces_payloads() -> None:
    n = 6
    msgs = {(i, (i + k) % n): (torch.full((2,), float(10 * i + k)), torch.tensor(i))
            for i in range(n) for k in range(3)}
    comm = LocalComm(n)
    comm.channel = DropChannel(0.5, seed=2)
    got = comm.exchange(msgs, t=1)
    for src, dst in msgs:
        kept = src == dst or comm.channel.arrives(np.array([src]), np.array([dst]), 1)[0]
        assert ((src, dst) in got) == kept
    assert LocalComm(n).exchange(msgs, t=1).keys() == msgs.keys()
    comm.channel = ReplaceChannel([2], lambda s, d, t, rows: tuple(r * 0 for r in rows))
    got = comm.exchange(msgs, t=1)
    for (src, dst), payload in msgs.items():
        zeroed = src == 2 and dst != 2
        assert torch.equal(got[(src, dst)][0], payload[0] * 0 if zeroed else payload[0])


def test_uploads_report_failed_senders_and_average_what_arrived() -> None:
    n, d = 10, 3
    X = torch.randn(n, d, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    senders = np.array([0, 2, 3, 5, 7, 8, 9])
    comm = LocalComm(n)
    comm.channel = DropChannel(0.4, seed=9)
    mean, failed = comm.upload_mean(X, 24, senders, t=2)
    lost = ~comm.channel.arrives(senders, np.full(len(senders), SERVER), 2)
    assert lost.any() and np.array_equal(failed, senders[lost])
    assert torch.allclose(mean, X[senders[~lost]].mean(0), rtol=0, atol=1e-12)
    ids, rows, failed2 = comm.gather_rows(X, 24, senders, t=2)
    assert np.array_equal(ids, senders[~lost]) and np.array_equal(failed2, failed)
    assert torch.equal(rows, X[ids])
    assert comm.stats.messages == 2 * len(senders)  # lost uploads were sent
    assert comm.stats.bytes_sent == 2 * len(senders) * 24
    comm.channel = DropChannel(1.0)
    mean, failed = comm.upload_mean(X, 24, senders, t=2)
    assert torch.equal(mean, torch.zeros(d, dtype=X.dtype)) and np.array_equal(failed, senders)
    comm.channel = ReplaceChannel([3], negate)
    mean, _ = comm.upload_mean(X, 24, senders, t=2)
    want = X[senders].clone()
    want[2] = -X[3] + SERVER
    assert torch.allclose(mean, want.mean(0), rtol=0, atol=1e-12)


def test_fedavg_and_choco_under_a_lossy_channel() -> None:
    """FedAvg averages the uploads that arrived; CHOCO's copies cannot lose messages."""
    ctx = context(quadratic(8, 4, seed=1), *static_schedule("complete", 8), lr=0.05)
    ctx.comm.channel = DropChannel(0.3, seed=1)
    _, state = run("fedavg", {"client_fraction": 0.5}, ctx, 5)
    assert torch.isfinite(state.X).all() and (state.X == state.X[0]).all()
    ctx = context(quadratic(8, 4, seed=1), *static_schedule("ring", 8), lr=0.05)
    ctx.comm.channel = DropChannel(0.3, seed=1)
    with pytest.raises(ValueError, match="public copies"):
        run("choco", {}, ctx, 5)


def test_counted_collectives() -> None:
    """Upload, gather, broadcast: one message per hosted sender; the ring all-reduce:
    ``2 (d - d_i)`` values and ``2 (n - 1)`` messages per node."""
    n, d = 5, 7
    X = torch.zeros(n, d, dtype=torch.float32)
    comm = LocalComm(n)
    comm.allreduce_mean(X)
    assert comm.stats.bytes_sent == 2 * (n - 1) * d * 4 and comm.stats.messages == 2 * (n - 1) * n
    comm = LocalComm(n)
    comm.upload_mean(X, 11)
    comm.broadcast(X[0], np.array([1, 4]))
    comm.gather_rows(X, 3, np.array([0, 2]))
    assert comm.stats.messages == n + 2 + 2
    assert comm.stats.bytes_sent == 11 * n + 2 * d * 4 + 2 * 3


def test_timed_comm_times_the_collectives_and_passes_the_channel() -> None:
    class Slow(LocalComm):
        def sum_rows(self, X, mask=None):
            time.sleep(0.002)
            return super().sum_rows(X, mask)

        def allgather_rows(self, X):
            time.sleep(0.002)
            return super().allgather_rows(X)

    X = torch.zeros(4, 2)
    calls = [lambda c: c.upload_mean(X, 8), lambda c: c.allreduce_mean(X),
             lambda c: c.gather_rows(X, 8, np.arange(4))]
    for call in calls:
        timed = TimedComm(Slow(4))
        call(timed)
        assert timed.seconds >= 0.002
    timed = TimedComm(Slow(4))
    timed.channel = DropChannel(0.5)
    assert timed.inner.channel is timed.channel


@pytest.mark.parametrize("channel", [DropChannel(0.4, seed=3), ReplaceChannel([2, 5], negate)])
def test_naive_compressed_dsgd_without_compression_is_dsgd_under_any_channel(channel) -> None:
    out = []
    for name in ("dsgd", "naive_compressed_dsgd"):
        ctx = context(quadratic(8, 4, seed=3), *static_schedule("ring", 8), lr=0.05)
        ctx.comm.channel = channel
        out.append(run(name, {}, ctx, 6)[1].X)
    assert torch.allclose(out[0], out[1], rtol=0, atol=1e-12)
    assert not torch.allclose(out[0], run("dsgd", {}, context(
        quadratic(8, 4, seed=3), *static_schedule("ring", 8), lr=0.05), 6)[1].X)
