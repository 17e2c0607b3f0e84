"""The consensus step ``gamma`` of the compressed-gossip algorithms (CHOCO-SGD, BEER).

Both mix public copies, ``X <- X + gamma (W - I) X_hat``, and a copy follows its model only up
to the compression error, so ``gamma`` must shrink with the compression quality ``omega``
(``E ||C(x) - x||^2 <= (1 - omega) ||x||^2``, :attr:`gossip.compression.base.Compressor.omega`)
and with ``beta = ||I - W||_2``. ``algorithm.gamma`` is a number, or one of:

``"auto"`` (the default)::

    gamma = min(1, 2 omega / beta)

``2 / beta`` is the largest step for which exact gossip ``X <- X + gamma (W - I) X``
contracts (its eigenvalues are ``1 - gamma (1 - lambda_i(W))``), and ``omega`` shrinks it with
the compression: ``gamma = 1`` without compression (CHOCO is then D-SGD, BEER gradient
tracking), ``0.15`` for top-10% on a ring of 16 (Metropolis weights, ``beta = 4/3``), where
``gamma = 1`` diverges. It is a rule of thumb, not the theorem: Koloskova, Stich & Jaggi 2019
(Theorem 2, CHOCO-Gossip) prove ``e_t <= (1 - delta^2 omega / 82)^t e_0`` for
``gamma* = 2 delta omega / (16 delta + delta^2 + 4 beta^2 + 2 delta beta^2 - 8 delta omega)``
(``delta`` the spectral gap), about ``1e-3`` for that ring, well below the steps their
experiments tune (``0.01 .. 0.34`` in their convex experiments); for BEER the theory (Zhao et
al. 2022, Theorem 1) leaves its constants unspecified. A time-varying schedule uses the largest
``beta`` over its first :data:`BETA_ROUNDS` matrices. Being built on the worst-case ``omega``
(``k/d``, ``1/d`` for sign) it is often far too small: on the MNIST MLP (ring of 16) it gives
0.015 for top-k 1% and 1.5e-5 for sign, where 0.1 .. 0.13 and 1 train best (README).

``"tune"``: the grid search of the authors' code (epfml/ChocoSGD,
``tune_consensus_stepsize.py``), rewritten: for each ``gamma`` of :data:`TUNE_GRID` run
:data:`TUNE_ROUNDS` rounds of CHOCO-Gossip on ``X_0 ~ N(0, I)`` (``n x d'``, seeded by the
run's seed), ``X_hat_0 = 0``, with the run's own ``W(t)`` and compressor::

    X <- X + gamma (W(t) - I) X_hat,    X_hat <- X_hat + C(X - X_hat)

and keep the ``gamma`` with the least final error ``||X - 1 x_bar_0^T||^2 + ||X - X_hat||^2``
(diverged runs count as infinite). Rank 0 computes it and broadcasts it, so every rank uses
the same value; ``summary.json`` records the grid, the errors and ``d'``. For BEER the same
search stands in for its own step (its copies ``H`` and ``G`` follow the same compressed
gossip).

Where we depart from the authors, for speed (their search is ``20 x 1000`` compressed gossip
rounds on the full model, ~25 minutes for the 101,770 weights of the MNIST MLP): all grid
values run at once, as one ``(20 n) x d'`` encode per round (row ``g n + i`` is node ``i``
of grid value ``g``, so a randomised operator draws what node ``i`` would), and the problem
has ``d' = min(d, TUNE_DIM)`` coordinates when the operator acts the same on every length
(:func:`tune_dim`: identity, fp16/bf16 casts, scaled sign, top-k and random-k given by a
``ratio``; Gaussian rows make the coordinates exchangeable, so only that ratio matters). Other
operators (``k`` given, QSGD, whose variance grows with ``d``, low-rank, which needs the
layout) are tuned on the full ``d``. On the ring of 16 the search picks the same ``gamma`` at
``d' = 1024, 2048, 4096`` (0.0546 for top-k 1%, 1 for sign).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import scipy.sparse as sp
import scipy.sparse.linalg as sla
import torch

from gossip.errors import ConfigError

__all__ = [
    "BETA_ROUNDS",
    "RULES",
    "TUNE_GRID",
    "TUNE_ROUNDS",
    "ConsensusStep",
    "WithConsensusStep",
    "auto_gamma",
    "beta",
    "gamma_check",
    "resolve_gamma",
    "tune_dim",
    "tune_gamma",
]

#: The names ``algorithm.gamma`` takes besides a number.
RULES = ("auto", "tune")
#: The authors' grid, ``numpy.logspace(-3, 0, 20)``.
TUNE_GRID = tuple(float(g) for g in np.logspace(-3, 0, 20))
#: Rounds of CHOCO-Gossip per grid point (the authors' ``num_iter``).
TUNE_ROUNDS = 1000
#: Coordinates of the tuning problem for operators that act the same on every length.
TUNE_DIM = 1024
#: Operators (by name) whose action on a coordinate does not depend on the row length.
_LENGTH_FREE = ("none", "fp16", "bf16", "sign")
#: Rounds between two checks of the tuning runs for divergence.
_CHECK_EVERY = 10
#: Matrices of a time-varying schedule whose largest ``beta`` ``auto`` uses.
BETA_ROUNDS = 32


def gamma_check(upper: float | None):
    """The check of ``algorithm.gamma``: ``auto``, ``tune`` or a number in ``(0, upper]``."""
    allowed = "a number > 0" if upper is None else f"a number in (0, {upper:g}]"

    def check(v) -> str | None:
        if isinstance(v, str):
            return None if v in RULES else f"must be auto, tune or {allowed}"
        ok = v > 0 and (upper is None or v <= upper)
        return None if ok else f"must be auto, tune or {allowed}"

    return check


def _norm(M: sp.csr_array) -> float:
    """``||M||_2`` (dense for small ``n``, ARPACK on ``M^T M`` otherwise)."""
    n = M.shape[0]
    if n <= 512:
        return float(np.linalg.norm(M.toarray(), 2))
    op = sla.LinearOperator((n, n), matvec=lambda x: M.T @ (M @ x), dtype=np.float64)
    top = sla.eigsh(op, k=1, which="LM", v0=np.ones(n), return_eigenvectors=False)
    return math.sqrt(max(float(top[0]), 0.0))


def beta(schedule) -> float:
    """``max_t ||I - W(t)||_2`` over the schedule's first :data:`BETA_ROUNDS` rounds (one
    matrix if static).

    Examples
    --------
    >>> import networkx as nx
    >>> from topologies.schedules import make_schedule
    >>> round(beta(make_schedule("static", 16, graph=nx.cycle_graph(16))), 12)  # 1 - (-1/3)
    1.333333333333
    """
    rounds = 1 if schedule.is_static else BETA_ROUNDS
    values = []
    for t in range(rounds):
        W = sp.csr_array(schedule.matrix(t), dtype=np.float64)
        values.append(_norm(sp.eye_array(W.shape[0], format="csr") - W))
    return max(values)


def auto_gamma(omega: float, beta_: float) -> float:
    """``min(1, 2 omega / beta)`` (1 when ``beta = 0``, i.e. ``W = I``).

    >>> auto_gamma(1.0, 4 / 3), round(auto_gamma(0.1, 4 / 3), 12)
    (1.0, 0.15)
    """
    return 1.0 if beta_ <= 0 else min(1.0, 2.0 * omega / beta_)


def tune_dim(compressor, dim: int) -> int:
    """``d'`` of the tuning problem: ``min(dim, TUNE_DIM)`` for an operator that acts the same
    on every row length (module docstring), ``dim`` for the others.

    >>> from gossip.compression import make_compressor
    >>> tune_dim(make_compressor("topk", {"ratio": 0.01}), 101770)
    1024
    >>> tune_dim(make_compressor("topk", {"k": 1000}), 101770), tune_dim(None, 10)
    (101770, 10)
    """
    op = compressor
    while op is not None and op.inner is not None:  # error feedback: the operator it wraps
        op = op.inner
    free = op is None or op.name in _LENGTH_FREE or (
        op.name in ("topk", "randomk") and op.options.get("k") is None)
    return min(dim, TUNE_DIM) if free else dim


def tune_gamma(
    schedule, compressor, dim: int, layout, seed: int,
    grid: tuple[float, ...] = TUNE_GRID, rounds: int = TUNE_ROUNDS,
) -> tuple[float, list[float]]:
    """The ``gamma`` of ``grid`` with the least CHOCO-Gossip error after ``rounds`` rounds
    on ``n x dim`` Gaussian rows (module docstring; the caller passes ``d'`` as ``dim`` and
    ``layout=None`` when reducing), and the error of each; deterministic in ``seed``.

    All of ``grid`` runs at once (rows of one grid value never meet those of another); a grid
    value whose models stop being finite (checked every :data:`_CHECK_EVERY` rounds and at
    the end) counts as ``inf`` and is set to zero, which the gossip keeps at zero.
    """
    n, G = schedule.n, len(grid)
    gen = torch.Generator().manual_seed(int(seed))
    X0 = torch.randn((n, dim), generator=gen, dtype=torch.float64)
    mean0 = X0.mean(0, keepdim=True)
    gammas = torch.tensor(grid, dtype=torch.float64)[:, None, None]
    ids = np.tile(np.arange(n), G)
    X, X_hat = X0.expand(G, n, dim).clone(), torch.zeros((G, n, dim), dtype=torch.float64)
    C = compressor.init(dim, ids, layout, seed, dtype=torch.float64)
    diverged = torch.zeros(G, dtype=torch.bool)
    static = _laplacian(schedule, 0) if schedule.is_static else None
    for t in range(rounds):
        L = static if static is not None else _laplacian(schedule, t)
        X = X + gammas * torch.matmul(L, X_hat)
        payload, C = compressor.encode((X - X_hat).reshape(G * n, dim), C, t)
        X_hat = X_hat + compressor.decode(payload, C, ids, t).to(X.dtype).reshape(G, n, dim)
        if t % _CHECK_EVERY == 0 or t == rounds - 1:
            bad = ~torch.isfinite(X.sum((1, 2))) & ~diverged
            if bad.any():
                diverged |= bad
                X[bad], X_hat[bad] = 0.0, 0.0
    err = ((X - mean0) ** 2).sum((1, 2)) + ((X - X_hat) ** 2).sum((1, 2))
    errors = [math.inf if d or not math.isfinite(e) else e
              for d, e in zip(diverged.tolist(), err.tolist(), strict=True)]
    return grid[int(np.argmin(errors))], errors


def _laplacian(schedule, t: int) -> torch.Tensor:
    """``W(t) - I`` dense, float64."""
    W = torch.from_numpy(sp.csr_array(schedule.matrix(t), dtype=np.float64).toarray())
    return W - torch.eye(W.shape[0], dtype=W.dtype)


@dataclass(frozen=True)
class ConsensusStep:
    """The resolved ``gamma`` and how it was chosen (the ``summary.json`` entries)."""

    gamma: float
    rule: str  # "given", "auto" or "tune"
    facts: dict[str, Any] = field(default_factory=dict)

    def describe(self) -> dict[str, Any]:
        return {"gamma": self.gamma, "gamma_rule": self.rule, **self.facts}


def resolve_gamma(value: float | str, ctx, algorithm: str) -> ConsensusStep:
    """``algorithm.gamma`` as a number for the run of ``ctx`` (collective for ``tune``: rank 0
    searches and broadcasts)."""
    from gossip.algorithms.public_copies import compressor_of

    if not isinstance(value, str):
        return ConsensusStep(float(value), "given")
    compressor = compressor_of(ctx)
    if value == "auto":
        if compressor.omega is None:
            raise ConfigError(
                f"algorithm.gamma=auto: compressor {compressor.name!r} does not state its "
                f"compression quality omega; set algorithm.gamma to a number or tune ({algorithm})"
            )
        omega = float(compressor.omega(ctx.problem.dim, ctx.problem.layout))
        b = beta(ctx.schedule)
        return ConsensusStep(auto_gamma(omega, b), "auto", {"omega": omega, "beta": b})
    comm = ctx.comm
    d_tune = tune_dim(compressor, ctx.problem.dim)
    found = None
    if comm.rank == 0:
        found = tune_gamma(ctx.schedule, compressor, d_tune,
                           ctx.problem.layout if d_tune == ctx.problem.dim else None, ctx.seed)
    if comm.size > 1:
        found = comm.broadcast_object(found, root=0)
    gamma, errors = found
    return ConsensusStep(gamma, "tune", {"gamma_grid": list(TUNE_GRID),
                                         "gamma_tune_errors": errors,
                                         "gamma_tune_rounds": TUNE_ROUNDS,
                                         "gamma_tune_dim": d_tune})


class WithConsensusStep:
    """Mixin of the algorithms with a consensus step ``algorithm.gamma`` (CHOCO, BEER): the
    value resolved once per run, by :meth:`resolve_consensus_step` in ``init``, and reported in
    ``summary.json`` next to the options."""

    _step: ConsensusStep | None = None

    def resolve_consensus_step(self, ctx) -> ConsensusStep:
        """Resolve ``self.cfg.gamma`` for the run of ``ctx`` (collective for ``tune``)."""
        self._step = resolve_gamma(self.cfg.gamma, ctx, self.name)
        return self._step

    def consensus_step(self, ctx) -> ConsensusStep:
        """``gamma`` of this run, resolved on first use."""
        return self._step if self._step is not None else self.resolve_consensus_step(ctx)

    def describe(self, ctx) -> dict:
        return {**super().describe(ctx), **self.consensus_step(ctx).describe()}
