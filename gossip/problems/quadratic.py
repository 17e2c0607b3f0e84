"""Heterogeneous quadratics with a known optimum (for exactness tests).

Node ``i`` holds::

    f_i(x) = 1/2 a_i ||x - c_i||^2,     a_i ~ U[a_min, a_max],   c_i ~ heterogeneity * N(0, I)

and the stochastic gradient ``g_i(x; s) = a_i (x - c_i) + sigma xi_{i,s}`` with
``xi_{i,s} ~ N(0, I)`` drawn from a generator seeded by ``(seed, i, s)`` only. The average
``f = 1/n sum_i f_i`` has the unique minimiser ``x* = sum_i a_i c_i / sum_i a_i``. With
``heterogeneity > 0`` the local minimisers ``c_i`` differ, which is what makes D-SGD stall at
a floor and gradient tracking / D^2 / RelaySum exact (Koloskova et al., 2020, Section 6;
Tang et al., 2018).

All ``a_i, c_i`` are drawn on every process from ``seed`` alone, so every rank knows ``x*``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import torch

from gossip.errors import ConfigError
from gossip.options import at_least, non_negative, positive
from gossip.problems.base import Problem, register_problem
from gossip.registry import option

__all__ = ["Quadratic", "QuadraticConfig", "node_noise"]


@dataclass(frozen=True)
class QuadraticConfig:
    """``[problem]`` keys of ``quadratic``."""

    dim: int = option(10, "dimension d of x", check=at_least(1))
    heterogeneity: float = option(1.0, "scale of the local minimisers c_i", check=non_negative)
    a_min: float = option(1.0, "smallest curvature a_i", check=positive)
    a_max: float = option(4.0, "largest curvature a_i", check=positive)
    sigma: float = option(0.0, "std of the additive gradient noise", check=non_negative)
    init_scale: float = option(0.0, "x_0 = init_scale * N(0, I), the same on every node",
                               check=non_negative)

    def __post_init__(self) -> None:
        if self.a_max < self.a_min:
            raise ConfigError(
                f"problem.a_max must be >= problem.a_min={self.a_min}, got {self.a_max}"
            )


def node_noise(seed: int, nodes: range, step: int, dim: int) -> np.ndarray:
    """``(len(nodes), dim)`` standard normals; node ``i``'s row from ``rng([seed, i, step])``."""
    return np.stack(
        [np.random.default_rng([seed, node, step]).standard_normal(dim) for node in nodes]
    )


@register_problem("quadratic", QuadraticConfig)
class Quadratic(Problem):
    """``f_i(x) = 1/2 a_i ||x - c_i||^2`` with optimum ``x* = sum a_i c_i / sum a_i``."""

    HAS_FULL_GRADIENTS = True

    def __init__(
        self,
        cfg: QuadraticConfig,
        *,
        n: int,
        seed: int = 0,
        device: torch.device | str = "cpu",
        dtype: torch.dtype = torch.float32,
    ) -> None:
        self.cfg = cfg
        dim, sigma, heterogeneity = cfg.dim, cfg.sigma, cfg.heterogeneity
        self.n, self.seed, self.dim, self.sigma = n, int(seed), dim, sigma
        self.device, self.dtype = torch.device(device), dtype
        self.layout = [("x", (dim,))]
        rng = np.random.default_rng([self.seed, 0x51AD])
        a = rng.uniform(cfg.a_min, cfg.a_max, size=n)
        c = heterogeneity * rng.standard_normal((n, dim))
        x0 = cfg.init_scale * rng.standard_normal(dim)
        self.a_np, self.c_np = a, c
        self.x_star_np = (a[:, None] * c).sum(0) / a.sum()
        self.f_star = float(self._f_np(self.x_star_np))
        self.a = torch.as_tensor(a, dtype=dtype, device=self.device)
        self.c = torch.as_tensor(c, dtype=dtype, device=self.device)
        self.x0 = torch.as_tensor(x0, dtype=dtype, device=self.device)
        self.x_star = torch.as_tensor(self.x_star_np, dtype=dtype, device=self.device)

    def _f_np(self, x: np.ndarray) -> float:
        """``f(x) = 1/n sum_i f_i(x)`` in float64."""
        return float(np.mean(0.5 * self.a_np * ((x[None, :] - self.c_np) ** 2).sum(1)))

    def init_params(self, nodes: range) -> torch.Tensor:
        return self.x0.expand(len(nodes), self.dim).clone()

    def full_gradients(self, X: torch.Tensor, nodes: range) -> tuple[torch.Tensor, torch.Tensor]:
        """``grad f_i(x_i) = a_i (x_i - c_i)``: the stochastic gradient without its noise."""
        a = self.a[nodes.start : nodes.stop].unsqueeze(1)
        R = X - self.c[nodes.start : nodes.stop]
        return a * R, 0.5 * a.squeeze(1) * (R * R).sum(1)

    def gradients(
        self, X: torch.Tensor, nodes: range, step: int
    ) -> tuple[torch.Tensor, torch.Tensor]:
        G, losses = self.full_gradients(X, nodes)
        if self.sigma > 0:
            xi = node_noise(self.seed, nodes, step, self.dim)
            G = G + self.sigma * torch.as_tensor(xi, dtype=X.dtype, device=X.device)
        return G, losses

    def evaluate(self, X: torch.Tensor, comm) -> dict[str, float]:
        if self.honest is not None:
            return self._evaluate_honest(X, comm)
        nodes = comm.nodes
        X64 = X.detach().to(torch.float64)
        x_star = torch.as_tensor(self.x_star_np, dtype=torch.float64, device=X.device)
        a = torch.as_tensor(self.a_np[nodes.start : nodes.stop], device=X.device)
        c = torch.as_tensor(self.c_np[nodes.start : nodes.stop], device=X.device)
        local = torch.stack([
            ((X64 - x_star) ** 2).sum(),
            (0.5 * a * ((X64 - c) ** 2).sum(1)).sum(),
        ])
        dist, loss = (comm.allreduce_sum(local) / self.n).tolist()
        x_bar = comm.mean_rows(X64)
        return {
            "distance_to_optimum": dist,
            "loss_at_mean": self._f_np(x_bar.cpu().numpy()) - self.f_star,
            "train_loss": loss,
        }

    def _evaluate_honest(self, X: torch.Tensor, comm) -> dict[str, float]:
        """The metrics of :meth:`evaluate` over the honest nodes ``H`` only, against their
        optimum ``x*_H = sum_H a_i c_i / sum_H a_i`` and ``f_H = 1/|H| sum_H f_i``."""
        nodes, H = comm.nodes, self.honest
        a_h, c_h = self.a_np[H], self.c_np[H]
        x_star = (a_h[:, None] * c_h).sum(0) / a_h.sum()

        def f_h(x: np.ndarray) -> float:
            return float(np.mean(0.5 * a_h * ((x[None, :] - c_h) ** 2).sum(1)))

        w = np.zeros(self.n)
        w[H] = 1.0
        X64 = X.detach().to(torch.float64)
        wt = torch.as_tensor(w[nodes.start : nodes.stop], device=X.device)
        xs = torch.as_tensor(x_star, dtype=torch.float64, device=X.device)
        a = torch.as_tensor(self.a_np[nodes.start : nodes.stop], device=X.device)
        c = torch.as_tensor(self.c_np[nodes.start : nodes.stop], device=X.device)
        local = torch.stack([
            (wt * ((X64 - xs) ** 2).sum(1)).sum(),
            (wt * 0.5 * a * ((X64 - c) ** 2).sum(1)).sum(),
        ])
        dist, loss = (comm.allreduce_sum(local) / len(H)).tolist()
        x_bar = comm.sum_rows(wt.unsqueeze(1) * X64) / len(H)
        return {
            "distance_to_optimum": dist,
            "loss_at_mean": f_h(x_bar.cpu().numpy()) - f_h(x_star),
            "train_loss": loss,
        }

    def describe(self) -> dict:
        return {"name": "quadratic", **asdict(self.cfg)}
