"""RelaySum on double binary trees: each half of the coordinates relayed on its own tree."""

import json

import networkx as nx
import pytest
import torch
from alg_helpers import ConstantGradient, context, quadratic, run, static_schedule

from gossip.algorithms import make_algorithm
from gossip.algorithms.relaysum import (
    DoubleRelayState,
    coordinate_slices,
    relay_plans,
    relay_trees,
)
from gossip.comm.local import LocalComm
from gossip.errors import ConfigError
from topologies.trees import double_binary_trees

N = 16


class CountingComm(LocalComm):
    """LocalComm that records every exchange call and each message's size."""

    def __init__(self, n):
        super().__init__(n)
        self.calls = []

    def exchange(self, messages, t=None):
        self.calls.append({e: sum(x.numel() * x.element_size() for x in p)
                           for e, p in messages.items()})
        return super().exchange(messages, t)


def directed(tree):
    return {(i, j) for a, b in tree.edges() for i, j in ((a, b), (b, a))}


def expected_round_bytes(n, d, itemsize=8):
    """Per round: each directed edge of tree k carries w_k floats and one int32 count."""
    trees = double_binary_trees(n)
    widths = [s.stop - s.start for s in coordinate_slices(d, 2)]
    return sum(len(directed(t)) * (w * itemsize + 4) for t, w in zip(trees, widths, strict=True))


@pytest.mark.parametrize("topo", ["ring", "complete"])
def test_double_binary_relaysum_model_reaches_the_optimum(topo):
    schedule, graph = static_schedule(topo, N)
    problem = quadratic(N)
    ctx = context(problem, schedule, graph, lr=0.2)
    alg, state = run("relaysum_model", {"tree": "double_binary"}, ctx, 120)
    assert isinstance(state, DoubleRelayState)
    assert problem.evaluate(alg.params(state), ctx.comm)["distance_to_optimum"] < 1e-10


@pytest.mark.parametrize("n, d", [(16, 5), (10, 4), (4, 3), (7, 1)])
def test_each_half_is_averaged_exactly_at_its_trees_diameter_not_before(n, d):
    comm = LocalComm(n)
    plans = relay_plans(nx.complete_graph(n), "double_binary", 0, comm.nodes)
    slices = coordinate_slices(d, 2)
    assert slices[0] == slice(0, (d + 1) // 2) and slices[1] == slice((d + 1) // 2, d)
    V = torch.randn(n, d, dtype=torch.float64, generator=torch.Generator().manual_seed(n))
    R = [V.new_zeros((len(p.in_edges), s.stop - s.start)) for p, s in zip(plans, slices)]
    Rc = [torch.zeros(len(p.in_edges), dtype=torch.int64) for p in plans]
    D = max(p.diameter for p in plans)
    for r in range(1, D + 2):
        outs = relay_trees([V[:, s] for s in slices], R, Rc, plans, comm)
        R, Rc = [o[0] for o in outs], [o[1] for o in outs]
        for plan, s, (_, _, S, N_got) in zip(plans, slices, outs, strict=True):
            lengths = dict(nx.all_pairs_shortest_path_length(plan.tree))
            within = torch.tensor([sum(1 for x in lengths[i].values() if 0 < x <= r)
                                   for i in range(n)])
            assert torch.equal(N_got, within)
            if s.stop == s.start:  # d = 1: the second tree relays counts only
                continue
            exact = torch.allclose((V[:, s] + S) / n, V[:, s].mean(0).expand(n, -1),
                                   rtol=0, atol=1e-14)
            assert exact == (r >= plan.diameter)
    # mirrored heap trees have equal diameters: 2 * floor(log2 n) at most
    assert plans[0].diameter == plans[1].diameter == nx.diameter(double_binary_trees(n)[0])


@pytest.mark.parametrize("n, d", [(N, 5), (4, 6), (10, 3)])
def test_bytes_per_round_one_exchange_and_shared_edges_in_one_message(n, d):
    t1, t2 = (directed(t) for t in double_binary_trees(n))
    schedule, graph = static_schedule("complete", n)
    comm = CountingComm(n)
    ctx = context(quadratic(n, dim=d), schedule, graph)
    ctx.comm = comm
    alg = make_algorithm("relaysum_model", {"tree": "double_binary"})
    state = alg.init(ctx)
    rounds = 3
    for t in range(rounds):
        state, _ = alg.round(state, t, ctx)
    assert len(comm.calls) == rounds  # one exchange per round carries both trees
    w1, w2 = (s.stop - s.start for s in coordinate_slices(d, 2))
    for call in comm.calls:
        assert set(call) == t1 | t2
        for e, size in call.items():
            assert size == (e in t1) * (w1 * 8 + 4) + (e in t2) * (w2 * 8 + 4)
    assert comm.stats.messages == rounds * len(t1 | t2)
    assert comm.stats.bytes_sent == rounds * expected_round_bytes(n, d)
    if n == 4:  # the two trees of 4 nodes share edges 0-2 and 1-3: one message each way
        assert t1 & t2 == {(0, 2), (2, 0), (1, 3), (3, 1)}


def test_double_trees_balance_bytes_sent_per_node():
    # one binary tree: inner nodes send d floats to 3 neighbours; double: about 2 d at most
    d, counts = 64, {}
    for tree in ("binary", "double_binary"):
        schedule, graph = static_schedule("complete", N)
        comm = CountingComm(N)
        ctx = context(quadratic(N, dim=d), schedule, graph)
        ctx.comm = comm
        alg = make_algorithm("relaysum_grad", {"tree": tree})
        alg.round(alg.init(ctx), 0, ctx)
        sent = [sum(b for (i, _), b in comm.calls[0].items() if i == node) for node in range(N)]
        counts[tree] = max(sent)
    assert counts["binary"] == 3 * (d * 8 + 4)
    assert counts["double_binary"] == 3 * (d // 2 * 8 + 4) + (d // 2 * 8 + 4)


def test_unknown_tree_lists_every_kind():
    with pytest.raises(ConfigError, match=r"algorithm\.tree") as info:
        make_algorithm("relaysum_model", {"tree": "double"})
    for kind in ("bfs", "chain", "binary", "double_binary"):
        assert kind in str(info.value)
    make_algorithm("relaysum_grad", {"tree": "double_binary"})


def test_relaysum_grad_applies_the_exact_mean_update_after_the_diameter():
    X0 = torch.zeros(N, 5, dtype=torch.float64)
    B = torch.randn(N, 5, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    schedule, graph = static_schedule("ring", N)
    ctx = context(ConstantGradient(X0, B), schedule, graph, lr=0.5)
    alg, state, history = run("relaysum_grad", {"tree": "double_binary"}, ctx, 12, record=True)
    D = alg.describe(ctx)["tree_diameter"]
    assert D == 7 and isinstance(state, DoubleRelayState)
    mean_step = -0.5 * B.mean(0).expand(N, 5)
    for t in range(D, 12):
        torch.testing.assert_close(history[t] - history[t - 1], mean_step, rtol=0, atol=1e-14)
    for s in coordinate_slices(5, 2):  # neither half is exact one round before
        step = history[D - 2][:, s] - history[D - 3][:, s]
        assert not torch.allclose(step, mean_step[:, s], rtol=0, atol=1e-14)


def test_describe_reports_both_trees_and_the_overlay():
    for topo, overlay in (("ring", True), ("complete", False)):
        schedule, graph = static_schedule(topo, N)
        ctx = context(quadratic(N, dim=5), schedule, graph)
        alg = make_algorithm("relaysum_model", {"tree": "double_binary"})
        info = json.loads(json.dumps(alg.describe(ctx)))
        assert (info["tree"] == "double_binary (overlay: ignores topology edges)") == overlay
        assert info["tree"].startswith("double_binary")
        first, second = info["trees"]
        assert [first["coordinates"], second["coordinates"]] == [[0, 3], [3, 5]]
        assert [first["root"], second["root"]] == [0, N - 1]
        for entry, tree in zip(info["trees"], double_binary_trees(N), strict=True):
            assert sorted(map(tuple, entry["edges"])) == sorted(
                tuple(sorted(e)) for e in tree.edges())
            assert entry["diameter"] == nx.diameter(tree) == info["tree_diameter"]


def test_resume_of_a_double_binary_run_equals_the_uninterrupted_run(tmp_path):
    from gossip.config import load_config
    from gossip.runner.loop import run as run_config
    from gossip.runner.rundir import read_metrics

    base = ["problem.name=quadratic", "nodes=6", "problem.dim=5", "problem.sigma=0.3",
            "algorithm.name=relaysum_model", "algorithm.tree=double_binary", "eval_every=3",
            f"out='{tmp_path}'"]
    run_config(load_config(None, [*base, "rounds=12", "name=full"]), quiet=True)
    run_config(load_config(None, [*base, "rounds=6", "name=cut"]), quiet=True)
    saved = torch.load(tmp_path / "cut" / "checkpoints" / "state-round6-rank0.pt",
                       weights_only=True)
    assert saved["state_type"] == "DoubleRelayState"
    assert saved["state"]["Rc1"].any() and saved["state"]["R2"].shape[1] == 2
    run_config(load_config(None, [*base, "rounds=12", "name=cut"]), resume=tmp_path / "cut",
               quiet=True)
    times = ("wall_time", "compute_time", "comm_time")
    full, cut = ([{k: v for k, v in r.items() if k not in times} for r in read_metrics(p)]
                 for p in (tmp_path / "full", tmp_path / "cut"))
    assert cut == full and [r["round"] for r in full] == [3, 6, 9, 12]


def test_authors_layout_option():
    """tree_layout = relaysum: the authors' trees, diameter 6 at n = 16 (heap: 7), the double
    trees reach the optimum, and summary details name the layout."""
    schedule, graph = static_schedule("complete", N)
    problem = quadratic(N)
    ctx = context(problem, schedule, graph, lr=0.2)
    alg, state = run("relaysum_model", {"tree": "double_binary", "tree_layout": "relaysum"},
                     ctx, 120)
    info = alg.describe(ctx)
    assert info["tree_layout"] == "relaysum" and info["tree_diameter"] == 6
    assert info["lr_correction_factor"] == 1 + 594 / 256
    assert problem.evaluate(alg.params(state), ctx.comm)["distance_to_optimum"] < 1e-10
    heap, _ = run("relaysum_model", {"tree": "double_binary"}, ctx, 1)
    assert heap.describe(ctx)["tree_diameter"] == 7
    with pytest.raises(ConfigError, match="tree_layout"):
        make_algorithm("relaysum_model", {"tree_layout": "perfect"})
