"""Spanning trees: spanning, inside the graph (bfs), double binary trees' leaf property."""

import networkx as nx
import pytest

import topologies as T
from topologies import TopologyError


def children(tree):
    """Node -> its children, with the tree hung from ``tree.graph["root"]``."""
    directed = nx.bfs_tree(tree, tree.graph["root"])
    return {node: list(directed.successors(node)) for node in tree}


@pytest.mark.parametrize(
    "graph", [T.ring(9), T.torus(16), T.hypercube(16), T.erdos_renyi(40, seed=2), T.social()]
)
def test_bfs_tree_spans_inside_the_graph(graph):
    for root in (0, graph.number_of_nodes() - 1):
        tree = T.bfs_tree(graph, root)
        assert nx.is_tree(tree) and sorted(tree) == sorted(graph)
        assert all(graph.has_edge(u, v) for u, v in tree.edges())
        assert tree.graph["root"] == root
        # breadth first: depth in the tree = distance in the graph
        depth = nx.single_source_shortest_path_length(tree, root)
        assert depth == nx.single_source_shortest_path_length(graph, root)


def test_bfs_tree_of_digraph_uses_both_directions():
    tree = T.bfs_tree(T.exponential(8))
    assert nx.is_tree(tree) and tree.number_of_nodes() == 8


def test_bfs_tree_mistakes():
    with pytest.raises(TopologyError, match="disconnected"):
        T.bfs_tree(nx.Graph([(0, 1), (2, 3)]))
    with pytest.raises(TopologyError, match="root 9"):
        T.bfs_tree(T.ring(5), root=9)


@pytest.mark.parametrize("n", range(2, 70))
def test_double_binary_trees_every_node_is_a_leaf_once(n):
    first, second = T.double_binary_trees(n)
    inner = []
    for tree in (first, second):
        assert nx.is_tree(tree) and sorted(tree) == list(range(n))
        kids = children(tree)
        assert max(len(c) for c in kids.values()) <= 2
        depth = max(nx.single_source_shortest_path_length(tree, tree.graph["root"]).values())
        assert depth == n.bit_length() - 1  # balanced: floor(log2 n)
        inner.append({node for node, c in kids.items() if c})
    assert not inner[0] & inner[1]  # no node forwards in both trees
    assert first.graph["root"] == 0 and second.graph["root"] == n - 1
    mirrored = {(n - 1 - u, n - 1 - v) for u, v in first.edges()}
    assert {tuple(sorted(e)) for e in mirrored} == {tuple(sorted(e)) for e in second.edges()}


def test_chain_and_binary_trees():
    assert nx.is_isomorphic(T.chain_tree(6), nx.path_graph(6))
    assert T.chain_tree(6).graph["root"] == 0
    assert T.binary_tree(7).graph["root"] == 0


def test_spanning_tree_kinds():
    graph = T.torus(16)
    assert set(T.spanning_tree(graph).edges()) == set(T.bfs_tree(graph).edges())
    assert T.spanning_tree(graph, "bfs", root=5).graph["root"] == 5
    assert nx.is_isomorphic(T.spanning_tree(graph, "chain"), nx.path_graph(16))
    assert set(T.spanning_tree(graph, "binary").edges()) == set(T.binary_tree(16).edges())
    pair = T.spanning_tree(graph, "double_binary")
    assert len(pair) == 2 and all(nx.is_tree(t) for t in pair)
    assert T.tree_kinds() == ["bfs", "chain", "binary", "double_binary"]
    with pytest.raises(TopologyError, match="'star'.*bfs"):
        T.spanning_tree(graph, "star")


def authors_neighbors(worker, n, reverse=False):
    """The neighbours of ``worker`` in the RelaySum authors' binary tree, as their
    ``BinaryTreeTopology.neighbors`` indexes it (epfml/relaysgd ``topologies.py``): worker 0
    has the single neighbour 1; worker ``w >= 1`` has parent ``w // 2`` and children ``2w``,
    ``2w + 1`` below ``n``; ``reverse`` relabels ``w -> n - 1 - w``."""
    if n < 2:
        return []
    w = n - 1 - worker if reverse else worker
    out = [1] if w == 0 else [w // 2] + [c for c in (2 * w, 2 * w + 1) if c < n]
    return [n - 1 - v for v in out] if reverse else out


def authors_tree(n, reverse=False):
    edges = {tuple(sorted((w, v))) for w in range(n) for v in authors_neighbors(w, n, reverse)}
    return nx.Graph(sorted(edges))


def edge_set(tree):
    return {tuple(sorted(e)) for e in tree.edges()}


@pytest.mark.parametrize("n", [2, 3, 4, 5, 7, 8, 15, 16, 17, 31, 32, 33, 64, 100])
def test_relaysum_layout_is_the_authors_tree(n):
    ours = T.binary_tree(n, layout="relaysum")
    ref = authors_tree(n)
    assert edge_set(ours) == edge_set(ref) and nx.is_tree(ours)
    assert nx.diameter(ours) == nx.diameter(ref)
    assert max(d for _, d in ours.degree()) == max(d for _, d in ref.degree())
    first, second = T.double_binary_trees(n, layout="relaysum")
    assert edge_set(first) == edge_set(ref)
    assert edge_set(second) == edge_set(authors_tree(n, reverse=True))
    inner = [{v for v in t if t.degree(v) > 1} for t in (first, second)]
    # every node is a leaf in one of the trees for even n; for odd n, (n-1)/2 is inner in both
    assert inner[0] & inner[1] == (set() if n % 2 == 0 else {(n - 1) // 2} - {0, n - 1})


@pytest.mark.parametrize("k", range(2, 8))
def test_binary_tree_diameters_at_powers_of_two(k):
    """n = 2^k: the authors' tree is the perfect tree on 2^k - 1 nodes plus a leaf at its root
    (diameter 2k - 2); the heap hangs node 2^k - 1 one level deeper (2k - 1). Both: degree 3."""
    n = 2**k
    heap, ref = T.binary_tree(n), T.binary_tree(n, layout="relaysum")
    assert nx.diameter(ref) == 2 * k - 2 and nx.diameter(heap) == 2 * k - 1
    assert max(d for _, d in ref.degree()) == 3
    assert max(d for _, d in heap.degree()) == (3 if n > 4 else 2)
    assert edge_set(heap) == {((i - 1) // 2, i) for i in range(1, n)}


def test_layout_through_spanning_tree_and_build():
    graph = T.complete(16)
    assert edge_set(T.spanning_tree(graph, "binary", layout="relaysum")) == edge_set(
        authors_tree(16))
    assert edge_set(T.build("binary_tree", 16, layout="relaysum")) == edge_set(authors_tree(16))
    assert T.build("binary_tree", 16).graph["layout"] == "heap"
    with pytest.raises(TopologyError, match=r"layout must be one of \['heap', 'relaysum'\], "
                                            r"got layout='bfs'"):
        T.binary_tree(8, layout="bfs")
