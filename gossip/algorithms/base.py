"""The algorithm interface: one communication round on a node block.

An algorithm is written once, in the matrix form of its paper, on the hosted block ``X``
``(b, dim)``, and talks to other nodes only through ``ctx.comm``. Its memory between rounds is
one ``NamedTuple`` of tensors (``X`` first, then trackers ``Y``, public copies ``X_hat``, relay
buffers, momentum ...): nothing hides in attributes, so a checkpoint saves the state as it is.

Round ``t`` performs ``H = local_steps`` gradient steps (problem step indices
``t * H + h``) and one communication round with ``W(t) = ctx.schedule.matrix(t)``.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any, ClassVar, NamedTuple

import networkx as nx
import torch

from gossip.comm.base import Communicator
from gossip.problems.base import Problem
from gossip.registry import NoOptions, Registry

__all__ = ["ALGORITHMS", "Algorithm", "Context", "register_algorithm"]

#: Every algorithm by its ``[algorithm] name``; built-in modules register when
#: :mod:`gossip.algorithms` is imported.
ALGORITHMS: Registry[type[Algorithm]] = Registry("algorithm", "algorithm")


@dataclass
class Context:
    """What an algorithm may use besides its own state.

    Attributes
    ----------
    comm : Communicator
        Moves rows between processes; counts bytes.
    problem : Problem
        Gradients of the hosted nodes: ``problem.gradients(X, comm.nodes, step)``.
    schedule :
        A ``topologies`` schedule: ``schedule.matrix(t)`` is ``W(t)`` (scipy sparse, n x n).
    graph : networkx.Graph
        The run's base topology (RelaySum takes its spanning tree from it).
    lr : callable
        ``lr(t)``: the step size ``eta`` at round ``t``.
    seed : int
        The run's seed (client sampling, randomised compressors).
    compressor : optional
        The run's compression operator (``gossip.compression``), or None for none.
    time : optional
        The run's ``[time]`` model (:class:`gossip.network.sim_time.TimeModel`), or None without one
        (``async_sgd`` draws its events from it).
    """

    comm: Communicator
    problem: Problem
    schedule: Any
    graph: nx.Graph
    lr: Callable[[int], float]
    seed: int = 0
    compressor: Any = None
    time: Any = None


class Algorithm(ABC):
    """One decentralized or centralized training algorithm.

    Subclasses set ``name`` and ``Config``, a frozen dataclass whose fields
    (:func:`gossip.registry.option`) are the keys of the ``[algorithm]`` section besides
    ``name`` and ``lr``; the checked values arrive as ``self.cfg`` (``self.cfg.gamma``).
    """

    name: ClassVar[str]
    Config: ClassVar[type] = NoOptions
    #: Encoded rows one message carries (BEER sends copies of X and of V together): the dense
    #: bytes a compressed run is compared with in ``summary.json``.
    ROWS_PER_MESSAGE: ClassVar[int] = 1
    #: Whether the algorithm applies the run's ``[compression]`` operator (a config that names
    #: a compressor for one that does not is rejected, not silently run uncompressed).
    USES_COMPRESSION: ClassVar[bool] = False
    #: Whether the algorithm mixes with ``W(t)`` of a time-varying schedule (RelaySum relays
    #: over a fixed spanning tree, all-reduce and FedAvg average exactly), so that a schedule
    #: other than ``static`` is rejected for one that does not.
    FOLLOWS_SCHEDULE: ClassVar[bool] = True
    #: Whether the algorithm runs on a channel that loses messages (``[faults]`` drop and
    #: crash, :mod:`gossip.network.faults`): it follows the channel's rule for a lost message
    #: (:mod:`gossip.comm.channel`). CHOCO and BEER cannot: every holder of a public copy must
    #: update it alike, so a config that loses messages is refused for them.
    SURVIVES_LOSS: ClassVar[bool] = True
    #: The state fields with one row per hosted node, which a crashed node keeps frozen
    #: (``[faults] crash``); empty: the algorithm does not support crashes (refused).
    NODE_STATE: ClassVar[tuple[str, ...]] = ()

    @classmethod
    def check_network(cls, schedule: Any, graph: Any) -> None:
        """ConfigError when the algorithm is not defined for this schedule ``W(t)`` and graph
        (D^2's condition on the eigenvalues of ``W``). Called once per run before anything
        else is built, and by ``gossip sweep`` for every point before the first run; the
        default accepts every network."""
        return None

    def __init__(self, cfg: Any = None) -> None:
        self.cfg = self.Config() if cfg is None else cfg

    @abstractmethod
    def init(self, ctx: Context) -> NamedTuple:
        """The state before round 0 (``X_0 = problem.init_params``, trackers, buffers)."""

    @abstractmethod
    def round(self, state: NamedTuple, t: int, ctx: Context) -> tuple[NamedTuple, torch.Tensor]:
        """Round ``t``: returns the new state and the hosted nodes' training losses ``(b,)``
        (mean over the round's local steps, measured at the points where gradients were taken)."""

    def params(self, state: NamedTuple) -> torch.Tensor:
        """The hosted nodes' current models ``(b, dim)`` (``state.X`` unless overridden)."""
        return state.X

    def metrics(self, state: NamedTuple) -> dict:
        """Values of the algorithm for every metrics record (the same on every process; e.g.
        the aborted secure-aggregation rounds); none by default."""
        return {}

    def describe(self, ctx: Context) -> dict:
        """What goes into ``summary.json`` (e.g. the spanning tree RelaySum used)."""
        return {"name": self.name, **asdict(self.cfg)}


def register_algorithm(cls: type[Algorithm]) -> type[Algorithm]:
    """Class decorator: ``cls`` joins :data:`ALGORITHMS` under ``cls.name`` with ``cls.Config``."""
    return ALGORITHMS.register(cls.name, cls.Config)(cls)
