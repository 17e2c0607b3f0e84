"""Spectral quantities against closed forms, dense against sparse, schedules' rates."""

import math
from itertools import product

import networkx as nx
import numpy as np
import pytest
import scipy.sparse as sp

import topologies as T
from topologies import TopologyError


def eigenvalues(W):
    return np.sort(np.linalg.eigvalsh(W.toarray()))


def rho_of(values):
    """rho from the full spectrum of a symmetric doubly stochastic W: drop one 1."""
    values = sorted(values)
    return max(abs(v) for v in values[:-1])


@pytest.mark.parametrize("n", [3, 4, 5, 8, 17, 64])
def test_ring_metropolis(n):
    # every degree is 2, so W = (I + P + P^T) / 3: eigenvalues 1/3 + 2/3 cos(2 pi k / n)
    W = T.mixing_matrix(T.ring(n))
    expected = 1 / 3 + 2 / 3 * np.cos(2 * np.pi * np.arange(n) / n)
    assert np.allclose(eigenvalues(W), np.sort(expected))
    closed = 0.0 if n == 3 else max(1 / 3 + 2 / 3 * np.cos(2 * np.pi / n), 1 / 3)
    assert T.rho(W) == pytest.approx(closed, abs=1e-12)
    assert T.spectral_gap(W) == pytest.approx(1 - closed, abs=1e-12)
    assert T.consensus_rate(W) == pytest.approx(1 - closed**2, abs=1e-12)
    assert T.lambda_2(W) == pytest.approx(1 / 3 + 2 / 3 * np.cos(2 * np.pi / n), abs=1e-12)


@pytest.mark.parametrize("n", [3, 4, 10, 33])
def test_chain_metropolis(n):
    # weights 1/3 on every edge, 2/3 kept at the ends: W = I - L / 3 for the path
    # Laplacian L, whose eigenvalues are 2 - 2 cos(pi k / n)
    W = T.mixing_matrix(T.chain(n))
    expected = 1 / 3 + 2 / 3 * np.cos(np.pi * np.arange(n) / n)
    assert np.allclose(eigenvalues(W), np.sort(expected))
    assert T.rho(W) == pytest.approx(rho_of(expected), abs=1e-12)


@pytest.mark.parametrize("n", [3, 4, 7, 50])
def test_star_metropolis(n):
    # every edge gets 1/n; leaves keep 1 - 1/n. Vectors on the leaves summing to zero
    # are eigenvectors with eigenvalue 1 - 1/n (n - 2 of them); the trace gives the
    # last eigenvalue: 0.
    W = T.mixing_matrix(T.star(n))
    expected = [0.0] + [1 - 1 / n] * (n - 2) + [1.0]
    assert np.allclose(eigenvalues(W), expected)
    assert T.rho(W) == pytest.approx(1 - 1 / n, abs=1e-12)
    assert T.lambda_2(W) == pytest.approx(1 - 1 / n, abs=1e-12)


@pytest.mark.parametrize("n", [2, 3, 10])
def test_complete_uniform(n):
    W = T.mixing_matrix(T.complete(n), "uniform")
    assert T.rho(W) == pytest.approx(0.0, abs=1e-12)
    assert T.spectral_gap(W) == pytest.approx(1.0)
    assert T.mixing_time(W) == 1


@pytest.mark.parametrize("k", range(1, 8))
def test_hypercube_uniform(k):
    # W = (I + A) / (k + 1) and A has eigenvalues k - 2m with multiplicity C(k, m)
    W = T.mixing_matrix(T.hypercube(2**k), "uniform")
    expected = [1 - 2 * m / (k + 1) for m in range(k + 1) for _ in range(math.comb(k, m))]
    assert np.allclose(eigenvalues(W), np.sort(expected))
    assert T.rho(W) == pytest.approx(1 - 2 / (k + 1), abs=1e-12)
    assert np.allclose(W.toarray(), T.mixing_matrix(T.hypercube(2**k)).toarray())  # regular


@pytest.mark.parametrize("rows,cols", [(3, 3), (3, 5), (4, 4), (6, 9)])
def test_torus_metropolis(rows, cols):
    # degree 4: W = (I + A) / 5 and A is a sum of two cycles
    W = T.mixing_matrix(T.torus(rows * cols, shape=(rows, cols)))
    expected = [
        (1 + 2 * np.cos(2 * np.pi * a / rows) + 2 * np.cos(2 * np.pi * b / cols)) / 5
        for a, b in product(range(rows), range(cols))
    ]
    assert np.allclose(eigenvalues(W), np.sort(expected))
    assert T.rho(W) == pytest.approx(rho_of(expected), abs=1e-12)


def exponential_spectrum(n):
    # W is circulant: row i averages i and i - 2^j, so the Fourier mode k has
    # eigenvalue (1 + sum_j exp(-2 pi i k 2^j / n)) / (1 + tau); W is normal, so
    # ||W - 11^T/n||_2 is the largest modulus over k != 0
    tau = (n - 1).bit_length()
    k = np.arange(1, n)[:, None]
    hops = 2 ** np.arange(tau)[None, :]
    values = (1 + np.exp(-2j * np.pi * k * hops / n).sum(axis=1)) / (1 + tau)
    return np.abs(values).max()


@pytest.mark.parametrize("n", [2, 5, 8, 12, 16, 64, 100, 700])
def test_exponential_in_uniform(n):
    W = T.mixing_matrix(T.exponential(n), "in_uniform")
    assert T.rho(W) == pytest.approx(exponential_spectrum(n), abs=1e-8)


def test_exponential_power_of_two_rho():
    # for n = 2^tau the modes k = n/2 give |1 + (-1) + 0...| ... check a known value
    W = T.mixing_matrix(T.exponential(16), "in_uniform")
    assert T.rho(W) == pytest.approx(exponential_spectrum(16), abs=1e-12)
    with pytest.raises(TopologyError, match="symmetric"):
        T.lambda_2(W)


@pytest.mark.parametrize("rule", ["lazy_metropolis", "lazy_uniform"])
def test_lazy_spectrum(rule):
    graph = T.ring(10)
    base = eigenvalues(T.mixing_matrix(graph, rule[5:]))
    assert np.allclose(eigenvalues(T.mixing_matrix(graph, rule)), (1 + base) / 2)


def test_mixing_time():
    half = np.array([[0.75, 0.25], [0.25, 0.75]])  # eigenvalues 1 and 1/2
    assert T.rho(half) == pytest.approx(0.5)
    assert T.mixing_time(half) == 10  # 2^-10 < 1e-3 < 2^-9
    tenth = np.array([[0.55, 0.45], [0.45, 0.55]])  # rho = 0.1: exactly 3 rounds
    assert T.mixing_time(tenth) == 3
    assert T.mixing_time(tenth, tol=0.01) == 2
    assert T.mixing_time(np.eye(3)) == math.inf
    with pytest.raises(TopologyError, match="tol=2"):
        T.mixing_time(half, tol=2)


def test_disconnected_graph_has_rho_one():
    graph = nx.disjoint_union(T.ring(4), T.ring(5))
    W = T.mixing_matrix(graph)
    assert T.rho(W) == pytest.approx(1.0)
    assert T.graph_stats(graph)["diameter"] == math.inf


@pytest.mark.parametrize(
    "graph,diameter",
    [
        (T.ring(9), 4),
        (T.ring(10), 5),
        (T.chain(7), 6),
        (T.star(6), 2),
        (T.torus(30, shape=(5, 6)), 5),
        (T.hypercube(32), 5),
        (T.exponential(32), 5),  # shortest i -> i + d uses popcount(d) hops
        (T.complete(5), 1),
    ],
)
def test_graph_stats(graph, diameter):
    stats = T.graph_stats(graph)
    assert stats["diameter"] == diameter
    if not graph.is_directed():
        degrees = [d for _, d in graph.degree()]
        assert stats["max_degree"] == max(degrees) and stats["min_degree"] == min(degrees)
        assert stats["mean_degree"] == pytest.approx(np.mean(degrees))
    assert stats["edges"] == graph.number_of_edges()


def test_graph_stats_matches_networkx_on_random_graphs():
    for seed in range(5):
        graph = T.erdos_renyi(60, seed=seed)
        assert T.graph_stats(graph)["diameter"] == nx.diameter(graph)


def test_summary_keys_and_values():
    graph = T.star(6)
    info = T.summary(graph, T.mixing_matrix(graph))
    assert set(info) == {
        "rho",
        "spectral_gap",
        "p",
        "lambda_2",
        "mixing_time",
        "diameter",
        "max_degree",
        "edges",
    }
    assert info["rho"] == pytest.approx(5 / 6) and info["p"] == pytest.approx(1 - 25 / 36)
    assert info["diameter"] == 2 and info["max_degree"] == 5 and info["edges"] == 5
    directed = T.summary(T.exponential(8), T.mixing_matrix(T.exponential(8), "in_uniform"))
    assert directed["lambda_2"] is None
    with pytest.raises(TopologyError, match="5 nodes"):
        T.summary(T.ring(5), T.mixing_matrix(T.ring(6)))


@pytest.mark.parametrize(
    "graph",
    [T.random_regular(700, seed=1), T.star(600), T.complete(600), T.small_world(800, seed=2)],
    ids=["random_regular", "star", "complete", "small_world"],
)
def test_sparse_path_matches_dense(graph):
    W = T.mixing_matrix(graph)
    values = eigenvalues(W)
    assert T.rho(W) == pytest.approx(rho_of(values), abs=1e-8)
    assert T.lambda_2(W) == pytest.approx(values[-2], abs=1e-8)


@pytest.mark.parametrize("name", ["ring", "torus", "random_regular"])
def test_summary_runs_at_n_4096(name):
    n = 4096
    graph = T.build(name, n, seed=0)
    info = T.summary(graph, T.mixing_matrix(graph))
    if name == "ring":
        closed = 1 / 3 + 2 / 3 * np.cos(2 * np.pi / n)
        assert info["diameter"] == n // 2
    elif name == "torus":
        closed = (3 + 2 * np.cos(2 * np.pi / 64)) / 5
        assert info["diameter"] == 64
    else:  # an expander: Alon-Boppana and Friedman put lambda_2(A) near 2 sqrt(3)
        closed = None
        assert 0.85 < info["rho"] < 0.95 and info["diameter"] <= 12
    if closed is not None:
        assert info["rho"] == pytest.approx(closed, abs=1e-9)
        assert info["lambda_2"] == pytest.approx(closed, abs=1e-9)
    assert info["mixing_time"] == math.ceil(math.log(1e-3) / math.log(info["rho"]))


@pytest.mark.parametrize("n,tau", [(10, 1), (10, 3), (600, 2)])
def test_effective_rate_of_static_schedule(n, tau):
    # symmetric W: ||(W - J)^tau|| = rho^tau
    schedule = T.make_schedule("static", n, graph=T.ring(n))
    r = T.rho(schedule.matrix(0))
    assert T.effective_rate(schedule, tau) == pytest.approx(1 - r ** (2 * tau), abs=1e-9)
    if tau == 1:
        assert T.effective_rate(schedule, 1) == pytest.approx(T.consensus_rate(schedule.matrix(0)))


def test_effective_rate_of_random_schedules():
    matching = T.make_schedule("random_matching", 16, seed=0)
    one = T.effective_rate(matching, 1)
    assert one == pytest.approx(0.0, abs=1e-12)  # a single matching leaves pairs apart
    many = T.effective_rate(matching, 8, rounds=32)
    assert 0 < many < 1
    churn = T.make_schedule("churn", 16, graph=T.torus(16), offline=0.25, seed=1)
    assert (
        0
        < T.effective_rate(churn, 4)
        < T.effective_rate(T.make_schedule("static", 16, graph=T.torus(16)), 4)
    )


def _matching_model_rate(n: int, tau: int) -> float:
    """Exact ``1 - lambda_max(E[(M - J)^T (M - J)])`` for uniform perfect matchings of ``n``."""
    nodes = list(range(n))

    def matchings(rest):
        if not rest:
            yield []
            return
        first = rest[0]
        for k in range(1, len(rest)):
            for more in matchings(rest[1:k] + rest[k + 1 :]):
                yield [(first, rest[k]), *more]

    Ws = []
    for pairs in matchings(nodes):
        P = np.zeros((n, n))
        for i, j in pairs:
            P[i, j] = P[j, i] = 1.0
        Ws.append((np.eye(n) + P) / 2)
    grams = []
    for window in product(Ws, repeat=tau):
        M = np.eye(n)
        for W in window:
            M = W @ M
        grams.append((M - 1 / n).T @ (M - 1 / n))
    return 1 - np.linalg.eigvalsh(np.mean(grams, axis=0))[-1]


def test_matching_closed_form():
    # E[P] = (J - I)/(n - 1), W = (I + P)/2 = W^T W: p = n / (2 (n - 1)) at tau = 1
    for n in (4, 6):
        assert _matching_model_rate(n, 1) == pytest.approx(n / (2 * (n - 1)), abs=1e-12)
    # the schedule draws that model: perfect matchings, pairs averaged 1/2-1/2
    schedule = T.make_schedule("random_matching", 6, seed=0)
    for t in range(5):
        W = schedule.matrix(t).toarray()
        assert sorted(np.count_nonzero(W, axis=1)) == [2] * 6
        assert np.allclose(W, W.T) and np.allclose(W @ W, W) and set(np.unique(W)) <= {0, 0.5}


@pytest.mark.parametrize("n,windows", [(8, 2000), (16, 2000), (9, 2000), (600, 200)])
def test_expected_rate_of_random_matching(n, windows):
    # even n: n / (2 (n - 1)); odd n: one node idles, E[P] = J/n and p = 1/2
    closed = n / (2 * (n - 1)) if n % 2 == 0 else 0.5
    p, se = T.expected_rate(T.make_schedule("random_matching", n, seed=1), 1, windows=windows)
    assert 0 < se < 0.01
    assert abs(p - closed) <= 4 * se
    assert T.effective_rate(T.make_schedule("random_matching", n, seed=1), 1) == pytest.approx(
        0.0, abs=1e-12
    )  # the worst window says nothing of the expectation


def test_expected_rate_of_a_window_product():
    # tau = 2 on 4 nodes: all 9 ordered pairs of the 3 matchings, exactly
    exact = _matching_model_rate(4, 2)
    p, se = T.expected_rate(T.make_schedule("random_matching", 4, seed=2), 2, windows=4000)
    assert 0 < se and abs(p - exact) <= 4 * se
    assert exact > _matching_model_rate(4, 1)


def test_expected_rate_is_seeded_and_does_not_fall_with_windows():
    schedule = T.make_schedule("random_matching", 16, seed=5)
    assert T.expected_rate(schedule, 3) == T.expected_rate(schedule, 3)
    few, few_se = T.expected_rate(schedule, 3, windows=64)
    many, many_se = T.expected_rate(schedule, 3, windows=1024)
    assert abs(few - many) <= 4 * math.hypot(few_se, many_se)
    assert T.effective_rate(schedule, 3, rounds=3 * 1024) <= T.effective_rate(schedule, 3) < few


@pytest.mark.parametrize("n,tau", [(10, 2), (600, 2)])
def test_expected_rate_of_static_schedule(n, tau):
    schedule = T.make_schedule("static", n, graph=T.ring(n))
    p, se = T.expected_rate(schedule, tau)
    assert se == 0.0 and p == pytest.approx(T.effective_rate(schedule, tau), abs=1e-9)


def test_effective_rate_window_is_a_product():
    schedule = T.make_schedule("random_matching", 8, seed=3)
    M = np.eye(8)
    for t in range(10, 13):
        M = schedule.matrix(t).toarray() @ M
    expected = 1 - np.linalg.norm(M - 1 / 8, 2) ** 2
    assert T.effective_rate(schedule, 3, rounds=3, start=10) == pytest.approx(expected)


def test_large_schedules_matrix_free():
    schedule = T.make_schedule("one_peer_exponential", 1024)
    assert T.averages_exactly(schedule, 10) and not T.averages_exactly(schedule, 9)
    assert T.effective_rate(schedule, 10, rounds=20) == pytest.approx(1.0, abs=1e-9)
    assert T.effective_rate(schedule, 9, rounds=9) < 1 - 1e-6


def test_window_mistakes():
    schedule = T.make_schedule("one_peer_exponential", 8)
    with pytest.raises(TopologyError, match="tau=0"):
        T.effective_rate(schedule, 0)
    with pytest.raises(TopologyError, match="rounds=2"):
        T.effective_rate(schedule, 3, rounds=2)
    with pytest.raises(TopologyError, match="windows=3"):
        T.expected_rate(schedule, 3, windows=3)
    with pytest.raises(TopologyError, match="start=-1"):
        T.averages_exactly(schedule, 3, start=-1)
    with pytest.raises(TopologyError, match=r"\(2, 3\)"):
        T.rho(sp.csr_array(np.ones((2, 3))))
