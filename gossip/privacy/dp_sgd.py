"""DP-SGD at every node: the ``[privacy]`` section (Abadi et al. 2016, Algorithm 1).

With ``privacy.clip = C`` set, every stochastic gradient node ``i`` computes at step ``t`` is

    g_i = 1/B ( sum_{k in b_{i,t}} clip_C(g_{i,k}) + sigma C xi_{i,t,c} ) + lambda x_i,
    clip_C(g) = g / max(1, ||g|| / C),   xi ~ N(0, I),

with ``sigma = privacy.noise_multiplier`` and the problem's data-independent L2 term
``lambda x_i`` (``weight_decay``, ``reg``) added after the noise: it touches no example, so it
is neither clipped nor counted in the sensitivity. ``xi`` comes from a generator seeded by
``(seed, i, t, c)`` only, ``c`` counting the gradients node ``i`` already took at step ``t``
(two gradients on the same batch get independent noise), so the numbers are the same in
process and over MPI, whatever the placement. :class:`PrivateProblem` wraps the run's problem,
so every algorithm that calls ``problem.gradients`` becomes DP-SGD without edits; per-sample
norms come from the vectorised per-node paths (:mod:`gossip.privacy.per_sample`).

The batch ``b_{i,t}`` (``privacy.sampling``): ``shuffle`` (default) is the problem's own
fixed-size batch of ``B`` examples; ``poisson`` holds each of the node's ``n_i`` examples
independently with probability ``q_i = B / n_i`` (:mod:`gossip.privacy.poisson`, seeded by
``(seed, i, t)``), and the sum is still divided by the EXPECTED size ``q_i n_i = B``, not the
realised one (Abadi et al. 2016; as Opacus does), so ``E[g_i] = grad f_i(x_i)`` at ``C = inf``
and the released quantity is exactly the Poisson-subsampled Gaussian the accountant composes.
The reported loss of a Poisson batch is its mean over the realised batch (0 when empty; an
empty batch releases the noise alone).

What is protected: sample-level DP per node, with respect to adding or removing one training
example of that node; every message, model and aggregate the node's gradients influence is
post-processing. ``epsilon`` of node ``i`` (:mod:`gossip.privacy.accounting`: exact for
``sampling = "poisson"``, the Poisson approximation stated there for ``shuffle``) composes
the gradients node ``i`` actually released: in the decentralized algorithms every hosted node
at every call (a node crashed by ``[faults]`` counts too: an upper bound); in the federated
family (:data:`FEDERATED`) only the clients sampled in the step's round (the others' rows are
computed by the simulator and thrown away, as a real deployment would not compute them). The
training losses in the metrics are a diagnostic outside the guarantee (they are not noised).

Every metrics record gets ``epsilon`` (max over nodes) at ``privacy.delta``;
``summary.json`` holds ``problem.privacy`` with the per-node list, their sampling rates and
query counts. Refused (one-line ConfigError): the quadratic problem (no per-sample structure),
the ``loop`` back-end (per-sample gradients would be a loop), algorithms that use full-batch
gradients (``mime``) or the event-driven lazy gradients (``async_sgd``, ``async_gossip``),
and ``batch_size`` larger than a node's data. A private run resumes exactly: the query
counts are in the checkpoint (:meth:`PrivateProblem.checkpoint_state`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import torch

from gossip.errors import ConfigError
from gossip.options import Option, non_negative, positive
from gossip.privacy.accounting import ACCOUNTANTS, epsilon
from gossip.privacy.per_sample import (
    fused_clipped_sum,
    linear_model_clipped_sum,
    vmap_clipped_sum,
)
from gossip.privacy.poisson import poisson_batches
from gossip.problems.base import Problem
from gossip.problems.classification.problem import ClassificationProblem
from gossip.problems.logistic import Logistic
from gossip.runner.checkpoint import CheckpointError

__all__ = ["FEDERATED", "PRIVACY_OPTIONS", "REFUSED", "SAMPLINGS", "PrivateProblem",
           "check_privacy", "privacy_on", "with_privacy"]


#: Values of ``privacy.sampling``.
SAMPLINGS = ("shuffle", "poisson")


def _open_unit(v) -> str | None:
    return None if 0 < v < 1 else "must be in (0, 1)"


PRIVACY_OPTIONS: list[Option] = [
    Option("clip", float, None, "per-sample L2 clipping norm C of DP-SGD (unset: no DP-SGD)",
           check=positive),
    Option("noise_multiplier", float, 0.0, "sigma: Gaussian noise of std sigma * clip on the "
           "sum of clipped per-sample gradients", check=non_negative),
    Option("delta", float, 1e-5, "delta of the reported (epsilon, delta)", check=_open_unit),
    Option("accountant", str, "rdp", "dp-accounting's RDP or PLD accountant",
           choices=ACCOUNTANTS),
    Option("sampling", str, "shuffle", "mini-batches: shuffle (fixed size B, accounted as "
           "Poisson) or poisson (each example with probability B / n_i, accounting exact)",
           choices=SAMPLINGS),
]

#: Algorithms whose round ``t`` samples clients by
#: :func:`gossip.algorithms.fedavg.configure_round` and takes problem steps
#: ``t K .. t K + K - 1``: name -> the ``[algorithm]`` key of ``K``.
FEDERATED = {"fedavg": "local_steps", "fedprox": "local_steps", "scaffold": "local_steps",
             "minibatch_sgd": "budget"}
#: Algorithms DP-SGD cannot wrap, and why.
REFUSED = {
    "mime": "uses full-batch gradients",
    "async_sgd": "computes gradients lazily per event (which are released is not a call)",
    "async_gossip": "computes gradients lazily per event (which are released is not a call)",
}
#: Problems with per-sample gradients.
SUPPORTED_PROBLEMS = ("classification", "logistic")


def privacy_on(config: Mapping[str, Any]) -> bool:
    """Whether ``config`` runs DP-SGD (``privacy.clip`` set)."""
    return config["privacy"]["clip"] is not None


def check_privacy(config: Mapping[str, Any]) -> None:
    """ConfigError (one line) when ``[privacy]`` does not fit the run."""
    p = config["privacy"]
    if not privacy_on(config):
        if p["noise_multiplier"] > 0:
            raise ConfigError(f"privacy.noise_multiplier={p['noise_multiplier']!r} needs "
                              "privacy.clip (the noise std is noise_multiplier * clip)")
        return
    alg, prob = config["algorithm"]["name"], config["problem"]["name"]
    if alg in REFUSED:
        raise ConfigError(f"[privacy] with algorithm.name={alg!r}: it {REFUSED[alg]}; DP-SGD "
                          f"needs every gradient from problem.gradients")
    if prob not in SUPPORTED_PROBLEMS:
        raise ConfigError(f"[privacy] with problem.name={prob!r}: it has no per-sample "
                          f"gradients; use one of: {', '.join(SUPPORTED_PROBLEMS)}")
    if prob == "classification" and config["problem"]["backend"] == "loop":
        raise ConfigError("[privacy] with problem.backend='loop': per-sample gradients need "
                          "the fused or vmap back-end; use auto, fused or vmap")


class PrivateProblem(Problem):
    """The run's problem with DP-SGD gradients and ``epsilon`` in its metrics (module
    docstring). Everything else is the wrapped problem's (attributes read through).

    Parameters
    ----------
    inner : Problem
        A classification or logistic problem.
    clip, noise_multiplier, delta, accountant, sampling :
        The ``[privacy]`` keys.
    seed : int
        The run's seed (noise streams).
    participates : callable or None
        ``participates(node, step) -> bool``: whether the node's gradient of that step is
        released (federated client sampling); ``None``: always.
    """

    def __init__(self, inner: Problem, *, clip: float, noise_multiplier: float, delta: float,
                 accountant: str, seed: int,
                 participates: Callable[[int, int], bool] | None = None,
                 sampling: str = "shuffle") -> None:
        if not isinstance(inner, Logistic | ClassificationProblem):
            raise ConfigError(f"[privacy] with problem {type(inner).__name__}: it has no "
                              f"per-sample gradients; use one of: "
                              f"{', '.join(SUPPORTED_PROBLEMS)}")
        self.inner = inner
        self.clip, self.noise_multiplier = float(clip), float(noise_multiplier)
        self.delta, self.accountant, self.seed = delta, accountant, int(seed)
        self.participates = participates
        if sampling not in SAMPLINGS:
            raise ConfigError(f"privacy.sampling must be one of [{', '.join(SAMPLINGS)}], "
                              f"got {sampling!r}")
        self.sampling = sampling
        self.sizes = _data_sizes(inner)
        self.batch = _batch_size(inner)
        small = [i for i, m in enumerate(self.sizes) if m < self.batch]
        if small:
            i = small[0]
            raise ConfigError(
                f"[privacy] needs problem.batch_size <= every node's sample count (a batch "
                f"holds each example at most once); node {i} has {self.sizes[i]} samples, "
                f"batch_size={self.batch}"
            )
        #: ``calls[i][t]``: gradients node ``i`` took at step ``t``, for its last two steps
        #: (hosted nodes only); older steps are folded into ``released``.
        self.calls: dict[int, dict[int, int]] = {}
        #: ``released[i][k]``: released steps of node ``i`` with ``k`` gradients, folded.
        self.released: dict[int, dict[int, int]] = {}
        #: ``folded_below[i]``: node ``i``'s steps below it are folded (no longer counted).
        self.folded_below: dict[int, int] = {}
        self.last_epsilons: list[float] | None = None

    def __getattr__(self, name: str):
        return getattr(self.__dict__["inner"], name)

    # -- gradients (no full_gradients: HAS_FULL_GRADIENTS stays False) ----------------------
    def init_params(self, nodes: range) -> torch.Tensor:
        return self.inner.init_params(nodes)

    def gradients(self, X: torch.Tensor, nodes: range, step: int
                  ) -> tuple[torch.Tensor, torch.Tensor]:
        """DP-SGD gradients ``(b, dim)`` and the mini-batch losses ``(b,)`` (module docstring)."""
        S, losses = self.clipped_sums(X, nodes, step)
        calls = [self._count_call(i, step) for i in nodes]
        if self.noise_multiplier > 0:
            # rows whose gradient is not released (clients not sampled) are thrown away by
            # the algorithm: they get no noise, which saves drawing it
            xi = np.zeros(S.shape)
            for k, (i, c) in enumerate(zip(nodes, calls, strict=True)):
                if self.participates is None or self.participates(i, step):
                    xi[k] = np.random.default_rng([self.seed, i, step, c, 0xD95C]
                                                  ).standard_normal(S.shape[1])
            std = self.noise_multiplier * self.clip
            S = S + std * torch.as_tensor(xi, dtype=S.dtype, device=S.device)
        return S / self.batch + self.l2 * X, losses

    def clipped_sums(self, X: torch.Tensor, nodes: range, step: int
                     ) -> tuple[torch.Tensor, torch.Tensor]:
        """``sum_k clip_C(g_{i,k})`` ``(b, dim)`` over node ``i``'s batch of ``step``, and the
        mean losses (without the L2 term)."""
        inner = self.inner
        if self.sampling == "poisson":
            return self._poisson_clipped_sums(X, nodes, step)
        if self.kind == "logistic":
            A, y = inner.batch(nodes, step)
            S, losses, _ = linear_model_clipped_sum(X, A, y, self.clip)
            return S, losses
        idx = np.stack([inner.batch_indices(i, step) for i in nodes])
        return self._classification_sums(X, idx, step)

    def _classification_sums(self, X: torch.Tensor, idx: np.ndarray, step: int,
                             weights: torch.Tensor | None = None
                             ) -> tuple[torch.Tensor, torch.Tensor]:
        """Clipped sums of the classification problem over the training examples ``idx``
        ``(b, L)`` (weighted when ``weights`` is given), by the problem's back-end."""
        inner = self.inner
        idx_t = torch.from_numpy(idx).to(inner.device)
        fn = fused_clipped_sum if inner.backend.name == "fused" else vmap_clipped_sum
        S, losses, _ = fn(inner.model, X, inner.train_x[idx_t], inner.train_y[idx_t], self.clip,
                          weights)
        inner.steps_done = step + 1
        return S, losses

    def _poisson_clipped_sums(self, X: torch.Tensor, nodes: range, step: int
                              ) -> tuple[torch.Tensor, torch.Tensor]:
        """:meth:`clipped_sums` over Poisson batches (:mod:`gossip.privacy.poisson`): the
        padded block's per-sample terms weighted by the 0/1 inclusion mask."""
        inner = self.inner
        pos, w = poisson_batches(self.seed, nodes, self.sizes, self.batch, step)
        w_t = torch.as_tensor(w, dtype=X.dtype, device=X.device)
        if self.kind == "logistic":
            pos_t = torch.as_tensor(pos, device=inner.A.device)
            A = torch.gather(inner.A[nodes.start : nodes.stop], 1,
                             pos_t.unsqueeze(2).expand(-1, -1, inner.dim))
            y = torch.gather(inner.b[nodes.start : nodes.stop], 1, pos_t)
            S, losses, _ = linear_model_clipped_sum(X, A, y, self.clip, w_t)
            return S, losses
        idx = np.stack([inner.parts[i][p] for i, p in zip(nodes, pos, strict=True)])
        return self._classification_sums(X, idx, step, w_t)

    @property
    def kind(self) -> str:
        """``logistic`` or ``classification``: which per-sample path the gradients take."""
        return "logistic" if isinstance(self.inner, Logistic) else "classification"

    @property
    def l2(self) -> float:
        """The data-independent L2 coefficient of the wrapped problem's gradient."""
        inner = self.inner
        return float(getattr(inner, "weight_decay", 0.0) if self.kind == "classification"
                     else inner.reg)

    # -- accounting --------------------------------------------------------------------------
    def _count_call(self, node: int, step: int) -> int:
        """Note one gradient of ``node`` at ``step``; returns how many it took there before.
        Steps two or more behind ``step`` are final (no algorithm goes back to an older batch)
        and are folded into ``released``, so the counts stay a few entries per node."""
        per_step = self.calls.setdefault(node, {})
        for old in [t for t in per_step if t < step - 1]:
            self._fold(node, old, per_step.pop(old))
        done = self.folded_below.get(node, 0)
        if step < done:
            raise RuntimeError(f"node {node} took a gradient at step {step} after steps "
                               f"below {done} were accounted")
        c = per_step.get(step, 0)
        per_step[step] = c + 1
        return c

    def _fold(self, node: int, step: int, k: int) -> None:
        self.folded_below[node] = max(self.folded_below.get(node, 0), step + 1)
        if self.participates is None or self.participates(node, step):
            counts = self.released.setdefault(node, {})
            counts[k] = counts.get(k, 0) + 1

    def histogram(self, node: int) -> tuple[tuple[int, int], ...]:
        """``((k, steps), ...)``: how many released steps node ``node`` queried ``k`` times."""
        counts = dict(self.released.get(node, {}))
        for step, k in self.calls.get(node, {}).items():
            if self.participates is None or self.participates(node, step):
                counts[k] = counts.get(k, 0) + 1
        return tuple(sorted(counts.items()))

    def checkpoint_state(self) -> dict:
        """The query counts of the hosted nodes (the accountant's input), as plain lists."""
        return {
            "calls": [[i, t, k] for i, per in self.calls.items() for t, k in per.items()],
            "released": [[i, k, m] for i, per in self.released.items() for k, m in per.items()],
            "folded_below": [[i, t] for i, t in self.folded_below.items()],
        }

    def restore_checkpoint_state(self, saved: dict) -> None:
        """Take back :meth:`checkpoint_state` of a checkpoint."""
        try:
            calls, released, below = saved["calls"], saved["released"], saved["folded_below"]
            self.calls, self.released, self.folded_below = {}, {}, {}
            for i, t, k in calls:
                self.calls.setdefault(int(i), {})[int(t)] = int(k)
            for i, k, m in released:
                self.released.setdefault(int(i), {})[int(k)] = int(m)
            for i, t in below:
                self.folded_below[int(i)] = int(t)
        except (KeyError, TypeError, ValueError) as err:
            raise CheckpointError(f"checkpoint has no valid [privacy] query counts "
                                  f"({type(err).__name__}: {err})") from None

    def epsilons(self, comm) -> list[float]:
        """Collective: ``epsilon`` at ``delta`` of every node (the same list on every rank)."""
        local = torch.zeros(comm.n, dtype=torch.float64)
        for i in comm.nodes:
            local[i] = epsilon(self.batch / self.sizes[i], self.noise_multiplier,
                               self.histogram(i), self.delta, self.accountant)
        return comm.allreduce_sum(local.to(self.inner.device)).cpu().tolist()

    def evaluate(self, X: torch.Tensor, comm) -> dict[str, float]:
        """The wrapped problem's metrics and ``epsilon``, the largest over nodes."""
        out = self.inner.evaluate(X, comm)
        self.last_epsilons = self.epsilons(comm)
        out["epsilon"] = max(self.last_epsilons)
        return out

    def describe(self) -> dict:
        """The wrapped problem's description with ``privacy``: the keys, each node's
        ``epsilon`` (at the last record), sampling rate ``q_i = B / n_i`` and ``steps``."""
        return {
            **self.inner.describe(),
            "privacy": {
                "mechanism": "DP-SGD (Abadi et al. 2016), sample-level DP per node",
                "clip": self.clip, "noise_multiplier": self.noise_multiplier,
                "delta": self.delta, "accountant": self.accountant,
                "sampling": ("Poisson with q_i = B / n_i (accounting exact)"
                             if self.sampling == "poisson"
                             else "accounted as Poisson with q_i = B / n_i"),
                "q": [self.batch / m for m in self.sizes],
                "epsilon": self.last_epsilons,
            },
        }


def _data_sizes(problem: Problem) -> list[int]:
    """``n_i``: the training examples of every node."""
    if hasattr(problem, "parts"):
        return [len(p) for p in problem.parts]
    return [problem.m] * problem.n


def _batch_size(problem: Problem) -> int:
    """``B`` of one gradient (logistic ``batch_size = 0``: all ``m`` samples)."""
    return problem.batch_size or problem.m


def _participation(config: Mapping[str, Any]) -> Callable[[int, int], bool] | None:
    """``participates(node, step)`` of the federated family (:data:`FEDERATED`): node ``i``
    is in ``configure_round(n, client_fraction, seed, step // K)``; ``None`` otherwise."""
    alg = config["algorithm"]
    key = FEDERATED.get(alg["name"])
    if key is None or alg["client_fraction"] >= 1:
        return None
    from gossip.algorithms.fedavg import configure_round

    n, fraction, seed, K = config["nodes"], alg["client_fraction"], config["seed"], alg[key]
    rounds: dict[int, frozenset[int]] = {}  # S_t of every round seen (a few ids each)

    def participates(node: int, step: int) -> bool:
        t = step // K
        if t not in rounds:
            rounds[t] = frozenset(configure_round(n, fraction, seed, t).tolist())
        return node in rounds[t]

    return participates


def with_privacy(problem: Problem, config: Mapping[str, Any]) -> Problem:
    """``problem`` itself without ``privacy.clip``, else its :class:`PrivateProblem`."""
    if not privacy_on(config):
        return problem
    p = config["privacy"]
    return PrivateProblem(problem, clip=p["clip"], noise_multiplier=p["noise_multiplier"],
                          delta=p["delta"], accountant=p["accountant"], seed=config["seed"],
                          participates=_participation(config), sampling=p["sampling"])
