"""Algorithms, each written once on node blocks in the matrix form of its paper.

The registry maps the ``[algorithm] name`` of a config to its class::

    alg = make_algorithm("dsgd", {"local_steps": 2, "momentum": 0.9})

``options`` is the ``[algorithm]`` section without ``name`` and ``lr`` (the run loop turns
``lr`` into ``ctx.lr``). Algorithms written in modules of their own (``choco``) register
with :func:`register_algorithm`, or are picked up from ``gossip.algorithms.<module>`` for
the modules in ``_OPTIONAL`` when that module exists.
"""

from __future__ import annotations

import importlib
import inspect
from typing import Any

from gossip.algorithms.allreduce import AllReduce
from gossip.algorithms.base import Algorithm, Context
from gossip.algorithms.d2 import D2
from gossip.algorithms.dsgd import DSGD
from gossip.algorithms.fedavg import FedAvg
from gossip.algorithms.gradient_tracking import GradientTracking
from gossip.algorithms.relaysum import RelaySumGrad, RelaySumModel
from gossip.options import resolve, unknown_name

__all__ = [
    "ALGORITHMS",
    "Algorithm",
    "Context",
    "algorithm_names",
    "make_algorithm",
    "register_algorithm",
]

ALGORITHMS: dict[str, type[Algorithm]] = {}

# Modules written by others that define algorithms; imported on first registry lookup.
_OPTIONAL = ("gossip.algorithms.choco", "gossip.algorithms.beer")
_loaded = False


def register_algorithm(cls: type[Algorithm]) -> type[Algorithm]:
    """Add ``cls`` to :data:`ALGORITHMS` under ``cls.name`` (usable as a class decorator)."""
    ALGORITHMS[cls.name] = cls
    return cls


def _load_optional() -> None:
    global _loaded
    if _loaded:
        return
    _loaded = True
    for module_name in _OPTIONAL:
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as e:
            if e.name == module_name:
                continue
            raise
        for _, obj in inspect.getmembers(module, inspect.isclass):
            if (
                issubclass(obj, Algorithm)
                and not inspect.isabstract(obj)
                and obj.__module__ == module_name
                and getattr(obj, "name", None)
            ):
                ALGORITHMS.setdefault(obj.name, obj)


def algorithm_names() -> list[str]:
    """Names accepted by :func:`make_algorithm`, sorted."""
    _load_optional()
    return sorted(ALGORITHMS)


def make_algorithm(name: str, options: dict[str, Any]) -> Algorithm:
    """The algorithm ``name`` with its ``[algorithm]`` options resolved and checked.

    Raises
    ------
    ConfigError
        Unknown name (listing the valid ones), unknown key or bad value
        (``algorithm.<key> ...``).
    """
    _load_optional()
    if name not in ALGORITHMS:
        raise unknown_name("algorithm", name, list(ALGORITHMS))
    cls = ALGORITHMS[name]
    return cls(**resolve("algorithm", dict(options), cls.OPTIONS))


for _cls in (DSGD, GradientTracking, D2, RelaySumModel, RelaySumGrad, AllReduce, FedAvg):
    register_algorithm(_cls)
