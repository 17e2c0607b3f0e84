"""Build any topology by name: ``build("torus", 16, shape=(4, 4))``."""

from __future__ import annotations

import inspect
from collections.abc import Callable

import networkx as nx

from topologies import builders, external
from topologies.errors import TopologyError

__all__ = ["build", "names"]


def _social(*, graph: str = "karate") -> nx.Graph:
    return external.social(graph)


def _file(*, path: str) -> nx.Graph:
    return external.from_file(path)


# name -> builder; builders taking ``n`` get it first, those taking ``seed`` get it too.
_BUILDERS: dict[str, Callable[..., nx.Graph]] = {
    "ring": builders.ring,
    "chain": builders.chain,
    "star": builders.star,
    "complete": builders.complete,
    "torus": builders.torus,
    "grid": builders.grid,
    "hypercube": builders.hypercube,
    "exponential": builders.exponential,
    "binary_tree": builders.binary_tree,
    "erdos_renyi": builders.erdos_renyi,
    "random_regular": builders.random_regular,
    "small_world": builders.small_world,
    "social": _social,
    "file": _file,
}


def names() -> list[str]:
    """Names accepted by :func:`build`.

    Examples
    --------
    >>> names()[:3]
    ['ring', 'chain', 'star']
    """
    return list(_BUILDERS)


def _options(builder: Callable[..., nx.Graph]) -> list[str]:
    params = inspect.signature(builder).parameters
    return [p for p in params if p not in ("n", "seed")]


def build(name: str, n: int | None, *, seed: int = 0, **options: object) -> nx.Graph:
    """Build the topology ``name`` on ``n`` nodes.

    Parameters
    ----------
    name : str
        One of :func:`names`.
    n : int or None
        Number of nodes. For ``social`` and ``file`` the graph fixes its own size:
        ``n`` must match it or be ``None``.
    seed : int
        Seed of random families (ignored by deterministic ones).
    **options
        Options of the family's builder, e.g. ``shape`` for ``torus``/``grid``, ``p`` for
        ``erdos_renyi``, ``degree`` for ``random_regular``, ``k`` and ``p`` for
        ``small_world``, ``graph`` (the social graph's name) for ``social``, ``path``
        for ``file``.

    Returns
    -------
    networkx.Graph or networkx.DiGraph
        Nodes ``0..n-1``.

    Examples
    --------
    >>> build("torus", 6, shape=(2, 3)).number_of_nodes()
    6
    >>> build("social", None, graph="karate").number_of_nodes()
    34
    """
    if name not in _BUILDERS:
        raise TopologyError(f"unknown topology {name!r}; choose one of {names()}")
    builder = _BUILDERS[name]
    accepted = _options(builder)
    for option in options:
        if option not in accepted:
            allowed = ", ".join(accepted) if accepted else "none"
            raise TopologyError(
                f"topology {name!r} has no option {option!r}; accepted options: {allowed}"
            )
    params = inspect.signature(builder).parameters
    kwargs = dict(options)
    if "seed" in params:
        kwargs["seed"] = seed
    if name == "file" and "path" not in kwargs:
        raise TopologyError("topology 'file' needs the option path=<graph file>")
    if "n" in params:
        if n is None:
            raise TopologyError(f"topology {name!r} needs the number of nodes n, got n=None")
        return builder(n, **kwargs)
    graph = builder(**kwargs)
    if n is not None and n != graph.number_of_nodes():
        raise TopologyError(
            f"topology {name!r} has {graph.number_of_nodes()} nodes but n={n} was asked for; "
            "pass n=None or the graph's size"
        )
    return graph
