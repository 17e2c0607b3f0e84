"""Algorithms, each written once on node blocks in the matrix form of its paper.

The registry :data:`ALGORITHMS` maps the ``[algorithm] name`` of a config to its class::

    alg = make_algorithm("dsgd", {"local_steps": 2, "momentum": 0.9})
    alg.cfg.local_steps   # 2

``options`` is the ``[algorithm]`` section without ``name`` and ``lr`` (the run loop turns
``lr`` into ``ctx.lr``). An algorithm is one module: a class with ``name``, a frozen
dataclass ``Config`` of its options, and the decorator :func:`register_algorithm`; the
built-in modules are imported below so that they register.
"""

from __future__ import annotations

from typing import Any

from gossip.algorithms import (  # noqa: F401  (each module registers its algorithms)
    allreduce,
    async_gossip,
    async_sgd,
    beer,
    choco,
    clipped_gossip,
    d2,
    dsgd,
    fedavg,
    fedprox,
    gradient_tracking,
    local_mixvr,
    mime,
    minibatch,
    relaysum,
    scaffold,
)
from gossip.algorithms.base import ALGORITHMS, Algorithm, Context, register_algorithm

__all__ = [
    "ALGORITHMS",
    "Algorithm",
    "Context",
    "algorithm_names",
    "make_algorithm",
    "register_algorithm",
]


def algorithm_names() -> list[str]:
    """Names accepted by :func:`make_algorithm`, sorted."""
    return ALGORITHMS.names()


def make_algorithm(name: str, options: dict[str, Any]) -> Algorithm:
    """The algorithm ``name`` with its ``[algorithm]`` options resolved and checked.

    Raises
    ------
    ConfigError
        Unknown name (listing the valid ones), unknown key or bad value
        (``algorithm.<key> ...``).
    """
    return ALGORITHMS[name](ALGORITHMS.config(name, options))
