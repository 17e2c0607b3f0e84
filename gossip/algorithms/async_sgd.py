"""Asynchronous SGD with a server, driven by the simulated time of ``[time]``.

Koloskova, Stich & Jaggi, 2022, "Sharper Convergence Guarantees for Asynchronous SGD for
Distributed and Federated Learning" (NeurIPS). A server holds ``x``; every worker ``i``
computes a stochastic gradient at the model it last received and uploads it; the server
applies each gradient when it arrives and sends the new model back to that worker only::

    x_{k+1} = x_k - eta_k g_{i_k}(x_{k - tau_k}),

``i_k`` the worker of the ``k``-th arrival and ``tau_k`` its staleness: the server updates
since the model the gradient was computed at.

Events (an event queue, :mod:`heapq`, deterministic from the seed): at time 0 every worker
holds ``x_0``. Worker ``i``'s ``j``-th gradient takes ``c_i(j)`` seconds, ``compute`` times
``slowdown`` when :meth:`~gossip.network.sim_time.TimeModel.straggling` marks ``i`` at index ``j``
(``stragglers = "per_round"``: drawn afresh for every gradient; ``"fixed"``: once), and each
message (upload of ``g``, download of ``x``, ``d`` values each) ``l = latency + 8 * 4d / B``
(fp32; ``d * element_size`` bytes). The ``j``-th upload of worker ``i`` arrives at
``a_i(j) = a_i(j-1) + 2 l + c_i(j)`` (``a_i(0) = c_i(0) + l``); arrivals are served in
order of ``(time, worker id)``. ``sim_time`` in the records is the time of the last server
update so far (not :mod:`gossip.network.sim_time`'s synchronous round model).

One round of the simulator is ``n`` server updates (``n`` arrivals), so rounds compare with
the synchronous algorithms in gradients computed. Bytes: per arrival ``d`` values up
(``comm.gather_rows``) and ``d`` values down (``comm.broadcast``), 2 messages.

Step size (``step``): ``"constant"``, ``eta_k = eta``; ``"delay_adaptive"``, the paper's
Theorem 8, eq. (11): ``eta_k = eta`` when ``tau_k <= tau_C`` and any value in
``[0, min(eta, 1 / (4 L tau_k))]`` otherwise (``eta <= 1 / (4 L)``), of which we take the two
the paper names: ``large_delay = "scale"``, ``eta_k = eta / tau_k`` (its "Tuning the stepsize"
paragraph: "set eta_t <= eta / tau_t"; the simulator does not know ``L``) and
``large_delay = "drop"``, ``eta_k = 0`` (the gradient is discarded). ``tau_C`` (``tau_c``;
0: ``n``) is the paper's concurrency, the number of workers computing at once, here ``n``.
The theorem is for identical functions on the workers; with heterogeneous ``f_i`` the paper
notes that the adaptive step biases towards the fast workers (Section 5.3), as the constant
one does through their more frequent arrivals.

Gradients are computed lazily and in batches: when the next arrival's gradient is not yet
computed, every worker whose held model has no gradient yet computes it, with problem step
index ``t n + e`` (round ``t``, event ``e`` of the round); with equal compute times this is
one batch per round, at step ``t n``. A batch's gradients are the same whatever the batching,
as each depends only on the worker's held model and that step index.

With equal compute times (any latency) the workers arrive in the order ``0 .. n-1`` every
round: ``tau_k = k`` for ``k < n``, then ``tau_k = n - 1`` (SGD with a fixed delay); while
only one worker arrives (the others' first gradients later than the run) it is SGD step for
step, ``tau_k = 0`` (both tested). ``summary.json`` gets ``staleness``, the
histogram ``{tau: count}`` of the run's arrivals.

Reported losses: each worker's loss at the last gradient it computed. Without a ``[time]``
section the run is refused (the staleness comes from the time model). Not combined with
``[faults]`` (a lost gradient would need a resend rule), ``[compression]`` or ``[attack]``.
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
import torch

from gossip.algorithms.base import Algorithm, Context, register_algorithm
from gossip.errors import ConfigError
from gossip.options import non_negative
from gossip.registry import option

__all__ = ["AsyncSGD", "AsyncSGDState", "compute_seconds", "link_seconds",
           "refresh_gradients", "require_event_time", "step_size"]


class AsyncSGDState(NamedTuple):
    """``X`` the server model on every row; ``W`` the model each hosted worker holds; ``G``,
    ``L`` its gradient and loss there (valid where ``fresh``); per worker ``(n,)``: ``arrive``
    the arrival time of its next upload, ``count`` the gradients it started, ``version`` the
    server update its model is from, ``fresh`` whether that gradient is computed; ``k`` the
    server updates so far and ``now`` the time of the last; ``hist`` the staleness counts
    (``hist[tau]``, sized by the largest ``tau`` the time model allows)."""

    X: torch.Tensor
    W: torch.Tensor
    G: torch.Tensor
    L: torch.Tensor
    arrive: torch.Tensor
    count: torch.Tensor
    version: torch.Tensor
    fresh: torch.Tensor
    k: torch.Tensor
    now: torch.Tensor
    hist: torch.Tensor


def step_size(eta: float, tau: int, step: str, tau_c: int, large_delay: str) -> float:
    """``eta_k`` for staleness ``tau`` (module docstring)."""
    if step == "constant" or tau <= tau_c:
        return eta
    return eta / tau if large_delay == "scale" else 0.0


def require_event_time(ctx: Context, name: str, why: str) -> None:
    """The checks of an event-driven algorithm (``async_sgd``, ``async_gossip``): a ``[time]``
    section (``why``: what it needs it for) and no ``[attack]``; one-line ConfigError."""
    if ctx.time is None:
        raise ConfigError(f"algorithm.name={name!r} needs a [time] section (e.g. "
                          f"time.compute=1): {why}")
    if getattr(ctx.problem, "honest", None) is not None:
        raise ConfigError(f"algorithm.name={name!r} does not support an [attack]; use "
                          "attack.name='none'")


def compute_seconds(ctx: Context, i: int, j: int) -> float:
    """Seconds node ``i`` takes for its ``j``-th gradient under the run's time model
    (``ctx.time``): ``time.compute``, ``time.slowdown`` times more when it straggles at ``j``."""
    model = ctx.time
    slow = bool(model.straggling(j, ctx.comm.n)[i])
    return model.compute * (model.slowdown if slow else 1.0)


def link_seconds(ctx: Context, x: torch.Tensor) -> float:
    """Seconds one message of the row ``x`` takes on a link: ``time.latency`` plus its bits
    over ``time.bandwidth`` (no bandwidth term for ``bandwidth = 0``, infinite)."""
    model = ctx.time
    wire = 8.0 * x.numel() * x.element_size() / model.bandwidth if model.bandwidth > 0 else 0.0
    return model.latency + wire


def refresh_gradients(ctx: Context, W: torch.Tensor, G: torch.Tensor, L: torch.Tensor,
                      fresh: torch.Tensor, step: int) -> None:
    """In place: every hosted node without a pending gradient (``fresh`` false, ``(n,)`` over
    all nodes) computes it at its read model ``W`` in one batch at problem step ``step`` into
    ``G``, ``L``; afterwards every node has one (``fresh`` all true, on every process alike)."""
    nodes = ctx.comm.nodes
    mask = ~fresh[nodes.start:nodes.stop].to(W.device)
    G_new, L_new = ctx.problem.gradients(W, nodes, step)
    G[mask], L[mask] = G_new[mask], L_new[mask].to(L.dtype)
    fresh[:] = True


@register_algorithm
class AsyncSGD(Algorithm):
    """Asynchronous server SGD over the simulated time of ``[time]``."""

    name = "async_sgd"
    FOLLOWS_SCHEDULE = False  # a server; no W(t)
    SURVIVES_LOSS = False
    LOSS_REASON = "has no rule for a lost gradient or a crashed worker (a resend would change "\
        "the event times)"

    @dataclass(frozen=True)
    class Config:
        step: str = option("constant", "step size rule", choices=("constant", "delay_adaptive"))
        tau_c: int = option(0, "delay threshold tau_C of delay_adaptive (0: the concurrency, "
                            "the number of workers n)", check=non_negative)
        large_delay: str = option("scale", "delay_adaptive above tau_C: eta / tau "
                                  "(scale) or 0 (drop)", choices=("scale", "drop"))

    def init(self, ctx: Context) -> AsyncSGDState:
        require_event_time(ctx, self.name, "its staleness comes from the time model")
        comm = ctx.comm
        n = comm.n
        X0 = ctx.problem.init_params(comm.nodes)
        x = comm.mean_rows(X0)
        X = x.expand_as(X0).clone()
        arrive = torch.tensor([compute_seconds(ctx, i, 0) + link_seconds(ctx, x) for i in range(n)],
                              dtype=torch.float64)
        zeros = torch.zeros(n, dtype=torch.int64)
        # tau is at most (n - 1) (floor(C_max / C_min) + 1): while one gradient is on its way
        # (one cycle, at most C_max = compute slowdown + 2 l), another worker arrives at most
        # floor(C_max / C_min) + 1 times (its cycles last at least C_min = compute + 2 l)
        model, link = ctx.time, link_seconds(ctx, x)
        c_min, c_max = model.compute + 2 * link, model.compute * model.slowdown + 2 * link
        size = (n - 1) * (int(c_max // c_min) + 2) + 1 if c_min > 0 else 1
        return AsyncSGDState(X, X.clone(), torch.zeros_like(X), X.new_zeros(X.shape[0]), arrive,
                             torch.ones(n, dtype=torch.int64), zeros, torch.zeros(n, dtype=bool),
                             torch.zeros((), dtype=torch.int64),
                             torch.zeros((), dtype=torch.float64),
                             torch.zeros(size, dtype=torch.int64))

    def round(self, state: AsyncSGDState, t: int, ctx: Context
              ) -> tuple[AsyncSGDState, torch.Tensor]:
        comm, o = ctx.comm, self.cfg
        n, nodes = comm.n, comm.nodes
        eta = float(ctx.lr(t))
        tau_c = o.tau_c or n
        x = state.X[0].clone()
        W, G, L = state.W.clone(), state.G.clone(), state.L.clone()
        arrive, count = state.arrive.clone(), state.count.clone()
        version, fresh = state.version.clone(), state.fresh.clone()
        k, now = int(state.k), float(state.now)
        hist = state.hist.clone()
        link = link_seconds(ctx, x)
        row = x.numel() * x.element_size()
        queue = [(float(a), i) for i, a in enumerate(arrive.tolist())]
        heapq.heapify(queue)
        for e in range(n):
            now, i = heapq.heappop(queue)
            if not fresh[i]:
                refresh_gradients(ctx, W, G, L, fresh, t * n + e)
            _, rows, _ = comm.gather_rows(G, row, np.array([i]), t)
            tau = k - int(version[i])
            x = x - step_size(eta, tau, o.step, tau_c, o.large_delay) * rows[0]
            k += 1
            x = comm.broadcast(x, np.array([i]))
            if nodes.start <= i < nodes.stop:
                W[i - nodes.start] = x
            version[i], fresh[i] = k, False
            hist[tau] += 1
            nxt = now + 2 * link + compute_seconds(ctx, i, int(count[i]))
            count[i] += 1
            arrive[i] = nxt
            heapq.heappush(queue, (nxt, i))
        X = x.expand_as(state.X).clone()
        new = AsyncSGDState(X, W, G, L, arrive, count, version, fresh,
                            torch.tensor(k), torch.tensor(now, dtype=torch.float64), hist)
        return new, L

    def sim_time(self, state: AsyncSGDState) -> float:
        """Simulated seconds so far: the time of the last server update."""
        return float(state.now)

    def report(self, state: AsyncSGDState) -> dict:
        """What ``summary.json`` gets besides :meth:`describe`: the staleness histogram."""
        return {"staleness": {str(tau): int(c) for tau, c in enumerate(state.hist.tolist())
                              if c}}
