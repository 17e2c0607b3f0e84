"""RelaySum/Model's learning-rate correction: the closed form, the authors' impulse simulation,
and the exact property it buys (the average moves by all-reduce's step)."""

from __future__ import annotations

import networkx as nx
import pytest
import torch
from alg_helpers import ConstantGradient, context, static_schedule
from alg_helpers import run as run_rounds

from gossip.algorithms import make_algorithm
from gossip.algorithms.relay_correction import lr_correction, tree_correction
from gossip.errors import ConfigError
from topologies.builders import binary_tree
from topologies.trees import double_binary_trees


def authors_impulse(tree: nx.Graph, rounds: int = 5000) -> float:
    """The correction as epfml/relaysgd computes it (appendix figure notebook), rewritten: all
    models start at 0, take one step of +1, then relay with zero gradients, the missing mass
    filled with the initial value 0; ``c = 1 / mean(x)`` once the models agree."""
    n = tree.number_of_nodes()
    x = [0.0] * n
    msgs: dict = {}
    cnts: dict = {}
    for step in range(rounds):
        if step == 0:
            x = [v + 1.0 for v in x]
        new_m, new_c = {}, {}
        for i in tree:
            for j in tree[i]:
                new_m[i, j] = x[i] + sum(msgs.get((k, i), 0.0) for k in tree[i] if k != j)
                new_c[i, j] = 1 + sum(cnts.get((k, i), 0) for k in tree[i] if k != j)
        x = [(x[i] + sum(new_m[k, i] for k in tree[i])
              + 0.0 * (n - 1 - sum(new_c[k, i] for k in tree[i]))) / n for i in tree]
        msgs, cnts = new_m, new_c
        if step > 0 and max(x) - min(x) < 1e-13:
            break
    return n / sum(x)


@pytest.mark.parametrize("tree", [nx.path_graph(16), nx.path_graph(5), nx.balanced_tree(2, 3),
                                  nx.star_graph(7), double_binary_trees(16)[0],
                                  binary_tree(16, layout="relaysum")])
def test_closed_form_equals_the_authors_impulse_simulation(tree):
    assert tree_correction(tree) == pytest.approx(authors_impulse(tree), rel=1e-9)


def test_chain_of_16_and_double_binary_trees():
    assert tree_correction(nx.path_graph(16)) == 5.375  # 1 + 1120 / 256
    t1, t2 = double_binary_trees(16)
    assert tree_correction(t1) == tree_correction(t2)  # mirror images
    assert lr_correction((t1, t2)) == tree_correction(t1)


@pytest.mark.parametrize("n, heap, ref", [(16, 640, 594), (32, 4018, 3874)])
def test_binary_tree_corrections_of_both_layouts(n, heap, ref):
    """c = 1 + (sum of excess delays) / n^2: 3.5 (heap) vs 3.3203125 (the authors' tree) at
    n = 16, 4.9238 vs 4.7832 at 32; the double trees have their first tree's c."""
    assert tree_correction(binary_tree(n)) == 1 + heap / n**2
    assert tree_correction(binary_tree(n, layout="relaysum")) == 1 + ref / n**2
    assert lr_correction(double_binary_trees(n, layout="relaysum")) == 1 + ref / n**2


def _drift(name: str, options: dict, topo: str, rounds: int):
    """Average model's last-round move ``x_bar^{T} - x_bar^{T-1}`` and ``eta * g_bar``."""
    n, d, eta = 16, 3, 0.01
    gen = torch.Generator().manual_seed(0)
    B = torch.randn(n, d, generator=gen, dtype=torch.float64)
    X0 = torch.randn(n, d, generator=gen, dtype=torch.float64)
    schedule, graph = static_schedule(topo, n)
    ctx = context(ConstantGradient(X0, B), schedule, graph, lr=eta)
    alg, _, history = run_rounds(name, options, ctx, rounds, record=True)
    return alg, ctx, history[-1].mean(0) - history[-2].mean(0), -eta * B.mean(0)


@pytest.mark.parametrize("tree, topo, missing, rounds", [
    ("chain", "chain", "own", 600), ("chain", "chain", "initial", 600),
    ("bfs", "ring", "own", 600), ("double_binary", "complete", "own", 1500),
])
def test_corrected_relaysum_model_moves_the_average_by_the_allreduce_step(tree, topo, missing,
                                                                         rounds):
    """Constant gradients g_i: all-reduce moves x_bar by -eta g_bar every round; corrected
    RelaySum/Model does too once the delays have settled (the transient decays
    geometrically); uncorrected it moves 1/c of it."""
    opts = {"tree": tree, "missing": missing}
    alg, ctx, step, allreduce = _drift("relaysum_model", opts, topo, rounds)
    c = alg.correction(ctx)
    assert c > 1.5
    torch.testing.assert_close(step, allreduce, rtol=1e-9, atol=1e-13)
    alg, ctx, step, _ = _drift("relaysum_model", {**opts, "lr_correction": "none"}, topo, rounds)
    assert alg.correction(ctx) == 1.0
    torch.testing.assert_close(step, allreduce / c, rtol=1e-9, atol=1e-13)


def test_relaysum_grad_needs_no_correction():
    _, _, step, allreduce = _drift("relaysum_grad", {"tree": "chain"}, "chain", rounds=40)
    torch.testing.assert_close(step, allreduce, rtol=1e-12, atol=1e-15)


def test_the_factor_is_in_describe():
    _, ctx, _, _ = _drift("relaysum_model", {"tree": "chain"}, "chain", rounds=2)
    alg = make_algorithm("relaysum_model", {"tree": "chain"})
    assert alg.describe(ctx)["lr_correction_factor"] == 5.375
    assert alg.describe(ctx)["lr_correction"] == "auto"


def test_bad_value_is_one_line():
    with pytest.raises(ConfigError, match=r"algorithm.lr_correction must be one of \[auto, none\]"):
        make_algorithm("relaysum_model", {"lr_correction": "yes"})
