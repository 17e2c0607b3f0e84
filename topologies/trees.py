"""Spanning trees for tree-based algorithms such as RelaySum (Vogels et al., 2021).

Every tree is an undirected :class:`networkx.Graph` on nodes ``0..n-1`` with its root
in ``tree.graph["root"]``.
"""

from __future__ import annotations

import networkx as nx

from topologies.builders import binary_tree, chain
from topologies.errors import TopologyError
from topologies.mixing import check_connected

__all__ = [
    "bfs_tree",
    "chain_tree",
    "binary_tree",
    "double_binary_trees",
    "spanning_tree",
    "tree_kinds",
]

_KINDS = ("bfs", "chain", "binary", "double_binary")


def tree_kinds() -> list[str]:
    """Kinds accepted by :func:`spanning_tree`."""
    return list(_KINDS)


def bfs_tree(graph: nx.Graph, root: int = 0) -> nx.Graph:
    """Breadth-first spanning tree of ``graph`` from ``root`` (its edges are graph edges).

    A digraph is treated as undirected (tree algorithms send both ways).

    Examples
    --------
    >>> from topologies.builders import ring
    >>> sorted(bfs_tree(ring(4)).edges())
    [(0, 1), (0, 3), (1, 2)]
    """
    undirected = graph.to_undirected(as_view=True) if graph.is_directed() else graph
    if root not in undirected:
        raise TopologyError(
            f"root {root!r} is not a node of the graph (nodes 0..{graph.number_of_nodes() - 1})"
        )
    check_connected(undirected)
    tree = nx.Graph(name="bfs_tree", root=root)
    tree.add_nodes_from(sorted(undirected.nodes()))
    tree.add_edges_from(nx.bfs_edges(undirected, root))
    return tree


def chain_tree(n: int) -> nx.Graph:
    """The path ``0 - 1 - ... - (n-1)`` as a tree rooted at 0.

    Examples
    --------
    >>> chain_tree(3).graph["root"]
    0
    """
    tree = chain(n)
    tree.graph.update(name="chain_tree", root=0)
    return tree


def double_binary_trees(n: int, layout: str = "heap") -> tuple[nx.Graph, nx.Graph]:
    """Two binary trees in which every node is a leaf of at least one (``n`` even, or
    ``layout = "heap"``).

    The first is :func:`binary_tree` in ``layout`` (root 0); the second is its mirror image
    ``i -> n-1-i`` (root ``n-1``), as the authors' ``double-binary-trees`` (epfml/relaysgd,
    ``BinaryTreeTopology(reverse=True)``). ``heap``: inner nodes ``0..n//2-1`` and
    ``n-n//2..n-1``, disjoint, so each node forwards in at most one tree, as in the double
    binary trees of Sanders, Speck & Träff (2009) used by NCCL. ``relaysum``: inner nodes
    ``0..(n-1)//2`` and their mirror, disjoint for even ``n``; for odd ``n`` node ``(n-1)/2``
    is inner in both.

    Examples
    --------
    >>> first, second = double_binary_trees(4)
    >>> sorted(first.edges()), sorted(second.edges())
    ([(0, 1), (0, 2), (1, 3)], [(0, 2), (1, 3), (2, 3)])
    """
    first = binary_tree(n, layout)
    first.graph.update(name="double_binary_tree_0", root=0)
    size = first.number_of_nodes()
    second = nx.relabel_nodes(first, {i: size - 1 - i for i in range(size)}, copy=True)
    ordered = nx.Graph(name="double_binary_tree_1", root=size - 1, layout=layout)
    ordered.add_nodes_from(range(size))
    ordered.add_edges_from(second.edges())
    return first, ordered


def spanning_tree(
    graph: nx.Graph, kind: str = "bfs", root: int = 0, layout: str = "heap"
) -> nx.Graph | tuple[nx.Graph, nx.Graph]:
    """A spanning tree (or, for ``double_binary``, a pair) over the nodes of ``graph``.

    ``bfs`` stays inside the graph's edges; ``chain``, ``binary`` and
    ``double_binary`` are overlay trees that use only the graph's node count (their
    edges need not be graph edges, as when the tree is itself the topology).

    Parameters
    ----------
    graph : networkx.Graph
        Nodes ``0..n-1``.
    kind : str
        One of :func:`tree_kinds`.
    root : int
        Root of the ``bfs`` tree.
    layout : str
        Node order of ``binary`` and ``double_binary`` (:func:`binary_tree`): ``heap`` or
        ``relaysum`` (the authors' code).
    """
    if kind not in _KINDS:
        raise TopologyError(f"unknown spanning tree kind {kind!r}; choose one of {tree_kinds()}")
    if kind == "bfs":
        return bfs_tree(graph, root)
    n = graph.number_of_nodes()
    if kind == "chain":
        return chain_tree(n)
    if kind == "binary":
        return binary_tree(n, layout)
    return double_binary_trees(n, layout)
