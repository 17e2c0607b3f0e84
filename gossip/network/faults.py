"""Fault models of a run (``[faults]``): lost messages and crashed nodes.

Two faults, both seeded by the run's ``seed`` and decided per ``(node or message, round)``
only (:func:`gossip.comm.channel.uniform`), so a run gives the same numbers in process and
under ``mpiexec``:

``drop``, ``symmetric``
    Every node-to-node (and node-to-server) message of round ``t`` is lost independently with
    probability ``drop``: per undirected link (``symmetric = true``: ``j -> i`` is lost exactly
    when ``i -> j`` is) or per direction. :class:`~gossip.comm.channel.DropChannel`.
``crash``, ``crash_rate``, ``recover_rate``
    A crashed node neither computes nor sends nor receives: every message from or to it is
    lost, and its state rows (the algorithm's ``NODE_STATE``) stay as they were before the
    round; a node that recovers resumes from that frozen state. Crashes come from an explicit
    schedule ``crash = [[node, from_round, to_round], ...]`` (down for
    ``from_round <= t < to_round``; ``[node, from_round]`` never recovers) and/or from a
    two-state Markov chain per node: a node up in round ``t - 1`` is down in round ``t`` with
    probability ``crash_rate``, a node down in round ``t - 1`` is up again with probability
    ``recover_rate`` (0: crash-stop); every node is up before round 0. A node is down when
    either says so. The training loss of a crashed node is its loss at the frozen model.

What the algorithms do with a lost message (the rule of :mod:`gossip.comm.channel`), and what
is lost with it:

- D-SGD, D^2, naive compressed D-SGD (``mix``): a lost ``j -> i`` gives ``W_ij`` to the
  diagonal. Symmetric drops keep ``W(t)`` doubly stochastic, so the node average moves only by
  the gradients, ``x_bar <- x_bar - eta/n sum_{i up} g_i`` (tested); per-direction drops make
  ``W(t)`` only row stochastic and the average drifts. D^2's exactness needs the same ``W``
  every round and is lost under any drop.
- Gradient tracking: ``sum_i y_i = sum_i g_i`` (the tracking invariant) holds under symmetric
  drops and crashes (a crashed node's row of ``W`` is the identity, its ``y_i`` and ``g_i``
  frozen; tested) and is lost under per-direction drops: the tracker then follows a biased
  average and the fixed point is no longer the optimum.
- RelaySum: a lost relay counts as ``m = 0, c = 0`` (the receiver heard nothing); crashes
  are not supported (its relay buffers are per edge).
- FedAvg and the compressed all-reduce average the uploads that arrived; crashes are not
  supported (refused). The exact all-reduce (no compression) is a collective that does not
  pass the channel, so faults are refused for it rather than silently ignored; with
  ``algorithm.secure_aggregation`` its masked uploads pass the channel, and the lost ones are
  the protocol's dropouts (:mod:`gossip.privacy.secure_aggregation`).
- CHOCO and BEER keep public copies that every holder must update alike; they refuse any
  fault (``SURVIVES_LOSS = False``).

Examples
--------
>>> crashes = Crashes(4, seed=0, schedule=[[1, 2, 4], [3, 1]])
>>> [crashes.down(t).nonzero()[0].tolist() for t in range(5)]
[[], [3], [1, 3], [1, 3], [3]]
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, NamedTuple

import numpy as np
import torch

from gossip.comm.channel import IDENTITY, SERVER, Channel, Compose, DropChannel, uniform
from gossip.errors import ConfigError
from gossip.options import Option

__all__ = ["FAULT_OPTIONS", "CrashChannel", "Crashes", "Crashing", "FaultChannel",
           "check_faults", "fault_channel", "with_crashes", "with_faults", "without_faults"]


def _probability(v) -> str | None:
    return None if 0 <= v <= 1 else "must be in [0, 1]"


def _below_one(v) -> str | None:
    return None if 0 <= v < 1 else "must be in [0, 1)"


def _schedule(v) -> str | None:
    for entry in v:
        if not (isinstance(entry, list) and len(entry) in (2, 3)
                and all(isinstance(x, int) and not isinstance(x, bool) for x in entry)):
            return "must be a list of [node, from_round, to_round] or [node, from_round] lists"
        if entry[1] < 0 or (len(entry) == 3 and entry[2] <= entry[1]):
            return f"needs 0 <= from_round < to_round in every entry ({entry!r} is not)"
    return None


#: The keys of ``[faults]``; every default leaves the run as without faults, bit for bit.
FAULT_OPTIONS: list[Option] = [
    Option("drop", float, 0.0, "probability that a message is lost, in [0, 1]",
           check=_probability),
    Option("symmetric", bool, True, "drop per undirected link (true) or per direction"),
    Option("crash", list, None, "crash schedule [[node, from_round, to_round], ...] "
           "(down for from_round <= t < to_round; [node, from_round]: never recovers)",
           check=_schedule),
    Option("crash_rate", float, 0.0, "per round: probability that an up node crashes",
           check=_below_one),
    Option("recover_rate", float, 0.0, "per round: probability that a crashed node recovers "
           "(0: crash-stop)", check=_probability),
]

_CRASH_SALT = 0xC7A5


class Crashes:
    """Which nodes are down in round ``t`` (see the module docstring), the same on every
    process: ``down(t)`` is a boolean array ``(n,)``.

    Parameters
    ----------
    n : int
        Number of nodes.
    seed : int
        Seed of the Markov chain's draws ``uniform(seed, i, i, t, salt)``.
    schedule : list of [node, from_round, to_round] or [node, from_round]
        Explicit down intervals.
    crash_rate, recover_rate : float
        The chain's transition probabilities up -> down and down -> up per round.
    """

    def __init__(self, n: int, seed: int = 0, schedule=(), crash_rate: float = 0.0,
                 recover_rate: float = 0.0) -> None:
        self.n, self.seed = int(n), int(seed)
        self.schedule = [tuple(int(x) for x in e) for e in (schedule or ())]
        self.crash_rate, self.recover_rate = float(crash_rate), float(recover_rate)
        self._chain = [np.zeros(self.n, dtype=bool)]  # _chain[t + 1]: the chain in round t

    @property
    def empty(self) -> bool:
        """No node is ever down."""
        return not self.schedule and self.crash_rate == 0

    def _markov(self, t: int) -> np.ndarray:
        ids = np.arange(self.n, dtype=np.int64)
        while len(self._chain) <= t + 1:
            s = len(self._chain) - 1
            u = uniform(self.seed, ids, ids, s, _CRASH_SALT)
            prev = self._chain[-1]
            self._chain.append(np.where(prev, u >= self.recover_rate, u < self.crash_rate))
        return self._chain[t + 1]

    def down(self, t: int) -> np.ndarray:
        """Boolean ``(n,)``: the nodes down in round ``t``."""
        out = self._markov(t).copy() if self.crash_rate > 0 else np.zeros(self.n, dtype=bool)
        for node, start, *stop in self.schedule:
            if start <= t and (not stop or t < stop[0]):
                out[node] = True
        return out


class CrashChannel(Channel):
    """Every message from or to a node that is down in its round is lost (the server, the
    destination :data:`~gossip.comm.channel.SERVER`, never crashes)."""

    def __init__(self, crashes: Crashes) -> None:
        self.crashes = crashes

    def arrives(self, src: np.ndarray, dst: np.ndarray, t: int) -> np.ndarray:
        down = self.crashes.down(t)
        src, dst = np.asarray(src, dtype=np.int64), np.asarray(dst, dtype=np.int64)
        dst_down = np.zeros(len(dst), dtype=bool)
        node = dst != SERVER
        dst_down[node] = down[dst[node]]
        return ~(down[src] | dst_down)


def _crashes(config: Mapping[str, Any]) -> Crashes:
    f = config["faults"]
    return Crashes(config["nodes"], config["seed"], f["crash"] or (), f["crash_rate"],
                   f["recover_rate"])


def _fault_parts(config: Mapping[str, Any]) -> list[Channel]:
    f = config["faults"]
    parts: list[Channel] = []
    if f["drop"] > 0:
        parts.append(DropChannel(f["drop"], seed=config["seed"], symmetric=f["symmetric"]))
    crashes = _crashes(config)
    if not crashes.empty:
        parts.append(CrashChannel(crashes))
    return parts


def fault_channel(config: Mapping[str, Any]) -> Channel:
    """The channel of ``config["faults"]``: the identity without faults (so a run is bit for
    bit the run without ``[faults]``), else the drops and the crashes composed."""
    parts = _fault_parts(config)
    if not parts:
        return IDENTITY
    return parts[0] if len(parts) == 1 else Compose(*parts)


class FaultChannel(Compose):
    """The channel a communicator had (``before``: set in code, e.g. an attack), then a
    run's faults."""

    def __init__(self, before: Channel, faults: list[Channel]) -> None:
        super().__init__(before, *faults)
        self.before = before


def without_faults(channel: Channel) -> Channel:
    """``channel`` without the faults :func:`with_faults` added to it."""
    return channel.before if isinstance(channel, FaultChannel) else channel


def with_faults(channel: Channel, config: Mapping[str, Any]) -> Channel:
    """The communicator's ``channel`` followed by the faults of ``config``; the faults of an
    earlier run on the same communicator are replaced, not stacked; ``channel`` itself (the
    identity by default) without faults."""
    before = without_faults(channel)
    parts = _fault_parts(config)
    return FaultChannel(before, parts) if parts else before


def check_faults(config: Mapping[str, Any]) -> None:
    """ConfigError (one line) when ``config["faults"]`` does not fit the run: a crashed node
    outside ``0 .. nodes-1``, or an algorithm that cannot lose messages or crash."""
    from gossip.algorithms import ALGORITHMS

    f, name = config["faults"], config["algorithm"]["name"]
    entry = ALGORITHMS[name]
    for node, *_ in f["crash"] or ():
        if not 0 <= node < config["nodes"]:
            raise ConfigError(f"faults.crash names node {node}; nodes are 0 .. "
                              f"{config['nodes'] - 1}")
    crash = bool(f["crash"]) or f["crash_rate"] > 0
    if not (f["drop"] > 0 or crash):
        return
    what = f"faults.drop={f['drop']!r}" if f["drop"] > 0 else "faults.crash"
    if not entry.SURVIVES_LOSS:
        ok = sorted(n for n in ALGORITHMS.names() if ALGORITHMS[n].SURVIVES_LOSS)
        why = getattr(entry, "LOSS_REASON", "keeps public copies that every holder must "
                      "update alike")
        raise ConfigError(f"{what}: algorithm.name={name!r} {why} and cannot lose messages; "
                          f"use drop = 0 "
                          f"and no crashes, or one of: {', '.join(ok)}")
    if (name == "allreduce" and config["compression"]["name"] == "none"
            and not config["algorithm"].get("secure_aggregation")):
        raise ConfigError(f"{what} has no effect with algorithm.name='allreduce' without "
                          "compression (an exact collective that does not pass the channel); "
                          "set a compression.name to average the uploads that arrive")
    if crash and not entry.NODE_STATE:
        ok = sorted(n for n in ALGORITHMS.names() if ALGORITHMS[n].NODE_STATE)
        raise ConfigError(f"faults.crash: algorithm.name={name!r} does not support crashed "
                          f"nodes; use one of: {', '.join(ok)}")


class Crashing:
    """An algorithm whose crashed nodes keep their state: round ``t`` runs the algorithm, then
    puts back, for every hosted node down in round ``t``, its rows of the ``NODE_STATE``
    fields as they were before the round. Everything else is the wrapped algorithm's."""

    def __init__(self, algorithm, crashes: Crashes) -> None:
        self.algorithm, self.crashes = algorithm, crashes

    def __getattr__(self, name: str):
        return getattr(self.algorithm, name)

    def round(self, state: NamedTuple, t: int, ctx) -> tuple[NamedTuple, torch.Tensor]:
        new, losses = self.algorithm.round(state, t, ctx)
        nodes = ctx.comm.nodes
        down = self.crashes.down(t)[nodes.start : nodes.stop]
        if not down.any():
            return new, losses
        keep = {}
        for field in self.algorithm.NODE_STATE:
            if field in new._fields:
                old, cur = getattr(state, field), getattr(new, field)
                mask = torch.as_tensor(down, device=cur.device).reshape(-1, *[1] * (cur.dim() - 1))
                keep[field] = torch.where(mask, old, cur)
        return new._replace(**keep), losses


def with_crashes(algorithm, config: Mapping[str, Any]):
    """``algorithm`` itself without crashes in ``config``, else :class:`Crashing` around it."""
    crashes = _crashes(config)
    return algorithm if crashes.empty else Crashing(algorithm, crashes)
