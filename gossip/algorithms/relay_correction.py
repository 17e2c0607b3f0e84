"""The learning-rate correction of RelaySum/Model (Vogels et al. 2021, appendix figure of the
correction factor; the authors' code, epfml/relaysgd, computes it by a simulation and scales the
step size of RelaySum/Model by it: ``5`` for their chain of 16, ``3`` for double binary trees).

RelaySum/Model averages *delayed* half-step models: once every value has arrived (after
``D`` rounds, ``D`` the tree's diameter), ``x_i^{t+1} = (1/n) sum_k x_k^{s + 1/2}`` with
``x^{s+1/2} = x^s - eta g`` and ``s = t - delta(k, i)``, ``delta(k, i) = d(k, i) - 1`` rounds of
delay for another node at tree distance ``d`` and ``delta(i, i) = 0``. Under a constant
gradient ``g_i`` per node the models drift with a common velocity ``v``; putting
``x_i^t = a_i - v t`` into the round and summing over ``i`` gives::

    v = eta * g_bar / c,     c = 1 + (1 / n^2) sum_i sum_{k != i} (d(k, i) - 1)

while all-reduce moves the average by ``eta * g_bar``: RelaySum/Model keeps ``1/c`` of each
update (``c = 5.375`` on a chain of 16: ``0.186``). The correction multiplies the step size by
``c``. The authors compute ``c`` as ``1 / mean(x)`` after an impulse (every node starts at 0,
takes one step ``+1``, then relays with zero gradients and fills the missing mass with its
initial value until the models agree); that simulation converges to the same ``c``
(``tests/algorithms/test_relay_correction.py`` runs it). The fill of the missing mass enters
only the first ``D`` rounds, so ``c`` is the same for ``missing = own`` and ``initial``.

RelaySum/Grad needs no correction: each update reaches every node exactly once with weight
``1/n``, so the average moves by ``eta * g_bar`` per round (``c = 1``).
"""

from __future__ import annotations

from collections.abc import Iterable

import networkx as nx

__all__ = ["lr_correction", "tree_correction"]


def tree_correction(tree: nx.Graph) -> float:
    """``c = 1 + (1/n^2) sum_i sum_{k != i} (d(k, i) - 1)`` on the tree (distances ``d``).

    Examples
    --------
    >>> tree_correction(nx.path_graph(16))
    5.375
    >>> tree_correction(nx.star_graph(3))  # 4 nodes, 6 ordered leaf pairs at distance 2
    1.375
    >>> tree_correction(nx.path_graph(2))  # the neighbour's half step arrives at once
    1.0
    """
    n = tree.number_of_nodes()
    excess = sum(d - 1 for _, dist in nx.all_pairs_shortest_path_length(tree)
                 for d in dist.values() if d > 0)
    return 1.0 + excess / n**2


def lr_correction(trees: Iterable[nx.Graph]) -> float:
    """The correction of RelaySum/Model on its trees: :func:`tree_correction` of one tree, the
    mean over the two trees of ``double_binary`` (mirror images, so the two are equal)."""
    values = [tree_correction(t) for t in trees]
    return sum(values) / len(values)
