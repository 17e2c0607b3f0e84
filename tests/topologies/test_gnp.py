"""topologies.gnp draws networkx.gnp_random_graph's graphs edge for edge, and the random_graph
schedule's W(t) and report row are the ones networkx's graphs give, to the last bit."""

from __future__ import annotations

import networkx as nx
import numpy as np
import pytest

import topologies.gnp
from analysis.topology_report import schedule_row
from topologies.gnp import gnp_graph, gnp_pairs
from topologies.mixing import mixing_matrix
from topologies.schedules import RandomGraph, make_schedule


def structure(graph: nx.Graph):
    """Nodes, and each node's neighbours in their insertion order."""
    return [(u, list(nbrs)) for u, nbrs in graph.adj.items()]


@pytest.mark.parametrize("n, p, seed", [(2, 0.5, 0), (2, 1.0, 3), (17, 0.3, 1), (40, 0.05, 7),
                                        (64, 0.9, 2**32 - 1), (33, 1.0, 5), (12, 0.0, 4)])
@pytest.mark.parametrize("block", [topologies.gnp.BLOCK, 7])
def test_same_graph_as_networkx(monkeypatch, n, p, seed, block):
    """Also when the draws come in blocks of 7 (a block boundary inside a row)."""
    monkeypatch.setattr(topologies.gnp, "BLOCK", block)
    want = nx.gnp_random_graph(n, p, seed=seed)
    got = gnp_graph(n, p, seed)
    assert structure(got) == structure(want) and got.graph == want.graph
    assert gnp_pairs(n, p, seed).tolist() == [list(e) for e in want.edges()]


@pytest.mark.parametrize("rule", ["metropolis", "uniform", "lazy_metropolis"])
def test_random_graph_matrices_are_those_of_networkx_graphs(rule):
    schedule = RandomGraph(37, rule=rule, seed=11)
    for t in range(6):
        seed = int(np.random.default_rng([11, t]).integers(2**32))
        want = mixing_matrix(nx.gnp_random_graph(37, schedule.p, seed=seed), rule)
        got = schedule.matrix(t)
        for a in ("data", "indices", "indptr"):
            assert np.array_equal(getattr(got, a), getattr(want, a)), (t, a)
        assert structure(schedule.draw(t)) == structure(nx.gnp_random_graph(37, schedule.p,
                                                                             seed=seed))


def test_report_row_unchanged(monkeypatch):
    """The row of `gossip topology report --schedules random_graph` on 16 nodes, equal to the
    one from networkx's own G(n, p) (the implementation before topologies.gnp)."""
    got = schedule_row("random_graph", 16, seed=3)

    def networkx_matrix(self, t):
        return mixing_matrix(nx.gnp_random_graph(self.n, self.p, seed=self._seed(t)), self.rule)

    monkeypatch.setattr(RandomGraph, "_matrix", networkx_matrix)
    assert got == schedule_row("random_graph", 16, seed=3)
    assert isinstance(make_schedule("random_graph", 16), RandomGraph)
