"""Mixing under lost messages (topologies/lossy.py): the closed-form expected rate against an
exact enumeration of every drop pattern, against two-node and complete-graph formulas, and
against its Monte Carlo measurement."""

from __future__ import annotations

import doctest
import itertools

import numpy as np
import pytest
import scipy.sparse as sp

import topologies
from topologies import lossy
from topologies.lossy import DropSchedule, drop_gram, drop_matrix, drop_rate


def test_docstring_examples() -> None:
    result = doctest.testmod(lossy)
    assert result.failed == 0 and result.attempted > 0


def W_of(name: str, n: int) -> sp.csr_array:
    return topologies.mixing_matrix(topologies.build(name, n))


@pytest.mark.parametrize("name, n", [("ring", 5), ("star", 5), ("chain", 4)])
def test_gram_equals_the_enumeration_of_every_drop_pattern(name, n) -> None:
    W, q = W_of(name, n), 0.3
    coo = sp.coo_array(sp.triu(W, k=1))
    links = list(zip(coo.row.tolist(), coo.col.tolist(), strict=True))
    want = np.zeros((n, n))
    for lost in itertools.product([False, True], repeat=len(links)):
        both = [(i, j) for (i, j), x in zip(links, lost, strict=True) if x]
        rows = np.array([e[0] for e in both] + [e[1] for e in both], dtype=np.int64)
        cols = np.array([e[1] for e in both] + [e[0] for e in both], dtype=np.int64)
        M = drop_matrix(W, rows, cols, np.ones(len(rows), dtype=bool)).toarray()
        want += q ** sum(lost) * (1 - q) ** (len(links) - sum(lost)) * (M.T @ M)
    assert np.allclose(drop_gram(W, q), want, rtol=0, atol=1e-12)


@pytest.mark.parametrize("a, q", [(0.5, 0.3), (0.2, 0.6), (0.4, 0.0)])
def test_two_nodes_closed_form(a, q) -> None:
    W = sp.csr_array(np.array([[1 - a, a], [a, 1 - a]]))
    assert drop_rate(W, q) == pytest.approx((1 - q) * (1 - (1 - 2 * a) ** 2), abs=1e-12)
    p, se = topologies.expected_rate(DropSchedule(W, q, seed=1), 1, windows=1000)
    assert abs(p - drop_rate(W, q)) < 4 * se + 1e-12


@pytest.mark.parametrize("n", [3, 8])
def test_complete_graph_and_the_limits(n) -> None:
    W = W_of("complete", n)
    for q in (0.1, 0.5, 0.9):
        assert drop_rate(W, q) == pytest.approx(1 - q**2 - 2 * q * (1 - q) / n, abs=1e-12)
    ring = W_of("ring", 8)
    assert drop_rate(ring, 0.0) == pytest.approx(1 - topologies.rho(ring) ** 2, abs=1e-12)
    assert drop_rate(ring, 1.0) == pytest.approx(0.0, abs=1e-12)


def test_measured_rate_matches_the_closed_form_and_matrices_are_stochastic() -> None:
    W = W_of("erdos_renyi", 10)
    sym, directed = DropSchedule(W, 0.4, seed=2), DropSchedule(W, 0.4, seed=2, symmetric=False)
    p, se = topologies.expected_rate(sym, 1, windows=1000)
    assert abs(p - drop_rate(W, 0.4)) < 4 * se
    for t in range(5):
        A, B = sym.matrix(t).toarray(), directed.matrix(t).toarray()
        assert np.allclose(A, A.T) and np.allclose(A.sum(0), 1) and (A >= 0).all()
        assert np.allclose(B.sum(1), 1) and (B >= 0).all()
        assert (A != W.toarray()).any()
    assert not np.allclose(directed.matrix(0).toarray(), directed.matrix(0).toarray().T)
    with pytest.raises(topologies.TopologyError, match="drop probability"):
        DropSchedule(W, 1.5)
