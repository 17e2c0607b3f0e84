"""The problem interface: what a node block computes locally.

A problem owns the per-node objectives ``f_i`` and their stochastic gradients. Parameters of a
block are one flat tensor ``X`` of shape ``(b, dim)`` (row ``k`` belongs to node
``nodes[k]``); ``layout`` says how a flat row splits into named parameter tensors (compressors
such as low-rank use it).

Two kinds of gradient: ``gradients(X, nodes, step)`` is stochastic, and every call with the
same ``step`` draws the same samples for a node (its batch depends on ``(seed, i, step)``
only), so gradients of several points on the same batch, ``g_i(y; z) - g_i(x; z)`` (Mime,
SCAFFOLD-type corrections, STORM), are two calls with one ``step``. ``full_gradients(X,
nodes)`` is ``grad f_i`` over node ``i``'s whole local objective, where a problem offers it
(``HAS_FULL_GRADIENTS``).

Placement independence: every random draw of node ``i`` at step ``t`` (mini-batch indices,
gradient noise) must come from a generator seeded by ``(seed, i, t)`` only, never from a
per-process stream, so the same seed gives the same numbers in process and over MPI.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import ClassVar

import numpy as np
import torch

from gossip.errors import ConfigError
from gossip.registry import NoOptions, Registry

__all__ = ["PROBLEMS", "Problem", "register_problem"]


class Problem(ABC):
    """Per-node objectives ``f_i`` with stochastic gradients.

    Attributes
    ----------
    dim : int
        Length of a node's flat parameter vector.
    layout : list of (name, shape)
        How a flat row splits into parameter tensors, in order.
    device, dtype :
        Where and in which precision the block lives.
    honest : ndarray of int64 or None
        Under an ``[attack]``, the sorted ids of the honest nodes (set by
        :func:`gossip.robust.attacks.build_attack`): ``evaluate`` reports over them only, against
        their objective ``1/|H| sum_{i in H} f_i``; ``None``: every node.
    """

    honest: np.ndarray | None = None
    dim: int
    layout: list[tuple[str, tuple[int, ...]]]
    device: torch.device = torch.device("cpu")
    dtype: torch.dtype = torch.float32
    #: Whether :meth:`full_gradients` is available (algorithms that need it check this).
    HAS_FULL_GRADIENTS: ClassVar[bool] = False

    @abstractmethod
    def init_params(self, nodes: range) -> torch.Tensor:
        """Starting parameters ``X_0`` of the hosted nodes, ``(len(nodes), dim)``."""

    @abstractmethod
    def gradients(
        self, X: torch.Tensor, nodes: range, step: int
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Stochastic gradients ``G`` ``(b, dim)`` and losses ``(b,)`` at ``X`` for ``step``."""

    def full_gradients(self, X: torch.Tensor, nodes: range) -> tuple[torch.Tensor, torch.Tensor]:
        """Full-batch gradients ``grad f_i(x_i)`` ``(b, dim)`` and losses ``f_i(x_i)`` ``(b,)``
        of the hosted nodes (no sampling noise); only where ``HAS_FULL_GRADIENTS``."""
        raise NotImplementedError(f"{type(self).__name__} has no full-batch gradients")

    @abstractmethod
    def evaluate(self, X: torch.Tensor, comm) -> dict[str, float]:
        """Collective: metrics of the whole run from every process's block (same on all ranks).

        Includes ``distance_to_optimum = 1/n sum_i ||x_i - x*||^2`` where ``x*`` is known.
        """

    def describe(self) -> dict:
        """What goes into ``summary.json`` about this problem."""
        return {"dim": self.dim}

    def checkpoint_state(self) -> dict:
        """What a checkpoint keeps of the problem besides the parameters, as plain data: ``{}``
        (batches are functions of ``(seed, i, step)``); the DP-SGD wrapper's query counts."""
        return {}

    def restore_checkpoint_state(self, saved: dict) -> None:
        """Take back :meth:`checkpoint_state` from a checkpoint: here ``{}``; anything else
        was written for another problem (ConfigError)."""
        if saved:
            raise ConfigError(f"checkpoint holds problem state {sorted(saved)} that "
                              f"{type(self).__name__} does not keep; it is from another run")


#: Every problem by its ``[problem] name``: a factory
#: ``factory(cfg, *, n, seed, device, dtype) -> Problem`` (a Problem class taking its options
#: dataclass first) and that dataclass. Built-in modules register when
#: :mod:`gossip.problems.registry` is imported.
PROBLEMS: Registry[Callable[..., Problem]] = Registry("problem", "problem")


def register_problem(name: str, config: type = NoOptions) -> Callable:
    """Decorator: ``factory(cfg, *, n, seed, device, dtype)`` joins :data:`PROBLEMS` as ``name``
    with the options dataclass ``config``."""
    return PROBLEMS.register(name, config)
