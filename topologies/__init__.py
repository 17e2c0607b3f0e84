"""Topologies for decentralized learning: graphs, mixing matrices, schedules, trees, spectra.

Depends on numpy, scipy and networkx only (never torch).

>>> import topologies
>>> W = topologies.mixing_matrix(topologies.build("ring", 8))
>>> round(topologies.rho(W), 6)
0.804738
"""

from topologies.builders import (
    binary_tree,
    chain,
    complete,
    erdos_renyi,
    exponential,
    grid,
    hypercube,
    random_regular,
    ring,
    small_world,
    star,
    torus,
)
from topologies.errors import TopologyError
from topologies.external import from_file, social, social_names
from topologies.mixing import check_connected, check_mixing, lazy, mixing_matrix, rules
from topologies.registry import build, names
from topologies.schedules import (
    Churn,
    Cycle,
    OnePeerExponential,
    RandomGraph,
    RandomMatching,
    Schedule,
    Static,
    make_schedule,
    schedule_names,
)
from topologies.spectral import (
    averages_exactly,
    consensus_rate,
    effective_rate,
    expected_rate,
    graph_stats,
    lambda_2,
    mixing_time,
    rho,
    spectral_gap,
    summary,
)
from topologies.trees import (
    bfs_tree,
    chain_tree,
    double_binary_trees,
    spanning_tree,
    tree_kinds,
)

__all__ = [
    "TopologyError",
    # builders
    "ring",
    "chain",
    "star",
    "complete",
    "torus",
    "grid",
    "hypercube",
    "exponential",
    "binary_tree",
    "erdos_renyi",
    "random_regular",
    "small_world",
    "social",
    "social_names",
    "from_file",
    # registry
    "build",
    "names",
    # mixing
    "mixing_matrix",
    "lazy",
    "rules",
    "check_mixing",
    "check_connected",
    # schedules
    "Schedule",
    "Static",
    "OnePeerExponential",
    "RandomMatching",
    "RandomGraph",
    "Cycle",
    "Churn",
    "make_schedule",
    "schedule_names",
    # trees
    "bfs_tree",
    "chain_tree",
    "double_binary_trees",
    "spanning_tree",
    "tree_kinds",
    # spectral
    "rho",
    "spectral_gap",
    "consensus_rate",
    "lambda_2",
    "mixing_time",
    "graph_stats",
    "summary",
    "effective_rate",
    "expected_rate",
    "averages_exactly",
]
