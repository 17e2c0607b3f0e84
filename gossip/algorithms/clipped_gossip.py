"""Byzantine-robust gossip: ClippedGossip and D-SGD with a robust aggregator per neighbourhood.

Both take the local step of D-SGD (heavy-ball momentum ``beta``, ``m_i <- beta m_i + g_i``)::

    x_i^{t+1/2} = x_i^t - eta m_i

and then replace the gossip average by a robust one over what node ``i`` received from its
neighbours ``N_i`` (``W_ij != 0``; a Byzantine neighbour sends whatever it likes, an honest
one ``x_j^{t+1/2}``).

``clipped_gossip`` (He, Karimireddy, Jaggi 2022, "Byzantine-robust Decentralized Learning via
ClippedGossip", Algorithm 1, self-centered clipping)::

    x_i^{t+1} = x_i^{t+1/2} + sum_{j in N_i} W_ij CLIP(x_j^{t+1/2} - x_i^{t+1/2}, tau_i)

``CLIP(z, tau) = z min(1, tau / ||z||)``. The radius: ``algorithm.radius > 0`` fixes it;
``radius = 0`` is the adaptive rule of the authors' code (``codes/aggregator.py``,
``SelfCenteredClipping``): ``tau_i`` is the ``(clip_count + 1)``-th largest distance
``||x_j - x_i||`` among the neighbours, so the ``clip_count`` farthest are clipped to it (their
default ``clip_count = 1``; the paper's theoretical ``tau_i``, which needs to know which
neighbours are honest, is not computable by a node). A lost message counts as
``x_j = x_i`` (its weight stays with ``x_i``), as in D-SGD.

``robust_dsgd``: ``x_i^{t+1} = agg({x_i^{t+1/2}} + {x_j^{t+1/2} : j in N_i})`` with a rule of
:mod:`gossip.robust.aggregators` (``algorithm.aggregator``, ``aggregator_options``; ``cclip`` is
centred at the node's own model), unweighted over the received rows, as the decentralized
baselines of He et al. (DeCM, DeTM, DeKrum ...). Lost messages are left out.

Bytes: one gossip step (``comm.share`` of ``x^{t+1/2}``), as D-SGD. Both inform an
omniscient attack (ALIE, IPM) of the honest half-step models before sending
(:func:`gossip.robust.attacks.inform_adversary`).
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
import scipy.sparse as sp
import torch

from gossip.algorithms.base import Algorithm, Context, register_algorithm
from gossip.algorithms.dsgd import momentum_option
from gossip.algorithms.local import sgd_steps
from gossip.comm.channel import Delivery
from gossip.errors import ConfigError
from gossip.options import at_least, non_negative
from gossip.registry import option
from gossip.robust.aggregators import AGGREGATORS, make_aggregator
from gossip.robust.attacks import inform_adversary

__all__ = ["ClippedGossip", "RobustDSGD", "RobustGossipState", "neighbourhoods",
           "clip_radius"]


class RobustGossipState(NamedTuple):
    X: torch.Tensor
    M: torch.Tensor  # heavy-ball momentum buffer (zeros when beta = 0)


def neighbourhoods(got: Delivery, W, nodes: range
                   ) -> Iterator[tuple[int, np.ndarray, np.ndarray, torch.Tensor]]:
    """Per hosted node ``i`` (block row ``k``): ``(k, src, weights, rows)``: the neighbours
    ``j != i`` whose message arrived, their ``W_ij`` and the rows that arrived from them
    (replaced ones as replaced), ``(m, d)``."""
    A = sp.csr_array(W)
    rows = got.rows[0]
    replaced = {(int(d), int(s)): r for r, (d, s) in enumerate(got.replaced)}
    failed = {(int(d), int(s)) for d, s in got.failed}
    for k, i in enumerate(nodes):
        lo, hi = A.indptr[i], A.indptr[i + 1]
        cols, vals = A.indices[lo:hi].astype(np.int64), A.data[lo:hi]
        keep = (cols != i) & (vals != 0) & np.array([(i, int(j)) not in failed for j in cols],
                                                     dtype=bool)
        cols, vals = cols[keep], vals[keep]
        out = rows[torch.as_tensor(np.searchsorted(got.ids, cols), device=rows.device)]
        for m, j in enumerate(cols):
            if (i, int(j)) in replaced:
                out[m] = got.replaced_rows[0][replaced[(i, int(j))]]
        yield k, cols, vals, out


def clip_radius(dist: torch.Tensor, clip_count: int) -> torch.Tensor:
    """The adaptive radius: the ``(clip_count + 1)``-th largest of ``dist`` (the smallest when
    there are not that many)."""
    s = dist.sort(descending=True).values
    return s[min(clip_count, len(s) - 1)]


class _RobustGossip(Algorithm):
    """Shared: the local step, informing the adversary, the share."""

    INFORMS_ADVERSARY = True

    def init(self, ctx: Context) -> RobustGossipState:
        X = ctx.problem.init_params(ctx.comm.nodes)
        return RobustGossipState(X, torch.zeros_like(X))

    def round(self, state: RobustGossipState, t: int, ctx: Context
              ) -> tuple[RobustGossipState, torch.Tensor]:
        beta, M = self.cfg.momentum, state.M
        direction = None
        if beta > 0:
            def direction(G: torch.Tensor) -> torch.Tensor:
                nonlocal M
                M = beta * M + G
                return M
        X_half, losses = sgd_steps(state.X, ctx, t, 1, float(ctx.lr(t)), direction)
        W = ctx.schedule.matrix(t)
        inform_adversary(ctx.comm, X_half, t)
        got = ctx.comm.share((X_half,), W, t)
        X_new = X_half.clone()
        for k, _, w, R in neighbourhoods(got, W, ctx.comm.nodes):
            X_new[k] = self.combine(X_half[k], w, R)
        return RobustGossipState(X_new, M), losses

    @abstractmethod
    def combine(self, x: torch.Tensor, w: np.ndarray, R: torch.Tensor) -> torch.Tensor:
        """Node ``i``'s new model from its own ``x``, the weights ``w`` and rows ``R``."""


@register_algorithm
class ClippedGossip(_RobustGossip):
    """ClippedGossip: self-centered clipping of the neighbours' differences."""

    name = "clipped_gossip"

    @dataclass(frozen=True)
    class Config:
        momentum: float = momentum_option()
        radius: float = option(0.0, "clipping radius tau (0: adaptive, the clip_count+1-th "
                               "largest neighbour distance)", check=non_negative)
        clip_count: int | None = option(None, "adaptive radius: neighbours clipped "
                                        "(default 1)", check=at_least(0))

        def __post_init__(self) -> None:
            if self.radius > 0 and self.clip_count is not None:
                raise ConfigError(f"algorithm.clip_count={self.clip_count} has no effect with "
                                  f"a fixed algorithm.radius={self.radius}; give one of them")

    def combine(self, x: torch.Tensor, w: np.ndarray, R: torch.Tensor) -> torch.Tensor:
        if len(w) == 0:
            return x
        Z = R - x
        dist = Z.norm(dim=1)
        o = self.cfg
        count = 1 if o.clip_count is None else o.clip_count
        tau = o.radius if o.radius > 0 else clip_radius(dist, count)
        scale = torch.where(dist > tau, tau / dist.clamp_min(1e-300), torch.ones_like(dist))
        weights = torch.as_tensor(w, dtype=x.dtype, device=x.device) * scale.to(x.dtype)
        return x + weights @ Z


@register_algorithm
class RobustDSGD(_RobustGossip):
    """D-SGD with a robust aggregator over each node's received rows."""

    name = "robust_dsgd"

    @dataclass(frozen=True)
    class Config:
        momentum: float = momentum_option()
        aggregator: str = option("cm", "rule over the node and its neighbours' rows",
                                 choices=AGGREGATORS)
        aggregator_options: dict = option({}, "options of the aggregator, e.g. {trim = 1}")

        def __post_init__(self) -> None:
            AGGREGATORS.config(self.aggregator, self.aggregator_options)

    def combine(self, x: torch.Tensor, w: np.ndarray, R: torch.Tensor) -> torch.Tensor:
        agg = make_aggregator(self.cfg.aggregator, self.cfg.aggregator_options)
        return agg(torch.cat([x.unsqueeze(0), R]), x)
