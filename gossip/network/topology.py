"""The ``[topology]`` section of a run configuration: its keys, and the graph and schedule it
builds (``topologies.build`` + ``topologies.make_schedule``), with every topology error turned
into a one-line :class:`~gossip.errors.ConfigError` naming the key."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from gossip.errors import ConfigError
from gossip.options import SEED_MAX, Option, int_range, resolve, unknown_name

__all__ = [
    "GRAPH_SCHEDULES",
    "SCHEDULE_KEYS",
    "TOPOLOGY_OPTIONS",
    "build_topology",
    "resolve_topology",
]

#: ``[topology]``: the graph (``topologies.build``), its mixing rule and the schedule.
TOPOLOGY_OPTIONS: list[Option] = [
    Option("name", str, "ring", "graph family (topologies.names())"),
    Option("weights", str, "metropolis", "mixing rule (topologies.rules())"),
    Option("schedule", str, "static", "W(t) per round (topologies.schedule_names())"),
    Option("seed", int, None, "seed of random graphs and schedules (default: the run seed)",
           check=int_range(0, SEED_MAX)),
    Option("shape", list, None, "torus/grid: [rows, cols]"),
    Option("degree", int, None, "random_regular / random_graph: node degree"),
    Option("p", float, None, "erdos_renyi / small_world / random_graph: edge probability"),
    Option("k", int, None, "small_world: neighbours on the ring"),
    Option("graph", str, None, "social: which social graph (karate, ...)"),
    Option("layout", str, None, "binary_tree: node order, heap (default) or relaysum (the "
           "RelaySum authors' tree)"),
    Option("path", str, None, "file: graph file networkx reads"),
    Option("kind", str, None, "random_graph schedule: erdos_renyi or random_regular"),
    Option("offline", float, None, "churn schedule: fraction of nodes offline per round"),
    Option("graphs", list, None, "cycle schedule: topology names gone through in order"),
]
#: Options of ``[topology]`` that go to the schedule rather than to the graph builder.
SCHEDULE_KEYS = {"random_graph": ("kind", "p", "degree"), "churn": ("offline",), "cycle": ()}
#: Schedules that mix along the base graph.
GRAPH_SCHEDULES = ("static", "churn", "random_matching")


def resolve_topology(given: dict, top: dict) -> dict:
    """The resolved ``[topology]`` section; unknown graph, rule or schedule names raise
    ConfigError listing the valid ones. ``seed`` defaults to the run seed ``top["seed"]``."""
    import topologies

    out = resolve("topology", given, TOPOLOGY_OPTIONS)
    if out["name"] not in topologies.names():
        raise unknown_name("topology", out["name"], topologies.names())
    if out["weights"] not in topologies.rules():
        raise unknown_name("mixing rule topology.weights", out["weights"], topologies.rules())
    if out["schedule"] not in topologies.schedule_names():
        raise unknown_name("schedule topology.schedule", out["schedule"],
                           topologies.schedule_names())
    if out["seed"] is None:
        out["seed"] = top["seed"]
    return out


def _split_topology(topo: dict) -> tuple[dict, dict]:
    """(builder options, schedule options) of a resolved ``[topology]``."""
    schedule = topo["schedule"]
    skip = {"name", "weights", "schedule", "seed", "graphs"}
    to_schedule = set(SCHEDULE_KEYS.get(schedule, ()))
    builder, sched = {}, {}
    for key, value in topo.items():
        if key in skip or value is None:
            continue
        if key in to_schedule:
            sched[key] = value
        else:
            builder[key] = tuple(value) if key == "shape" else value
    return builder, sched


def build_topology(cfg: Mapping[str, Any]):
    """``(graph, schedule)`` of a resolved config; bad values raise ConfigError naming the key.

    The graph is ``topologies.build(topology.name, nodes, seed=topology.seed, **options)``;
    the schedule is ``topologies.make_schedule(topology.schedule, nodes, ...)`` and mixes along
    the graph for the static, churn and random_matching schedules. The graph must be
    connected (else nodes could never agree) and ``W(0)`` must exist under the rule.
    """
    import topologies

    topo, n = cfg["topology"], cfg["nodes"]
    builder, sched = _split_topology(topo)
    graph = _call_topology(
        lambda: topologies.build(topo["name"], n, seed=topo["seed"], **builder), builder, "name"
    )
    schedule_name = topo["schedule"]
    if schedule_name == "cycle":
        names = topo["graphs"] or [topo["name"]]
        for g in names:
            if not isinstance(g, str):
                raise ConfigError(f"topology.graphs must list topology names, got {g!r}")
        sched["graphs"] = [
            _call_topology(lambda g=g: topologies.build(g, n, seed=topo["seed"]), {}, "graphs")
            for g in names
        ]
    elif topo["graphs"] is not None:
        raise ConfigError("topology.graphs is only used by topology.schedule='cycle'")
    kwargs = {"graph": graph} if schedule_name in GRAPH_SCHEDULES else {}
    schedule = _call_topology(
        lambda: topologies.make_schedule(
            schedule_name, n, rule=topo["weights"], seed=topo["seed"], **kwargs, **sched
        ),
        sched,
        "schedule",
    )
    _check_fits(topo, graph, schedule)
    return graph, schedule


def _call_topology(fn, options: dict, fallback: str):
    from topologies import TopologyError

    try:
        return fn()
    except TopologyError as err:
        message = str(err)
        key = next((k for k in options if repr(k) in message or f"{k}=" in message), fallback)
        raise ConfigError(f"topology.{key}: {message}") from None


def _check_fits(topo: Mapping[str, Any], graph, schedule) -> None:
    """ConfigError unless ``graph`` is connected and ``W(0)`` exists under the rule."""
    import topologies

    try:
        topologies.check_connected(graph)
    except topologies.TopologyError as err:
        raise ConfigError(
            f"topology.name={topo['name']!r}: {err}; nodes could never agree"
        ) from None
    try:
        schedule.matrix(0)
    except topologies.TopologyError as err:
        raise ConfigError(f"topology.weights={topo['weights']!r}: {err}") from None
