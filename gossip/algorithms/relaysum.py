"""RelaySum/Model and RelaySum/Grad on a spanning tree or on double binary trees.

Vogels, Karimireddy, Jaggi et al., "RelaySum for Decentralized Deep Learning on Heterogeneous
Data" (NeurIPS 2021). On a spanning tree ``T`` node ``i`` sends each tree neighbour ``j`` the
sum of its own value and of what its *other* neighbours sent it in the previous round, with a
count::

    m_{i->j}^t = v_i^t + sum_{k in N_T(i) \\ j} m_{k->i}^{t-1},     m^{-1} = 0
    c_{i->j}^t = 1     + sum_{k in N_T(i) \\ j} c_{k->i}^{t-1},     c^{-1} = 0

so ``m_{j->i}^t`` carries ``v_k^{t - d(k, i) + 1}`` of every node ``k`` behind ``j``, each
exactly once: after ``D`` rounds (``D`` the tree's diameter) every node has received every
other node's value (``N_i = sum_j c_{j->i} = n - 1``), and fixed values are averaged
exactly, not before.

RelaySum/Model (``v = x^{t+1/2} = x^t - eta g``), missing mass filled as chosen by
``missing`` (``own``: the node's own half-step model; ``initial``: its ``x^0``, as in the
reference code of epfml/relaysgd)::

    x_i^{t+1} = (x_i^{t+1/2} + sum_j m_{j->i}^t + (n - 1 - N_i^t) fill_i) / n

Averaging delayed models keeps only ``1/c`` of each update (``c = 1 + `` the mean delay, 5.375
on a chain of 16); ``lr_correction = "auto"`` (default) scales ``eta`` by ``c`` as the authors
do, so the average moves as under all-reduce (:mod:`gossip.algorithms.relay_correction`).

RelaySum/Grad relays updates (``v = u = eta g``, or ``x^t - z^H`` after ``H`` local
steps; missing updates count as 0; every update arrives once, so no correction)::

    x_i^{t+1} = x_i^t - 1/n (u_i + sum_j m_{j->i}^t)

Trees (option ``tree``): ``bfs`` (of the run's graph, rooted at ``root``), ``chain`` and
``binary`` (overlay trees on the node ids), and ``double_binary``: the two mirrored binary
trees of :func:`topologies.trees.double_binary_trees` (Sanders et al. 2009, as in NCCL and in
the paper's experiments), where coordinates ``[0, ceil(d/2))`` run an independent RelaySum on
the first tree and ``[ceil(d/2), d)`` on the second, each with its own relay buffers and
counts. Every node is inner in at most one tree (``relaysum`` layout: for even ``n``), so
send/receive volume and relay roles balance. ``tree_layout`` orders the nodes of ``binary``
and ``double_binary``: ``heap`` (default, parent ``(i-1)//2``) or ``relaysum``, the authors'
``BinaryTreeTopology`` (parent ``i//2``; :func:`topologies.builders.binary_tree`), one hop
shorter at powers of two (diameter 6 vs 7, ``c`` 3.32 vs 3.50 at ``n = 16``; 8 vs 9, 4.78 vs
4.92 at 32).
``chain``, ``binary`` and ``double_binary`` are *overlays*: their edges are edges of
the complete graph on the nodes and need not be topology edges (``describe`` says so when a
tree edge is not a topology edge), as in the reference code, where the double binary trees
are themselves the topology. ``root`` only applies to ``bfs``.

Messages go through one ``comm.exchange`` per round, keyed by ``(src, dst)``; the payload is
``(m, c)``: the floats of every tree that contains the edge, concatenated in tree order, and
one int32 count per such tree. So a tree edge costs ``w_k`` floats plus 4 bytes per direction
(``w_k`` its tree's coordinate count), and an edge of both double binary trees is one message
of ``d`` floats and two counts. (The reference code interleaves the halves, ``x[k::2]``; the
contiguous halves here are the same method up to a permutation of coordinates.)

A message the communicator's channel loses counts as ``m = 0, c = 0``: the receiver heard
nothing from behind that edge this round, so its ``N_i`` drops and RelaySum/Model fills the
missing mass as for values that have not arrived yet.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import NamedTuple

import networkx as nx
import torch

from gossip.algorithms.base import Algorithm, Context, register_algorithm
from gossip.algorithms.local import sgd_steps
from gossip.algorithms.relay_correction import lr_correction
from gossip.options import at_least, non_negative
from gossip.registry import option
from topologies import tree_kinds
from topologies.builders import BINARY_LAYOUTS

__all__ = [
    "DoubleRelayState",
    "RelayPlan",
    "RelayState",
    "RelaySumGrad",
    "RelaySumModel",
    "coordinate_slices",
    "relay",
    "relay_plan",
    "relay_plans",
    "relay_trees",
]

#: Tree kinds ``algorithm.tree`` accepts (those of :func:`topologies.tree_kinds`).
TREES = tuple(tree_kinds())


@dataclass(frozen=True)
class RelayPlan:
    """The tree and, for the hosted nodes, the order of incoming tree edges in the state."""

    tree: nx.Graph
    diameter: int
    in_edges: tuple[tuple[int, int], ...]  # (k, i), i hosted, sorted by i then k

    @cached_property
    def index(self) -> dict[tuple[int, int], int]:
        """Row of each incoming edge ``(k, i)`` in the state's buffers."""
        return {e: r for r, e in enumerate(self.in_edges)}


class RelayState(NamedTuple):
    """State on one tree."""

    X: torch.Tensor
    R: torch.Tensor  # (len(in_edges), d): last message m_{k->i} per incoming edge
    Rc: torch.Tensor  # (len(in_edges),) int64: its count c_{k->i}
    X0: torch.Tensor  # initial models (fill of the missing mass with missing='initial')


class DoubleRelayState(NamedTuple):
    """State on double binary trees: relay buffers of each half on its own tree."""

    X: torch.Tensor
    R1: torch.Tensor  # (len(in_edges of tree 1), ceil(d/2))
    Rc1: torch.Tensor
    R2: torch.Tensor  # (len(in_edges of tree 2), d - ceil(d/2))
    Rc2: torch.Tensor
    X0: torch.Tensor


def _plan(tree: nx.Graph, nodes: range) -> RelayPlan:
    in_edges = tuple((k, i) for i in nodes for k in sorted(tree.neighbors(i)))
    return RelayPlan(tree, nx.diameter(tree) if len(tree) > 1 else 0, in_edges)


def relay_plans(
    graph: nx.Graph, kind: str, root: int, nodes: range, layout: str = "heap"
) -> tuple[RelayPlan, ...]:
    """The relay plan of each tree of ``kind`` (two for ``double_binary``, else one);
    ``layout`` is the node order of ``binary`` / ``double_binary``.

    Raises ``TopologyError`` for an unknown kind, a bad root or a disconnected ``graph``
    (``bfs``).
    """
    from topologies.trees import spanning_tree

    trees = spanning_tree(graph, kind=kind, root=root, layout=layout)
    trees = trees if isinstance(trees, tuple) else (trees,)
    return tuple(_plan(t, nodes) for t in trees)


def relay_plan(graph: nx.Graph, kind: str, root: int, nodes: range) -> RelayPlan:
    """Spanning tree ``kind`` of ``graph`` and the incoming edges of ``nodes`` (one tree)."""
    if kind == "double_binary":
        raise ValueError("relay_plan builds one tree; use relay_plans for 'double_binary'")
    (plan,) = relay_plans(graph, kind, root, nodes)
    return plan


def coordinate_slices(d: int, trees: int) -> list[slice]:
    """Coordinates relayed on each tree: all of them, or ``[0, ceil(d/2))`` and the rest."""
    if trees == 1:
        return [slice(0, d)]
    half = (d + 1) // 2
    return [slice(0, half), slice(half, d)]


def relay_trees(
    V: list[torch.Tensor],
    R: list[torch.Tensor],
    Rc: list[torch.Tensor],
    plans: tuple[RelayPlan, ...],
    comm,
    t: int | None = None,
) -> list[tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]]:
    """One RelaySum round on several trees at once, in a single ``comm.exchange``.

    Tree ``k`` relays the values ``V[k]`` (its coordinates of the hosted nodes, ``(b, w_k)``)
    with buffers ``R[k]``, ``Rc[k]`` (messages and counts received in the previous round, in
    ``plans[k].in_edges`` order). The message on edge ``(i, j)`` carries the parts of every
    tree containing that edge: ``(cat_k m^k_{i->j}, [c^k_{i->j}]_k as int32)``; ``t`` is the
    round (for the communicator's channel; a lost message counts as ``m = 0, c = 0``).

    Returns
    -------
    list, per tree, of ``(R, Rc, S, N)``:
        this round's received messages and counts (the next state), ``S = sum_j m_{j->i}``
        ``(b, w_k)`` and ``N = sum_j c_{j->i}`` ``(b,)`` per hosted node.
    """
    nodes = comm.nodes
    parts: dict[tuple[int, int], list[tuple[torch.Tensor, torch.Tensor]]] = {}
    for k, plan in enumerate(plans):
        Rk, Rck, idx = R[k], Rc[k], plan.index
        for i in nodes:
            incoming = [idx[(j, i)] for j in plan.tree.neighbors(i)]
            total = Rk[incoming].sum(0) if incoming else torch.zeros_like(V[k][0])
            count = Rck[incoming].sum() if incoming else Rck.new_zeros(())
            for j in plan.tree.neighbors(i):
                m = V[k][i - nodes.start] + total - Rk[idx[(j, i)]]
                parts.setdefault((i, j), []).append((m, 1 + count - Rck[idx[(j, i)]]))
    messages = {
        e: (torch.cat([m for m, _ in p]), torch.stack([c for _, c in p]).to(torch.int32))
        for e, p in parts.items()
    }
    received = comm.exchange(messages, t)
    widths = [v.shape[1] for v in V]
    pieces: dict[tuple[int, tuple[int, int]], tuple[torch.Tensor, int]] = {}
    for e, (m, c) in received.items():
        src, dst = e
        trees = [k for k, p in enumerate(plans) if p.tree.has_edge(src, dst)]
        ms = torch.split(m, [widths[k] for k in trees])
        for slot, k in enumerate(trees):
            pieces[(k, e)] = (ms[slot], int(c[slot]))
    out = []
    for k, plan in enumerate(plans):
        lost = (V[k].new_zeros(widths[k]), 0)
        got = [pieces.get((k, e), lost) for e in plan.in_edges]
        R_new = torch.stack([m for m, _ in got]) if plan.in_edges else R[k]
        Rc_new = torch.tensor([c for _, c in got], dtype=torch.int64, device=Rc[k].device)
        S = torch.zeros_like(V[k])
        N = torch.zeros(len(nodes), dtype=torch.int64, device=Rc[k].device)
        for r, (_, i) in enumerate(plan.in_edges):
            S[i - nodes.start] += R_new[r]
            N[i - nodes.start] += Rc_new[r]
        out.append((R_new, Rc_new, S, N))
    return out


def relay(
    V: torch.Tensor, R: torch.Tensor, Rc: torch.Tensor, plan: RelayPlan, comm,
    t: int | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """One RelaySum round on one tree: send ``m_{i->j}``, ``c_{i->j}`` on every tree edge.

    Parameters
    ----------
    V : tensor (b, d)
        The hosted nodes' values ``v_i^t``.
    R, Rc :
        Messages and counts received in the previous round, in ``plan.in_edges`` order.

    Returns
    -------
    R, Rc :
        This round's received messages and counts (the next state).
    S : tensor (b, d)
        ``sum_j m_{j->i}^t`` per hosted node.
    N : tensor (b,)
        ``sum_j c_{j->i}^t``: how many other nodes' values ``S`` holds.
    """
    (result,) = relay_trees([V], [R], [Rc], (plan,), comm, t)
    return result


@dataclass(frozen=True)
class RelaySumConfig:
    """Options of both RelaySum variants."""

    tree: str = option("bfs", "spanning tree of the topology, or two overlay binary trees "
                       "each relaying half the coordinates (double_binary)", choices=TREES)
    root: int = option(0, "root of the bfs tree", check=non_negative)
    tree_layout: str = option("heap", "node order of the binary / double_binary trees: heap "
                              "(parent (i-1)//2) or relaysum (parent i//2, the authors' code)",
                              choices=BINARY_LAYOUTS)
    local_steps: int = option(1, "local SGD steps before each relay", check=at_least(1))


class _RelaySum(Algorithm):
    FOLLOWS_SCHEDULE = False  # relays over a fixed spanning tree of the graph
    _plans: tuple[RelayPlan, ...] | None = None
    _plans_for: tuple | None = None  # (graph itself, n, hosted nodes) the plans were made for

    def plans(self, ctx: Context) -> tuple[RelayPlan, ...]:
        """The relay plan of each tree (cached per graph object and hosted nodes)."""
        made = self._plans_for
        if (self._plans is None or made[0] is not ctx.graph
                or made[1:] != (ctx.comm.n, ctx.comm.nodes)):
            self._plans = relay_plans(
                ctx.graph, self.cfg.tree, self.cfg.root, ctx.comm.nodes, self.cfg.tree_layout
            )
            self._plans_for = (ctx.graph, ctx.comm.n, ctx.comm.nodes)
        return self._plans

    def init(self, ctx: Context) -> RelayState | DoubleRelayState:
        X = ctx.problem.init_params(ctx.comm.nodes)
        plans = self.plans(ctx)
        buffers = []
        for plan, s in zip(plans, coordinate_slices(X.shape[1], len(plans)), strict=True):
            m = len(plan.in_edges)
            buffers += [X.new_zeros((m, s.stop - s.start)),
                        torch.zeros(m, dtype=torch.int64, device=X.device)]
        return _state(X, buffers, X.clone())

    def _relay(
        self, V: torch.Tensor, state: RelayState | DoubleRelayState, ctx: Context, t: int
    ) -> tuple[list, torch.Tensor, list[torch.Tensor], list[slice]]:
        """Relay ``V`` on every tree; returns new buffers, ``S`` (b, d), ``N`` per tree, slices."""
        plans = self.plans(ctx)
        slices = coordinate_slices(V.shape[1], len(plans))
        old = list(state[1:-1])
        outs = relay_trees([V[:, s] for s in slices], old[0::2], old[1::2], plans, ctx.comm, t)
        buffers = [b for R, Rc, _, _ in outs for b in (R, Rc)]
        S = torch.cat([S for _, _, S, _ in outs], dim=1) if len(outs) > 1 else outs[0][2]
        return buffers, S, [N for _, _, _, N in outs], slices

    def describe(self, ctx: Context) -> dict:
        plans = self.plans(ctx)
        graph = ctx.graph.to_undirected(as_view=True) if ctx.graph.is_directed() else ctx.graph
        info = super().describe(ctx)
        trees = []
        for plan, s in zip(plans, coordinate_slices(ctx.problem.dim, len(plans)), strict=True):
            edges = sorted(tuple(sorted(e)) for e in plan.tree.edges())
            trees.append({"edges": edges, "diameter": plan.diameter,
                          "root": plan.tree.graph.get("root", 0),
                          "coordinates": [s.start, s.stop]})
        overlay = any(not graph.has_edge(*e) for t in trees for e in t["edges"])
        if overlay:
            info["tree"] = f"{self.cfg.tree} (overlay: ignores topology edges)"
        if self.cfg.tree in ("binary", "double_binary"):
            info["tree_layout"] = self.cfg.tree_layout
        info["tree_diameter"] = max(t["diameter"] for t in trees)
        if len(trees) == 1:
            info["tree_edges"] = trees[0]["edges"]
        else:
            info["trees"] = trees
        return info


def _state(
    X: torch.Tensor, buffers: list[torch.Tensor], X0: torch.Tensor
) -> RelayState | DoubleRelayState:
    """The state type of one tree (two buffers) or of double binary trees (four)."""
    if len(buffers) == 2:
        return RelayState(X, *buffers, X0)
    return DoubleRelayState(X, *buffers, X0)


@register_algorithm
class RelaySumModel(_RelaySum):
    """RelaySum/Model: relay half-step models, average with the missing mass filled."""

    name = "relaysum_model"

    @dataclass(frozen=True)
    class Config(RelaySumConfig):
        missing: str = option("own", "fill of not-yet-received models: own x_i or initial x_0",
                              choices=("own", "initial"))
        lr_correction: str = option(
            "auto", "step size x c, c = 1 + mean tree delay (the authors' correction, so the "
            "average moves as under all-reduce); none: lr as given", choices=("auto", "none"))

    _correction: tuple | None = None  # (the plans it was computed for, c)

    def correction(self, ctx: Context) -> float:
        """The factor ``c`` the step size is multiplied by (see
        :mod:`~gossip.algorithms.relay_correction`; 1 with ``lr_correction = none``), computed
        once per relay plans."""
        plans = self.plans(ctx)
        if self._correction is None or self._correction[0] is not plans:
            c = 1.0 if self.cfg.lr_correction == "none" else lr_correction(p.tree for p in plans)
            self._correction = (plans, c)
        return self._correction[1]

    def describe(self, ctx: Context) -> dict:
        return {**super().describe(ctx), "lr_correction_factor": self.correction(ctx)}

    def round(
        self, state: RelayState | DoubleRelayState, t: int, ctx: Context
    ) -> tuple[RelayState | DoubleRelayState, torch.Tensor]:
        H, n = self.cfg.local_steps, ctx.comm.n
        X_half, losses = sgd_steps(state.X, ctx, t, H, float(ctx.lr(t)) * self.correction(ctx))
        buffers, S, N, slices = self._relay(X_half, state, ctx, t)
        fill = X_half if self.cfg.missing == "own" else state.X0
        X_new = X_half + S
        for Nk, s in zip(N, slices, strict=True):  # missing mass: (n - 1 - N_i) fill_i per tree
            X_new[:, s].addcmul_((n - 1 - Nk).to(X_new.dtype)[:, None], fill[:, s])
        X_new.div_(n)
        return _state(X_new, buffers, state.X0), losses


@register_algorithm
class RelaySumGrad(_RelaySum):
    """RelaySum/Grad: relay (local-step) updates, apply their delayed sum over ``n``."""

    name = "relaysum_grad"
    Config = RelaySumConfig

    def round(
        self, state: RelayState | DoubleRelayState, t: int, ctx: Context
    ) -> tuple[RelayState | DoubleRelayState, torch.Tensor]:
        H, n, eta = self.cfg.local_steps, ctx.comm.n, float(ctx.lr(t))
        if H == 1:
            U, losses = ctx.problem.gradients(state.X, ctx.comm.nodes, t)
            U = eta * U
        else:
            X_local, losses = sgd_steps(state.X, ctx, t, H, eta)
            U = state.X - X_local
        buffers, S, _, _ = self._relay(U, state, ctx, t)
        return _state(state.X - (U + S) / n, buffers, state.X0), losses
