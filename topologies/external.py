"""Graphs that come from outside: networkx's bundled social networks and graph files.

Both return an undirected :class:`networkx.Graph` relabelled to the integers ``0..n-1`` (in a
stable order of the original labels) and raise :class:`~topologies.errors.TopologyError` with
one line naming the bad name or file.
"""

from __future__ import annotations

import os

import networkx as nx

from topologies.builders import _empty
from topologies.errors import TopologyError

__all__ = ["from_file", "social", "social_names"]

_SOCIAL = {
    "karate": nx.karate_club_graph,
    "davis": nx.davis_southern_women_graph,
    "florentine": nx.florentine_families_graph,
    "les_miserables": nx.les_miserables_graph,
}


def social_names() -> list[str]:
    """Names accepted by :func:`social`."""
    return list(_SOCIAL)


def _relabeled(source: nx.Graph, name: str, order: list) -> nx.Graph:
    """Copy ``source``'s structure onto nodes ``0..n-1`` (old label kept as ``label``)."""
    index = {node: i for i, node in enumerate(order)}
    graph = _empty(len(order), name, directed=source.is_directed())
    for node, i in index.items():
        graph.nodes[i]["label"] = node
    graph.add_edges_from((index[u], index[v]) for u, v in source.edges() if u != v)
    return graph


def social(name: str = "karate") -> nx.Graph:
    """A social network bundled with networkx, relabelled to ``0..n-1``.

    The original label of each node is kept in the node attribute ``label``.

    Parameters
    ----------
    name : str
        ``"karate"`` (Zachary's karate club, 34 nodes), ``"davis"`` (Davis southern
        women, 32), ``"florentine"`` (Florentine families, 15) or ``"les_miserables"``
        (77).

    Examples
    --------
    >>> social("florentine").number_of_nodes()
    15
    """
    if name not in _SOCIAL:
        raise TopologyError(f"unknown social graph {name!r}; choose one of {social_names()}")
    source = _SOCIAL[name]()
    return _relabeled(source, f"social:{name}", list(source.nodes()))


_READERS = {
    ".edgelist": "edgelist",
    ".txt": "edgelist",
    ".csv": "edgelist",
    ".graphml": "graphml",
    ".adjlist": "adjlist",
}


def _sort_key(label: object) -> tuple:
    return (0, label, "") if isinstance(label, int) else (1, 0, str(label))


def _read(path: str, kind: str, ext: str) -> nx.Graph:
    if kind == "graphml":
        return nx.read_graphml(path)
    if kind == "adjlist":
        return nx.read_adjlist(path)
    delimiter = "," if ext == ".csv" else None
    return nx.read_edgelist(path, delimiter=delimiter, data=False)


def from_file(path: str | os.PathLike) -> nx.Graph:
    """Read a graph file and relabel its nodes to ``0..n-1``.

    The format follows the extension: ``.edgelist``/``.txt`` (whitespace-separated
    edge list), ``.csv`` (comma-separated edge list), ``.graphml``, ``.adjlist``. Labels
    that are all integers are sorted numerically, otherwise as strings; the original
    label of each node is kept in the node attribute ``label``. Self-loops and parallel
    edges are dropped; a directed GraphML file gives a :class:`networkx.DiGraph`.

    Parameters
    ----------
    path : str or path-like
        The file to read.

    Raises
    ------
    TopologyError
        If the extension is unknown, the file cannot be read, or the graph has fewer
        than 2 nodes or is not connected (strongly connected if directed).
    """
    path = os.fspath(path)
    ext = os.path.splitext(path)[1].lower()
    if ext not in _READERS:
        raise TopologyError(
            f"cannot tell the format of graph file {path!r} from its extension {ext!r}; "
            f"use one of {sorted(_READERS)}"
        )
    try:
        source = _read(path, _READERS[ext], ext)
    except Exception as error:  # networkx raises many types for bad files
        reason = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise TopologyError(f"cannot read graph file {path!r}: {reason}") from error
    labels = list(source.nodes())
    try:
        ints = [int(label) for label in labels]
    except (TypeError, ValueError):
        ints = None
    if ints is not None and len(set(ints)) == len(labels):
        order = [label for _, label in sorted(zip(ints, labels, strict=True))]
    else:
        order = sorted(labels, key=_sort_key)
    graph = _relabeled(source, f"file:{os.path.basename(path)}", order)
    if graph.number_of_nodes() < 2:
        raise TopologyError(
            f"graph file {path!r} needs at least 2 nodes, got {graph.number_of_nodes()}"
        )
    connected = nx.is_strongly_connected(graph) if graph.is_directed() else nx.is_connected(graph)
    if not connected:
        parts = (
            nx.number_strongly_connected_components(graph)
            if graph.is_directed()
            else nx.number_connected_components(graph)
        )
        raise TopologyError(f"graph file {path!r} is not connected: it has {parts} components")
    return graph
