"""Spectral-gap report: one row of numbers per (topology, n), and its formatters.

For a static topology the row holds the numbers of its mixing matrix ``W``
(:func:`topologies.summary`): ``rho = ||W - 11^T/n||_2``, ``spectral_gap = 1 - rho``,
``p = 1 - rho**2`` (the consensus rate of Koloskova et al., 2020, "A unified theory of
decentralized SGD with changing topology and local updates", Assumption 4),
``lambda_2`` (second largest eigenvalue; ``None`` for non-symmetric ``W``),
``mixing_time`` (rounds until ``rho**t <= 1e-3``), ``diameter``, ``max_degree``, ``edges``.

For a time-varying schedule (``one_peer_exponential``, ``random_matching``,
``random_graph``) the row adds ``tau`` (default ``ceil(log2 n)``) and the rate of
Koloskova et al. (2020, Assumption 4) over windows of ``tau`` rounds,
``E ||X M - X_bar||_F^2 <= (1 - p) ||X - X_bar||_F^2`` with ``M = W(s+tau-1) ... W(s)``:

* ``effective_p``: for the random schedules the expected rate
  ``1 - lambda_max(E[(M - 11^T/n)^T (M - 11^T/n)])``, a Monte-Carlo estimate over
  ``WINDOWS`` windows with standard error ``effective_p_se``
  (:func:`topologies.expected_rate`; random matching at ``tau = 1`` has
  ``n / (2 (n - 1))`` for even ``n``); for the deterministic ``one_peer_exponential``
  the rate every window must meet, ``worst_window_p`` (error ``0``);
* ``worst_window_p = 1 - max_k ||W(s_k+tau-1) ... W(s_k) - 11^T/n||_2**2`` over 8
  windows (:func:`topologies.effective_rate`): for a random schedule the worst of 8
  draws, which falls as more windows are drawn (``0`` for random matching at
  ``tau = 1``: one matching leaves every pair apart from the rest).

The per-round columns are those implied by ``effective_p``:
``rho = (1 - effective_p) ** (1 / (2 tau))``, ``spectral_gap = 1 - rho``,
``p = 1 - rho**2``, ``lambda_2 = None`` (no single matrix), ``mixing_time`` = rounds (whole
windows) until the window contraction reaches ``1e-3``; the graph columns describe the
union of the communication graphs of rounds ``0..tau-1``.

With a drop probability ``q`` (``drop``, ``gossip topology report --drop Q``) a static row
adds the expected consensus rate of one D-SGD gossip step when each message is lost with
probability ``q`` and its weight goes to the diagonal (:mod:`topologies.lossy`):

* ``drop_p_exact``: the closed form ``1 - lambda_max(E[W_q^T W_q] - J)`` for losses per
  undirected link, ``E[W_q^2] = (I - (1 - q)(I - W))^2 + 2 q (1 - q) sum_e w_e^2 L_e``
  (:func:`topologies.lossy.drop_rate`; ``None`` for a non-symmetric ``W``);
* ``drop_p`` (``drop_p_se``): the same rate measured by Monte Carlo over ``WINDOWS`` drawn
  rounds (:func:`topologies.expected_rate` on a :class:`topologies.lossy.DropSchedule`);
* ``drop_p_directed`` (``drop_p_directed_se``): measured with losses per direction (``W_q``
  only row stochastic; no closed form).

Directed topologies (``exponential``) get the ``in_uniform`` rule whenever an undirected
rule was asked for; the row's ``weights`` says which rule was used.

Examples
--------
>>> rows = report_rows(["ring"], [4])
>>> round(rows[0]["rho"], 6)  # 1/3 + 2/3 cos(2 pi / 4)
0.333333
"""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Iterable, Sequence

__all__ = [
    "DEFAULT_TOPOLOGIES",
    "ROW_KEYS",
    "SCHEDULE_KEYS",
    "DROP_KEYS",
    "drop_columns",
    "MIXING_TOL",
    "WINDOWS",
    "default_tau",
    "topology_row",
    "schedule_row",
    "report_rows",
    "columns",
    "format_value",
    "format_table",
    "to_json",
    "to_csv",
]

DEFAULT_TOPOLOGIES = [
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
]
ROW_KEYS = (
    "topology",
    "nodes",
    "weights",
    "rho",
    "spectral_gap",
    "p",
    "lambda_2",
    "mixing_time",
    "diameter",
    "max_degree",
    "edges",
)
SCHEDULE_KEYS = ("effective_p", "effective_p_se", "worst_window_p", "tau")
DROP_KEYS = ("drop", "drop_p_exact", "drop_p", "drop_p_se", "drop_p_directed",
             "drop_p_directed_se")
#: Windows of ``tau`` rounds averaged for the expected rate of a random schedule.
WINDOWS = 256
#: Consensus tolerance of the ``mixing_time`` column (same as :func:`topologies.summary`).
MIXING_TOL = 1e-3
#: Schedules that build their own graphs each round, so they fit in a report by name.
_SELF_CONTAINED = ("one_peer_exponential", "random_matching", "random_graph")
_PAIRWISE = ("one_peer_exponential", "random_matching")
#: Schedules drawn at random each round: their ``effective_p`` is an expectation.
_RANDOM = ("random_matching", "random_graph")


def default_tau(n: int) -> int:
    """``ceil(log2 n)`` (at least 1): the period of the one-peer exponential graph.

    >>> default_tau(8), default_tau(9), default_tau(2)
    (3, 4, 1)
    """
    return max(1, (int(n) - 1).bit_length())


def _rule_for(graph, weights: str) -> str:
    """``weights``, or ``in_uniform`` for a digraph when an undirected rule was asked for."""
    if graph.is_directed() and weights != "in_uniform":
        return "in_uniform"
    return weights


def drop_columns(W, q: float, seed: int = 0) -> dict:
    """The :data:`DROP_KEYS` of the mixing matrix ``W`` under drop probability ``q``.

    >>> import topologies
    >>> row = drop_columns(topologies.mixing_matrix(topologies.build("complete", 2)), 0.25)
    >>> row["drop_p_exact"], abs(row["drop_p"] - 0.75) < 4 * row["drop_p_se"]
    (0.75, True)
    """
    import numpy as np

    import topologies
    from topologies.lossy import DropSchedule, drop_rate

    dense = W.toarray() if hasattr(W, "toarray") else np.asarray(W)
    out: dict = {"drop": q}
    out["drop_p_exact"] = drop_rate(W, q) if np.allclose(dense, dense.T) else None
    for key, symmetric in (("drop_p", True), ("drop_p_directed", False)):
        p, se = topologies.expected_rate(DropSchedule(W, q, seed, symmetric), 1,
                                         windows=WINDOWS)
        out[key], out[f"{key}_se"] = p, se
    return out


def topology_row(name: str, n: int, weights: str = "metropolis", seed: int = 0,
                 drop: float = 0.0, **options: object) -> dict:
    """The report row of the static topology ``name`` on ``n`` nodes (with the
    :data:`DROP_KEYS` when ``drop > 0``).

    Raises
    ------
    TopologyError
        The topology does not exist, does not fit ``n`` or is disconnected.
    """
    import topologies

    graph = topologies.build(name, n, seed=seed, **options)
    topologies.check_connected(graph)
    rule = _rule_for(graph, weights)
    W = topologies.mixing_matrix(graph, rule)
    numbers = topologies.summary(graph, W)
    row = {"topology": name, "nodes": graph.number_of_nodes(), "weights": rule}
    row.update({key: numbers[key] for key in ROW_KEYS[3:]})
    if drop > 0:
        row.update(drop_columns(W, drop, seed))
    return row


def _window_rounds(contraction: float, tau: int, tol: float = MIXING_TOL) -> float:
    """Rounds (whole windows of ``tau``) until ``contraction**k <= tol``; inf if none."""
    if contraction >= 1.0 - 1e-12:
        return math.inf
    if contraction <= 1e-12:
        return tau
    windows = max(1, math.ceil(math.log(tol) / math.log(contraction) - 1e-9))
    while contraction**windows > tol:
        windows += 1
    return tau * windows


def _union_graph(matrices: Iterable):
    """Graph of the off-diagonal non-zeros of the matrices (undirected when symmetric)."""
    import networkx as nx
    import numpy as np
    import scipy.sparse as sp

    matrices = list(matrices)
    n = matrices[0].shape[0]
    A = sp.csr_array((n, n))
    for W in matrices:
        A = A + abs(sp.csr_array(W))
    A = sp.coo_array(A)
    mask = (A.row != A.col) & (A.data > 0)
    receivers, senders = A.row[mask], A.col[mask]
    symmetric = set(zip(receivers.tolist(), senders.tolist())) == set(
        zip(senders.tolist(), receivers.tolist())
    )
    graph = nx.Graph() if symmetric else nx.DiGraph()
    graph.add_nodes_from(range(n))
    graph.add_edges_from(zip(np.asarray(senders).tolist(), np.asarray(receivers).tolist()))
    return graph


def schedule_row(name: str, n: int, weights: str = "metropolis", seed: int = 0,
                 tau: int | None = None) -> dict:
    """The report row of the time-varying schedule ``name`` on ``n`` nodes (module doc).

    Raises
    ------
    TopologyError
        Unknown schedule, one that needs a base graph, or a bad ``n`` / ``tau``.
    """
    import topologies

    if name not in topologies.schedule_names():
        raise topologies.TopologyError(
            f"unknown schedule {name!r}; choose one of {topologies.schedule_names()}"
        )
    if name not in _SELF_CONTAINED:
        raise topologies.TopologyError(
            f"schedule {name!r} needs a base graph and has no report row; "
            f"report schedules are {list(_SELF_CONTAINED)}"
        )
    tau = default_tau(n) if tau is None else tau
    if isinstance(tau, bool) or not isinstance(tau, int) or tau < 1:
        raise topologies.TopologyError(f"tau must be an integer >= 1, got tau={tau!r}")
    schedule = topologies.make_schedule(name, n, rule=weights, seed=seed)
    # clipped to [0, 1]: ``1 - norm**2`` can round to -4e-16 when the norm is 1
    worst_p = min(1.0, max(0.0, topologies.effective_rate(schedule, tau)))
    if name in _RANDOM:
        effective_p, effective_p_se = topologies.expected_rate(schedule, tau, windows=WINDOWS)
        effective_p = min(1.0, max(0.0, effective_p))
    else:
        effective_p, effective_p_se = worst_p, 0.0
    contraction = math.sqrt(min(1.0, max(0.0, 1.0 - effective_p)))
    per_round = contraction ** (1.0 / tau)
    stats = topologies.graph_stats(_union_graph(schedule.matrix(t) for t in range(tau)))
    return {
        "topology": name,
        "nodes": schedule.n,
        "weights": "pairwise" if name in _PAIRWISE else weights,
        "rho": per_round,
        "spectral_gap": 1.0 - per_round,
        "p": 1.0 - per_round**2,
        "lambda_2": None,
        "mixing_time": _window_rounds(contraction, tau),
        "diameter": stats["diameter"],
        "max_degree": stats["max_degree"],
        "edges": stats["edges"],
        "effective_p": effective_p,
        "effective_p_se": effective_p_se,
        "worst_window_p": worst_p,
        "tau": tau,
    }


def _check_names(kind: str, given: Sequence[str], valid: Sequence[str]) -> None:
    from topologies import TopologyError

    for name in given:
        if name not in valid:
            raise TopologyError(f"unknown {kind} {name!r}; choose one of {list(valid)}")


def report_rows(
    topologies: list[str] | None = None,
    nodes: Sequence[int] = (8, 16, 32, 64),
    weights: str = "metropolis",
    schedules: list[str] | None = None,
    seed: int = 0,
    tau: int | None = None,
    skipped: list[str] | None = None,
    drop: float = 0.0,
) -> list[dict]:
    """One row per (topology, n), then one per (schedule, n); see the module doc.

    Parameters
    ----------
    topologies : list of str, optional
        Names from :func:`topologies.names` (default :data:`DEFAULT_TOPOLOGIES`).
    nodes : sequence of int
        Node counts, each >= 2.
    weights : str
        Mixing rule from :func:`topologies.rules`.
    schedules : list of str, optional
        Time-varying schedules to add (``one_peer_exponential``, ``random_matching``,
        ``random_graph``).
    seed : int
        Seed of random graphs and schedules.
    tau : int, optional
        Window of the schedules' effective rate (default ``ceil(log2 n)`` per ``n``).
    skipped : list, optional
        Receives one note per combination that does not fit (``"torus n=8: ..."``), with
        the reason from the :class:`~topologies.TopologyError`.
    drop : float
        Drop probability ``q`` of the :data:`DROP_KEYS` columns of the static rows (0: none).

    Returns
    -------
    list of dict
        Keys :data:`ROW_KEYS`, plus :data:`SCHEDULE_KEYS` for schedule rows.

    Raises
    ------
    TopologyError
        Unknown names or rule, bad ``nodes``, or no combination fits at all (e.g. only
        ``hypercube`` asked for with ``n = 12``).
    """
    import topologies as topo

    names = list(DEFAULT_TOPOLOGIES if topologies is None else topologies)
    schedules = list(schedules or [])
    _check_names("topology", names, topo.names())
    _check_names("schedule", schedules, topo.schedule_names())
    if weights not in topo.rules():
        raise topo.TopologyError(f"unknown mixing rule {weights!r}; choose one of {topo.rules()}")
    nodes = list(nodes)
    if not nodes:
        raise topo.TopologyError("nodes must list at least one node count, got none")
    for n in nodes:
        if isinstance(n, bool) or not isinstance(n, int) or n < 2:
            raise topo.TopologyError(f"every node count must be an integer >= 2, got {n!r}")
    if not names and not schedules:
        raise topo.TopologyError("nothing to report: no topologies and no schedules given")
    notes = [] if skipped is None else skipped
    rows = []
    if isinstance(drop, bool) or not isinstance(drop, (int, float)) or not 0 <= drop < 1:
        raise topo.TopologyError(f"drop must be a number in [0, 1), got {drop!r}")
    jobs = [(name, topology_row, {"drop": drop}) for name in names]
    jobs += [(name, schedule_row, {"tau": tau}) for name in schedules]
    for name, make_row, extra in jobs:
        for n in nodes:
            try:
                rows.append(make_row(name, n, weights=weights, seed=seed, **extra))
            except topo.TopologyError as error:
                notes.append(f"{name} n={n}: {error}")
    if not rows:
        raise topo.TopologyError(f"no topology fits the node counts {nodes}: {notes[0]}")
    return rows


def columns(rows: Sequence[dict]) -> list[str]:
    """Keys present in any row, in report order (extra keys last, in first-seen order)."""
    present = []
    for row in rows:
        for key in row:
            if key not in present:
                present.append(key)
    order = [k for k in (*ROW_KEYS, *SCHEDULE_KEYS, *DROP_KEYS) if k in present]
    return order + [k for k in present if k not in order]


def format_value(value: object) -> str:
    """Text of one cell: floats to 4 significant digits, ``None`` as ``-``.

    >>> format_value(0.8047378541243649), format_value(1e-20), format_value(None), format_value(12)
    ('0.8047', '1e-20', '-', '12')
    """
    if value is None:
        return "-"
    if isinstance(value, float):
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return f"{value:.4g}"
    return str(value)


def format_table(rows: Sequence[dict]) -> str:
    """Aligned plain-text table: text columns left-aligned, numbers right-aligned."""
    keys = columns(rows)
    cells = [[format_value(row.get(k)) for k in keys] for row in rows]
    widths = [max([len(k)] + [len(line[i]) for line in cells]) for i, k in enumerate(keys)]
    text = [
        not all(isinstance(row.get(k), int | float | type(None)) for row in rows) for k in keys
    ]

    def line(values: Sequence[str]) -> str:
        parts = [
            v.ljust(w) if left else v.rjust(w)
            for v, w, left in zip(values, widths, text)
        ]
        return "  ".join(parts).rstrip()

    out = [line(keys), line(["-" * w for w in widths])]
    out += [line(c) for c in cells]
    return "\n".join(out) + "\n"


def _jsonable(value: object) -> object:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def to_json(rows: Sequence[dict]) -> str:
    """JSON list of the row objects (infinite values as ``null``)."""
    data = [{k: _jsonable(v) for k, v in row.items()} for row in rows]
    return json.dumps(data, indent=2, allow_nan=False) + "\n"


def to_csv(rows: Sequence[dict]) -> str:
    """CSV with a header of :func:`columns`; floats at full precision, ``None`` empty."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns(rows), lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: ("" if v is None else v) for k, v in row.items()})
    return buffer.getvalue()
