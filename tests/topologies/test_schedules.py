"""Schedules: W(t) valid every round, reproducible from (seed, t), exact where promised."""

import networkx as nx
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import topologies as T
from topologies import TopologyError


def dense(schedule, t):
    return schedule.matrix(t).toarray()


def all_schedules(n=12, seed=0):
    ring = T.ring(n)
    return [
        T.make_schedule("static", n, graph=ring),
        T.make_schedule("one_peer_exponential", n),
        T.make_schedule("random_matching", n, seed=seed),
        T.make_schedule("random_matching", n, graph=ring, seed=seed),
        T.make_schedule("random_graph", n, seed=seed),
        T.make_schedule("random_graph", n, seed=seed, kind="random_regular", degree=3),
        T.make_schedule("cycle", n, graphs=[ring, T.star(n), T.complete(n)]),
        T.make_schedule("churn", n, graph=ring, offline=0.25, seed=seed),
    ]


@pytest.mark.parametrize("schedule", all_schedules(), ids=lambda s: s.name)
def test_every_round_is_doubly_stochastic(schedule):
    for t in range(12):
        symmetric = schedule.name != "one_peer_exponential"
        T.check_mixing(schedule.matrix(t), symmetric=symmetric)
    assert schedule.n == 12 and schedule.name in T.schedule_names()


@pytest.mark.parametrize("index", range(8))
def test_matrix_depends_only_on_seed_and_round(index):
    forward = all_schedules(seed=7)[index]
    backward = all_schedules(seed=7)[index]
    first = [dense(forward, t) for t in range(10)]
    last = [dense(backward, t) for t in reversed(range(10))][::-1]
    assert all(np.array_equal(a, b) for a, b in zip(first, last, strict=True))
    assert np.array_equal(dense(forward, 3), dense(forward, 3))


@pytest.mark.parametrize("schedule", all_schedules(), ids=lambda s: s.name)
def test_matrix_is_read_only(schedule):
    """Callers may cache under the W(t) object: nobody can change it in place."""
    for t in range(3):
        W = schedule.matrix(t)
        for array in (W.data, W.indices, W.indptr):
            assert not array.flags.writeable
            with pytest.raises(ValueError, match="read-only"):
                array[0] = array[0]
        with pytest.raises(ValueError, match="read-only"):
            W.eliminate_zeros()
        copy = W.copy()
        copy.data[:] = 0  # a copy is the caller's own
        assert dense(schedule, t).sum() == pytest.approx(schedule.n)


def test_repeating_rounds_hand_out_the_same_object():
    n = 12
    graphs = [T.ring(n), T.star(n), T.complete(n)]
    static = T.make_schedule("static", n, graph=T.ring(n))
    assert all(static.matrix(t) is static.matrix(0) for t in range(1, 5))
    np.testing.assert_array_equal(static.matrix(3).toarray(), T.mixing_matrix(T.ring(n)).toarray())
    cycle = T.make_schedule("cycle", n, graphs=graphs)
    for t in range(9):
        assert cycle.matrix(t) is cycle.matrix(t % 3)
        np.testing.assert_array_equal(
            cycle.matrix(t).toarray(), T.mixing_matrix(graphs[t % 3]).toarray()
        )
    assert len({id(cycle.matrix(t)) for t in range(3)}) == 3
    exp = T.make_schedule("one_peer_exponential", n)
    assert all(exp.matrix(t) is exp.matrix(t % exp.tau) for t in range(3 * exp.tau))
    assert len({id(exp.matrix(t)) for t in range(exp.tau)}) == exp.tau
    matching = T.make_schedule("random_matching", n)
    assert matching.matrix(1) is not matching.matrix(1)  # drawn afresh: nothing kept


@pytest.mark.parametrize("index", [2, 3, 4, 5, 7])
def test_random_schedules_change_with_seed_and_round(index):
    a, b = all_schedules(seed=0)[index], all_schedules(seed=1)[index]
    assert any(not np.array_equal(dense(a, t), dense(b, t)) for t in range(5))
    assert any(not np.array_equal(dense(a, 0), dense(a, t)) for t in range(1, 6))
    assert not a.is_static


@pytest.mark.parametrize("n", [2, 4, 8, 16, 32])
def test_one_peer_exponential_averages_exactly_after_log2_n_rounds(n):
    schedule = T.make_schedule("one_peer_exponential", n)
    tau = n.bit_length() - 1
    assert schedule.tau == tau
    assert T.averages_exactly(schedule, tau)
    assert T.averages_exactly(schedule, tau, start=5)  # any tau consecutive rounds
    for rounds in range(1, tau):
        assert not T.averages_exactly(schedule, rounds)
    assert T.effective_rate(schedule, tau) == pytest.approx(1.0, abs=1e-12)


@pytest.mark.parametrize("n", [3, 6, 12])
def test_one_peer_exponential_not_exact_off_powers_of_two(n):
    schedule = T.make_schedule("one_peer_exponential", n)
    assert not T.averages_exactly(schedule, schedule.tau)
    assert 0 < T.effective_rate(schedule, schedule.tau) < 1


def test_one_peer_exponential_pairs():
    schedule = T.make_schedule("one_peer_exponential", 16)
    for t in range(8):
        W = dense(schedule, t)
        hop = 2 ** (t % 4)
        for i in range(16):
            assert W[i, i] == 0.5 and W[i, (i + hop) % 16] == 0.5


@settings(max_examples=30, deadline=None)
@given(n=st.integers(2, 40), seed=st.integers(0, 10**6), t=st.integers(0, 10**6))
def test_random_matching_is_a_perfect_matching(n, seed, t):
    schedule = T.make_schedule("random_matching", n, seed=seed)
    pairs = schedule.matching(t)
    assert len(pairs) == n // 2 and len(set(pairs.ravel().tolist())) == 2 * (n // 2)
    W = dense(schedule, t)
    T.check_mixing(W)
    assert np.count_nonzero(np.diag(W) == 1.0) == n % 2


@settings(max_examples=20, deadline=None)
@given(n=st.integers(4, 30), seed=st.integers(0, 10**6), t=st.integers(0, 1000))
def test_random_matching_on_graph_is_maximal(n, seed, t):
    graph = T.erdos_renyi(n, seed=seed)
    schedule = T.make_schedule("random_matching", None, graph=graph, seed=seed)
    pairs = schedule.matching(t)
    matched = set(pairs.ravel().tolist())
    assert len(matched) == 2 * len(pairs)
    assert all(graph.has_edge(u, v) for u, v in pairs)
    assert not any(u not in matched and v not in matched for u, v in graph.edges())


def test_static_and_cycle():
    ring = T.ring(8)
    static = T.make_schedule("static", None, graph=ring, rule="uniform")
    assert static.is_static and static.n == 8
    assert np.array_equal(dense(static, 99), T.mixing_matrix(ring, "uniform").toarray())
    graphs = [ring, T.hypercube(8)]
    cycle = T.make_schedule("cycle", 8, graphs=graphs)
    for t in range(6):
        assert np.array_equal(dense(cycle, t), T.mixing_matrix(graphs[t % 2]).toarray())
    assert not cycle.is_static


@pytest.mark.parametrize("offline", [0.0, 0.1, 0.5])
def test_churn(offline):
    base = T.torus(16)
    schedule = T.make_schedule("churn", 16, graph=base, offline=offline, seed=3)
    for t in range(6):
        off = schedule.offline_nodes(t)
        assert len(off) == round(offline * 16)
        W = dense(schedule, t)
        T.check_mixing(W)
        for i in off:
            assert W[i, i] == 1.0 and np.count_nonzero(W[i]) == 1 and np.count_nonzero(W[:, i]) == 1
        remaining = base.copy()
        remaining.remove_nodes_from(off.tolist())
        remaining.add_nodes_from(off.tolist())
        assert np.allclose(W, T.mixing_matrix(remaining).toarray())
    if offline == 0.0:
        assert np.array_equal(dense(schedule, 0), T.mixing_matrix(base).toarray())


def test_random_graph_rounds_are_seeded_graphs():
    schedule = T.make_schedule("random_graph", 20, seed=5, p=0.3)
    for t in range(4):
        graph = schedule.draw(t)
        assert np.allclose(dense(schedule, t), T.mixing_matrix(graph).toarray())
    regular = T.make_schedule("random_graph", 20, seed=5, kind="random_regular", degree=3)
    assert {d for _, d in regular.draw(2).degree()} == {3}


@pytest.mark.parametrize("schedule", all_schedules(), ids=lambda s: s.name)
def test_graph_matches_matrix_support(schedule):
    for t in range(3):
        W = dense(schedule, t)
        graph = schedule.graph(t)
        assert isinstance(graph, nx.DiGraph) and sorted(graph) == list(range(12))
        expected = {(j, i) for i, j in zip(*np.nonzero(W), strict=True) if i != j}
        assert set(graph.edges()) == expected


@pytest.mark.parametrize(
    "call,match",
    [
        (lambda: T.make_schedule("gossip", 8), "'gossip'.*static"),
        (lambda: T.make_schedule("static", 8), "needs graph"),
        (lambda: T.make_schedule("churn", 8), "needs graph"),
        (lambda: T.make_schedule("static", 8, graph=T.ring(6)), "n=8.*6 nodes"),
        (lambda: T.make_schedule("one_peer_exponential", 1), "n=1"),
        (lambda: T.make_schedule("one_peer_exponential", 8, graph=T.ring(8)), "graph="),
        (lambda: T.make_schedule("random_graph", 8, kind="tree"), "'tree'"),
        (lambda: T.make_schedule("random_graph", 8, p=2.0), "p=2.0"),
        (lambda: T.make_schedule("random_graph", 7, kind="random_regular", degree=3), "degree=3"),
        (lambda: T.make_schedule("random_matching", 8, offline=0.1), "'offline'"),
        (lambda: T.make_schedule("cycle", 8), "graphs="),
        (lambda: T.make_schedule("cycle", 8, graphs=[T.ring(8), T.ring(9)]), r"\[8, 9\]"),
        (lambda: T.make_schedule("churn", 8, graph=T.ring(8), offline=1.0), "offline=1.0"),
        (lambda: T.make_schedule("static", 8, graph=T.ring(8), rule="x"), "'x'"),
        (lambda: T.make_schedule("static", 8, graph=T.ring(8)).matrix(-1), "t=-1"),
    ],
)
def test_schedule_mistakes(call, match):
    with pytest.raises(TopologyError, match=match):
        call()
