"""Synthetic non-iid logistic regression with a computed optimum.

Node ``i`` holds ``m`` samples ``(a_ij, b_ij)``, ``b in {-1, +1}``: features
``a_ij = mu_i + N(0, I)`` around a node-specific mean ``mu_i ~ heterogeneity * N(0, I)``,
labels ``b_ij = +1`` with probability ``sigmoid(<a_ij, w> + s_i)`` for one shared ``w ~ N(0, I)``
and a node-specific label skew ``s_i ~ label_skew * N(0, 1)``. The objective is::

    f_i(x) = 1/m sum_j log(1 + exp(-b_ij <a_ij, x>)) + reg / 2 ||x||^2,   f = 1/n sum_i f_i

strongly convex for ``reg > 0``, so ``x*`` is unique. It is computed once, identically on
every process, by scipy's L-BFGS on the full objective (gtol 1e-12) followed by Newton steps
to machine precision. Stochastic gradients use ``batch_size`` samples drawn without
replacement by a generator seeded by ``(seed, node, step)``; ``batch_size = 0`` means the full
local data (deterministic gradients).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import scipy.optimize
import scipy.special
import torch

from gossip.errors import ConfigError
from gossip.options import at_least, non_negative, positive
from gossip.problems.base import Problem, register_problem
from gossip.registry import option

__all__ = ["Logistic", "LogisticConfig"]


@dataclass(frozen=True)
class LogisticConfig:
    """``[problem]`` keys of ``logistic``."""

    dim: int = option(10, "number of features", check=at_least(1))
    samples_per_node: int = option(64, "local data set size m", check=at_least(1))
    batch_size: int = option(0, "mini-batch size (0: full local data)", check=non_negative)
    heterogeneity: float = option(1.0, "scale of the node feature means", check=non_negative)
    label_skew: float = option(1.0, "scale of the node label biases", check=non_negative)
    reg: float = option(0.01, "l2 regularisation (> 0: unique optimum)", check=positive)

    def __post_init__(self) -> None:
        if self.batch_size > self.samples_per_node:
            raise ConfigError(
                f"problem.batch_size must be <= problem.samples_per_node="
                f"{self.samples_per_node}, got {self.batch_size}"
            )


def _loss_grad(x: np.ndarray, A: np.ndarray, b: np.ndarray, reg: float) -> tuple[float, np.ndarray]:
    """Full objective ``f`` and its gradient; ``A (n, m, d)``, ``b (n, m)``."""
    z = -b * (A @ x)
    loss = np.logaddexp(0, z).mean() + 0.5 * reg * x @ x
    s = -b * scipy.special.expit(z)
    grad = np.einsum("nm,nmd->d", s, A) / s.size + reg * x
    return float(loss), grad


@register_problem("logistic", LogisticConfig)
class Logistic(Problem):
    """Non-iid l2-regularised logistic regression with known optimum."""

    HAS_FULL_GRADIENTS = True

    def __init__(
        self,
        cfg: LogisticConfig,
        *,
        n: int,
        seed: int = 0,
        device: torch.device | str = "cpu",
        dtype: torch.dtype = torch.float32,
    ) -> None:
        self.cfg = cfg
        dim, samples_per_node, batch_size, reg = (cfg.dim, cfg.samples_per_node, cfg.batch_size,
                                                  cfg.reg)
        heterogeneity, label_skew = cfg.heterogeneity, cfg.label_skew
        self.n, self.seed, self.dim, self.reg = n, int(seed), dim, reg
        self.m, self.batch_size = samples_per_node, batch_size
        self.device, self.dtype = torch.device(device), dtype
        self.layout = [("w", (dim,))]
        rng = np.random.default_rng([self.seed, 0x106])
        mu = heterogeneity * rng.standard_normal((n, 1, dim))
        A = mu + rng.standard_normal((n, samples_per_node, dim))
        w = rng.standard_normal(dim)
        skew = label_skew * rng.standard_normal((n, 1))
        p = scipy.special.expit(A @ w + skew)
        b = np.where(rng.uniform(size=p.shape) < p, 1.0, -1.0)
        self.A_np, self.b_np = A, b
        self.x_star_np = self._solve()
        self.f_star = _loss_grad(self.x_star_np, A, b, reg)[0]
        self.A = torch.as_tensor(A, dtype=dtype, device=self.device)
        self.b = torch.as_tensor(b, dtype=dtype, device=self.device)

    def _solve(self) -> np.ndarray:
        A, b, reg = self.A_np, self.b_np, self.reg
        res = scipy.optimize.minimize(
            _loss_grad, np.zeros(self.dim), args=(A, b, reg), jac=True, method="L-BFGS-B",
            options={"gtol": 1e-12, "ftol": 1e-15, "maxiter": 10_000},
        )
        x = res.x
        flat = A.reshape(-1, self.dim)
        for _ in range(5):  # Newton polish: f is smooth and strongly convex
            _, g = _loss_grad(x, A, b, reg)
            s = scipy.special.expit(flat @ x)
            H = (flat * (s * (1 - s))[:, None]).T @ flat / len(flat) + reg * np.eye(self.dim)
            x = x - np.linalg.solve(H, g)
        return x

    def init_params(self, nodes: range) -> torch.Tensor:
        return torch.zeros(len(nodes), self.dim, dtype=self.dtype, device=self.device)

    def batch(self, nodes: range, step: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Features ``(b, B, dim)`` and labels ``(b, B)`` of the hosted nodes' mini-batches at
        ``step`` (``B`` of ``m`` drawn without replacement by ``rng([seed, node, step])``; all
        ``m`` for ``batch_size = 0``)."""
        A = self.A[nodes.start : nodes.stop]
        b = self.b[nodes.start : nodes.stop]
        if self.batch_size:
            idx = np.stack([
                np.random.default_rng([self.seed, node, step]).choice(
                    self.m, self.batch_size, replace=False)
                for node in nodes
            ])
            idx_t = torch.as_tensor(idx, device=A.device)
            A = torch.gather(A, 1, idx_t.unsqueeze(2).expand(-1, -1, self.dim))
            b = torch.gather(b, 1, idx_t)
        return A, b

    def gradients(
        self, X: torch.Tensor, nodes: range, step: int
    ) -> tuple[torch.Tensor, torch.Tensor]:
        return self._grad(X, *self.batch(nodes, step))

    def full_gradients(self, X: torch.Tensor, nodes: range) -> tuple[torch.Tensor, torch.Tensor]:
        """``grad f_i(x_i)`` over all ``m`` local samples, whatever ``batch_size``."""
        return self._grad(X, self.A[nodes.start : nodes.stop], self.b[nodes.start : nodes.stop])

    def _grad(
        self, X: torch.Tensor, A: torch.Tensor, b: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Gradients and losses of row ``k`` of ``X`` on samples ``A[k], b[k]``."""
        z = -b * torch.einsum("bmd,bd->bm", A, X)
        losses = torch.nn.functional.softplus(z).mean(1) + 0.5 * self.reg * (X * X).sum(1)
        s = -b * torch.sigmoid(z)
        G = torch.einsum("bm,bmd->bd", s, A) / A.shape[1] + self.reg * X
        return G, losses

    def evaluate(self, X: torch.Tensor, comm) -> dict[str, float]:
        X64 = X.detach().to(torch.float64)
        x_star = torch.as_tensor(self.x_star_np, device=X.device)
        dist = float(comm.allreduce_sum(((X64 - x_star) ** 2).sum().reshape(1))[0]) / self.n
        x_bar = comm.mean_rows(X64).cpu().numpy()
        return {
            "distance_to_optimum": dist,
            "suboptimality": _loss_grad(x_bar, self.A_np, self.b_np, self.reg)[0] - self.f_star,
        }

    def describe(self) -> dict:
        return {"name": "logistic", **asdict(self.cfg)}
