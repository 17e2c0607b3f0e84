"""Registry of problems: ``make_problem(name, options, n=, seed=, device=, dtype=)``.

Each entry of :data:`~gossip.problems.base.PROBLEMS` is a factory
``factory(cfg, *, n, seed, device, dtype) -> Problem`` (a Problem class) and the frozen
dataclass of its ``[problem]`` keys; a problem module registers with
:func:`~gossip.problems.base.register_problem`. The built-in modules are imported here so
that they register.
"""

from __future__ import annotations

from typing import Any

import torch

from gossip.problems import classification, logistic, quadratic  # noqa: F401  (they register)
from gossip.problems.base import PROBLEMS, Problem, register_problem

__all__ = ["PROBLEMS", "make_problem", "problem_names", "register_problem"]


def problem_names() -> list[str]:
    """Names accepted by :func:`make_problem`, sorted."""
    return PROBLEMS.names()


def make_problem(
    name: str,
    options: dict[str, Any],
    *,
    n: int,
    seed: int,
    device: torch.device | str = "cpu",
    dtype: torch.dtype = torch.float32,
) -> Problem:
    """The problem ``name`` for ``n`` nodes, its ``[problem]`` options resolved and checked.

    ``options`` is the ``[problem]`` section without ``name``.

    Raises
    ------
    ConfigError
        Unknown name (listing the valid ones), unknown key or bad value (``problem.<key>``).
    """
    factory = PROBLEMS[name]
    return factory(PROBLEMS.config(name, options), n=n, seed=seed, device=device, dtype=dtype)
