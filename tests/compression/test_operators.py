"""Properties of the compression operators: exactness, unbiasedness, variance, wire bytes."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from gossip.comm.base import payload_row_bytes
from gossip.compression import compressor_names, error_feedback, make_compressor
from gossip.compression.base import index_dtype, pack_bits, unpack_bits
from gossip.compression.lowrank import blocks
from gossip.errors import ConfigError
from tests.compression.cases import WIRE_DIM, WIRE_LAYOUT, operator_cases, wire_formula

# every registered operator (cases.operator_cases), and more settings of some of them
CONFIGS = [
    *operator_cases(),
    ("topk", {"ratio": 0.1}),
    ("topk", {"k": 7}),
    ("topk", {}),
    ("randomk", {"k": 5, "unbiased": True}),
    ("randomk", {"ratio": 0.3}),
    ("qsgd", {"levels": 1}),
    ("qsgd", {"levels": 5}),
    ("qsgd", {"levels": 127}),
    ("lowrank", {"rank": 2}),
]
LAYOUTS = [None, WIRE_LAYOUT]  # dim 60 either way


@pytest.mark.parametrize("name,opts", CONFIGS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("layout", LAYOUTS)
def test_round_trip_dtype_shape_and_wire_bytes(name, opts, dtype, layout):
    c = make_compressor(name, opts)
    X = torch.randn(5, 60, dtype=dtype, generator=torch.Generator().manual_seed(1))
    state = c.init(60, range(3, 8), layout, seed=4, dtype=dtype)
    payload, state = c.encode(X, state, 2)
    assert all(t.shape[0] == 5 for t in payload)
    Y = c.decode(payload, state, np.arange(3, 8), 2)
    assert Y.dtype == dtype and Y.shape == X.shape
    assert payload_row_bytes(payload) == c.payload_row_bytes(60, layout, dtype)
    # decoding a subset of rows (what a remote receiver does) gives those rows
    sub = tuple(t[1:3] for t in payload)
    assert torch.equal(c.decode(sub, state, np.arange(4, 6), 2), Y[1:3])


@pytest.mark.parametrize("name,opts", operator_cases())
def test_wire_bytes_equal_the_hand_written_formula(name, opts):
    c = make_compressor(name, opts)
    X = torch.randn(4, WIRE_DIM, generator=torch.Generator().manual_seed(2))
    payload, _ = c.encode(X, c.init(WIRE_DIM, range(4), WIRE_LAYOUT, seed=3), 0)
    assert payload_row_bytes(payload) == c.payload_row_bytes(WIRE_DIM, WIRE_LAYOUT)
    assert c.payload_row_bytes(WIRE_DIM, WIRE_LAYOUT) == wire_formula(name)


def test_none_is_exact_and_formulas():
    X = torch.randn(3, 1000, dtype=torch.float64)
    c = make_compressor("none")
    p, s = c.encode(X, c.init(1000, range(3), dtype=torch.float64), 0)
    assert torch.equal(c.decode(p, s, range(3), 0), X)
    assert make_compressor("topk", {"k": 10}).payload_row_bytes(1000) == 10 * (4 + 2)
    assert make_compressor("topk", {"k": 10}).payload_row_bytes(200) == 10 * (4 + 1)
    assert make_compressor("topk", {"k": 10}).payload_row_bytes(10**5) == 10 * (4 + 4)
    assert make_compressor("randomk", {"k": 10}).payload_row_bytes(1000) == 40
    assert make_compressor("sign").payload_row_bytes(1001) == 4 + 126
    assert make_compressor("qsgd", {"levels": 3}).payload_row_bytes(1000) == 4 + 375
    assert make_compressor("fp16").payload_row_bytes(1000) == 2000
    assert make_compressor("lowrank", {"rank": 2}).payload_row_bytes(100 * 100) == 4 * 2 * 200


def test_index_dtype_narrowest():
    assert index_dtype(256) == torch.uint8 and index_dtype(257) == torch.int16
    assert index_dtype(32768) == torch.int16 and index_dtype(32769) == torch.int32


@pytest.mark.parametrize("width", range(1, 9))
def test_pack_bits_round_trip(width):
    codes = torch.randint(0, 2**width, (3, 37), dtype=torch.uint8)
    packed = pack_bits(codes, width)
    assert packed.shape == (3, math.ceil(37 * width / 8))
    assert torch.equal(unpack_bits(packed, width, 37), codes)


def test_topk_keeps_exactly_the_k_largest():
    g = torch.Generator().manual_seed(0)
    X = torch.randn(8, 300, generator=g, dtype=torch.float64)
    c = make_compressor("topk", {"k": 17})
    p, s = c.encode(X, c.init(300, range(8), dtype=torch.float64), 0)
    Y = c.decode(p, s, range(8), 0)
    for x, y in zip(X, Y):
        top = set(torch.argsort(x.abs(), descending=True)[:17].tolist())
        assert set(torch.nonzero(y).flatten().tolist()) == top
        assert torch.equal(y[list(top)], x[list(top)])


def test_randomk_unbiased_and_variance():
    d, k, seeds = 40, 8, 4000
    x = torch.randn(1, d, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    c = make_compressor("randomk", {"k": k, "unbiased": True})
    nodes = np.arange(seeds)  # one row per draw: (seed, node, step) all differ
    s = c.init(d, nodes, dtype=torch.float64)
    X = x.expand(seeds, d).contiguous()
    p, s = c.encode(X, s, 3)
    Y = c.decode(p, s, nodes, 3)
    assert ((Y != 0).sum(1) <= k).all()
    mean = Y.mean(0)
    sq = ((Y - X) ** 2).sum(1).mean()
    expected = (d / k - 1) * x.pow(2).sum()
    assert torch.allclose(mean, x[0], atol=5 * math.sqrt((d / k) / seeds) * x.abs().max())
    assert abs(sq / expected - 1) < 0.1
    # every row keeps k distinct coordinates
    idx = torch.nonzero(c.decode((torch.ones(seeds, k, dtype=torch.float64),), s, nodes, 3))
    assert idx.shape[0] == seeds * k


@pytest.mark.parametrize("levels", [1, 4])
def test_qsgd_unbiased_with_variance_bound(levels):
    d, draws = 50, 4000
    x = torch.randn(1, d, generator=torch.Generator().manual_seed(levels))
    c = make_compressor("qsgd", {"levels": levels})
    nodes = np.arange(draws)
    s = c.init(d, nodes, seed=7)
    X = x.expand(draws, d).contiguous()
    p, s = c.encode(X, s, 0)
    Y = c.decode(p, s, nodes, 0)
    bound = min(d / levels**2, math.sqrt(d) / levels) * x.pow(2).sum()
    var = ((Y - X) ** 2).sum(1).mean()
    assert var <= bound * 1.05
    # each entry is norm/s times a Bernoulli: variance <= norm^2 / (4 s^2)
    sd = x.norm() / (2 * levels) / math.sqrt(draws)
    assert ((Y.mean(0) - x[0]).abs() <= 5 * sd).all()


def test_qsgd_same_seed_same_bits_other_step_differs():
    c = make_compressor("qsgd", {"levels": 2})
    X = torch.randn(3, 100)
    s = c.init(100, [5, 6, 7], seed=1)
    a, _ = c.encode(X, s, 4)
    b, _ = c.encode(X, s, 4)
    e, _ = c.encode(X, s, 5)
    assert torch.equal(a[1], b[1]) and not torch.equal(a[1], e[1])
    # a row's bits depend on its node id, not on its position in the block
    s1 = c.init(100, [6], seed=1)
    one, _ = c.encode(X[1:2], s1, 4)
    assert torch.equal(one[1][0], a[1][1])


def test_sign_is_scaled_sign():
    X = torch.tensor([[1.0, -2.0, 0.0, 3.0]])
    c = make_compressor("sign")
    p, s = c.encode(X, c.init(4, [0]), 0)
    assert torch.equal(c.decode(p, s, [0], 0), torch.tensor([[1.5, -1.5, 1.5, 1.5]]))


@pytest.mark.parametrize("layout", [None, [("w", (20, 30)), ("b", (20,))]])
def test_lowrank_exact_on_rank_r(layout):
    r, b = 3, 4
    g = torch.Generator().manual_seed(2)
    if layout is None:
        (_, size, m, n, _), = blocks(600, (), r)
        M = torch.randn(b, m, r, generator=g) @ torch.randn(b, r, n, generator=g)
        X = M.reshape(b, m * n)[:, :600]
        # the padded tail must be zero for the row to be exactly rank r: use m*n == 600 shape
        assert m * n >= 600
        X = M.reshape(b, -1)[:, :600] if m * n == 600 else None
        if X is None:
            pytest.skip("near-square shape pads")
        dim = 600
    else:
        M = torch.randn(b, 20, r, generator=g) @ torch.randn(b, r, 30, generator=g)
        X = torch.cat([M.reshape(b, -1), torch.randn(b, 20, generator=g)], 1)
        dim = 620
    c = make_compressor("lowrank", {"rank": r})
    s = c.init(dim, range(b), layout, seed=0)
    p, s = c.encode(X, s, 0)
    assert torch.allclose(c.decode(p, s, range(b), 0), X, atol=1e-4, rtol=1e-4)
    # warm start: the next call starts from the Q just sent and is exact again
    p, s = c.encode(2 * X, s, 1)
    assert torch.allclose(c.decode(p, s, range(b), 1), 2 * X, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("name,opts", [("topk", {"k": 3}), ("sign", {}), ("qsgd", {"levels": 2}),
                                       ("randomk", {"k": 4}), ("lowrank", {"rank": 1})])
def test_error_feedback_identity(name, opts):
    ef = error_feedback(make_compressor(name, opts))
    s = ef.init(36, range(2), dtype=torch.float64)
    total_in = torch.zeros(2, 36, dtype=torch.float64)
    total_out = torch.zeros_like(total_in)
    for step in range(20):
        X = torch.randn(2, 36, dtype=torch.float64)
        p, s = ef.encode(X, s, step)
        total_in += X
        total_out += ef.decode(p, s, range(2), step)
    assert torch.allclose(total_in - total_out, s.error, atol=1e-10)
    assert make_compressor(name, {**opts, "error_feedback": True}).name == f"ef_{name}"


def test_registry_errors():
    assert set(compressor_names()) >= {"none", "topk", "randomk", "sign", "qsgd", "lowrank"}
    with pytest.raises(ConfigError, match="unknown compression operator 'zip'"):
        make_compressor("zip")
    with pytest.raises(ConfigError, match="not both"):
        make_compressor("topk", {"ratio": 0.1, "k": 3})
    with pytest.raises(ConfigError, match="compression.rank does not apply to 'topk'"):
        make_compressor("topk", {"rank": 3})
    with pytest.raises(ConfigError, match="compression.ratio must be in"):
        make_compressor("topk", {"ratio": 1.5})
    with pytest.raises(ConfigError, match="compression.levels"):
        make_compressor("qsgd", {"levels": 300})
    with pytest.raises(ConfigError, match="exceeds the row length"):
        make_compressor("topk", {"k": 50}).init(10, [0])
