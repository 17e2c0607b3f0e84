"""Asynchronous pairwise gossip SGD (AD-PSGD), driven by the simulated time of ``[time]``.

Lian, Zhang, Zhang & Liu, 2018, "Asynchronous Decentralized Parallel Stochastic Gradient
Descent" (ICML), Algorithm 1. Every node ``i`` repeatedly computes a stochastic gradient
at its model; when node ``i``'s gradient is done it picks a neighbour ``j`` of the base
graph uniformly at random, the pair averages and ``i`` applies its gradient::

    x_i, x_j <- (x_i + x_j) / 2,        x_i <- x_i - eta g_i(x_hat_i),

``x_hat_i`` the model node ``i`` read when it started that gradient (after its previous
update): a pair average that another node started with ``i`` in between changes ``x_i`` but
not ``x_hat_i``, the staleness of AD-PSGD. We follow Algorithm 1's order (gradient at
``x_hat_i``, then the pair average ``W_k = I - (e_i - e_j)(e_i - e_j)^T / 2``, doubly
stochastic, so without gradients ``sum_i x_i`` is kept and the models reach the initial
average, then the gradient step on ``x_i`` alone). Where we depart: the average is atomic
at the event's time (``j`` is not blocked; its own gradient keeps its older ``x_hat_j``),
``W_k`` picks ``j`` uniformly among ``i``'s neighbours (the paper allows any distribution
of ``W_k``), and there is no bipartite active/passive split (the paper's guard against
deadlocks of real locks, which an event queue does not have).

Events (:mod:`heapq`, in order of ``(time, node id)``, deterministic from the seed): at time
0 every node starts its first gradient. Node ``i``'s ``k``-th gradient takes ``c_i(k)``
seconds, with stragglers exactly as :mod:`gossip.algorithms.async_sgd` draws them
(``compute`` times ``slowdown`` where ``straggling(k, n)`` marks ``i``), and a pair average
``l = latency + 8 * 4d / B`` (fp32; ``d * element_size`` bytes, both rows at once). Node
``i``'s ``k``-th event is at ``f_i(k) = f_i(k-1) + l + c_i(k)`` (``f_i(0) = c_i(0)``); the
neighbour of that event is drawn by ``numpy.random.default_rng([seed, i, k])`` from
``i``'s sorted neighbours, the same on every process. ``sim_time`` in the records is the
time of the last event.

One round is ``n`` events (``n`` gradients), so rounds compare with the synchronous
algorithms in gradients computed. Bytes: per event ``d`` values each way through
``comm.exchange`` (2 messages, ``i -> j`` and ``j -> i``); over MPI the rows travel from
their host ranks and each host averages its own row (both get the same ``(x_i + x_j) / 2``).

Gradients are computed lazily and in batches, as in ``async_sgd``: when an event's gradient
is not yet computed, every node without one computes it at its ``x_hat``, with problem step
index ``t n + e`` (round ``t``, event ``e``). Reported losses: each node's loss at the last
gradient it computed. Without a ``[time]`` section the run is refused (the event order comes
from the time model); not combined with ``[faults]`` (a lost half of a pair average would
break ``sum_i x_i``), ``[compression]`` or ``[attack]``.
"""

from __future__ import annotations

import heapq
from typing import NamedTuple

import numpy as np
import torch

from gossip.algorithms.async_sgd import (
    compute_seconds,
    link_seconds,
    refresh_gradients,
    require_event_time,
)
from gossip.algorithms.base import Algorithm, Context, register_algorithm
from gossip.errors import ConfigError

__all__ = ["AsyncGossip", "AsyncGossipState", "partner"]


class AsyncGossipState(NamedTuple):
    """``X`` the hosted models; ``W`` the model ``x_hat`` each hosted node computes its
    gradient at; ``G``, ``L`` that gradient and loss (valid where ``fresh``); per node
    ``(n,)``: ``finish`` the time of its next event, ``count`` its events so far, ``fresh``
    whether its gradient is computed; ``now`` the time of the last event."""

    X: torch.Tensor
    W: torch.Tensor
    G: torch.Tensor
    L: torch.Tensor
    finish: torch.Tensor
    count: torch.Tensor
    fresh: torch.Tensor
    now: torch.Tensor


def partner(seed: int, i: int, k: int, neighbours: list[int]) -> int:
    """The neighbour node ``i`` averages with at its ``k``-th event (uniform, seeded)."""
    return neighbours[int(np.random.default_rng([seed, i, k]).integers(len(neighbours)))]


@register_algorithm
class AsyncGossip(Algorithm):
    """Asynchronous pairwise gossip SGD (AD-PSGD) over the simulated time of ``[time]``."""

    name = "async_gossip"
    FOLLOWS_SCHEDULE = False  # pairs of the base graph; no W(t)
    SURVIVES_LOSS = False
    LOSS_REASON = "has no rule for a lost half of a pair average (it would break the sum of " \
        "the models)"

    def init(self, ctx: Context) -> AsyncGossipState:
        require_event_time(ctx, self.name, "its event order comes from the time model")
        n = ctx.comm.n
        lonely = [i for i in range(n) if ctx.graph.degree(i) == 0]
        if lonely:
            raise ConfigError(f"algorithm.name='async_gossip' needs a neighbour for every "
                              f"node; node {lonely[0]} has none (use a connected topology)")
        X = ctx.problem.init_params(ctx.comm.nodes)
        finish = torch.tensor([compute_seconds(ctx, i, 0) for i in range(n)],
                              dtype=torch.float64)
        return AsyncGossipState(X, X.clone(), torch.zeros_like(X), X.new_zeros(X.shape[0]),
                                finish, torch.zeros(n, dtype=torch.int64),
                                torch.zeros(n, dtype=bool), torch.zeros((), dtype=torch.float64))

    def round(self, state: AsyncGossipState, t: int, ctx: Context
              ) -> tuple[AsyncGossipState, torch.Tensor]:
        comm = ctx.comm
        n, nodes = comm.n, comm.nodes
        eta = float(ctx.lr(t))
        X, W, G, L = state.X.clone(), state.W.clone(), state.G.clone(), state.L.clone()
        finish, count, fresh = state.finish.clone(), state.count.clone(), state.fresh.clone()
        link = link_seconds(ctx, X[0])
        queue = [(float(f), i) for i, f in enumerate(finish.tolist())]
        heapq.heapify(queue)
        for e in range(n):
            now, i = heapq.heappop(queue)
            if not fresh[i]:
                refresh_gradients(ctx, W, G, L, fresh, t * n + e)
            k = int(count[i])
            j = partner(ctx.seed, i, k, sorted(int(v) for v in ctx.graph.neighbors(i)))
            sent = {(a, b): (X[a - nodes.start].clone(),) for a, b in ((i, j), (j, i))
                    if nodes.start <= a < nodes.stop}
            got = comm.exchange(sent, t)
            for a, b in ((i, j), (j, i)):
                if nodes.start <= b < nodes.stop:
                    X[b - nodes.start] = (X[b - nodes.start] + got[(a, b)][0]) / 2
            if nodes.start <= i < nodes.stop:
                r = i - nodes.start
                X[r] = X[r] - eta * G[r]
                W[r] = X[r]
            fresh[i] = False
            count[i] = k + 1
            finish[i] = now + link + compute_seconds(ctx, i, k + 1)
            heapq.heappush(queue, (float(finish[i]), i))
        new = AsyncGossipState(X, W, G, L, finish, count, fresh,
                               torch.tensor(now, dtype=torch.float64))
        return new, L

    def sim_time(self, state: AsyncGossipState) -> float:
        """Simulated seconds so far: the time of the last event."""
        return float(state.now)
