"""Simulated time (``[time]``): what each round would take on a network of given speed.

The model of a synchronous round ``t`` (every algorithm of the registry is synchronous: a
round ends when its slowest node is done)::

    T(t) = max_i [ H c_i(t) + k_i(t) L + 8 max(s_i(t), r_i(t)) / B ]

- ``H``: the algorithm's local steps per round (``local_steps``, else 1);
- ``c_i(t)``: node ``i``'s seconds per local step: ``compute``, times ``slowdown`` when ``i``
  is a straggler in round ``t``. ``stragglers = "per_round"``: each node is one with
  probability ``straggler_fraction``, drawn afresh every round; ``"fixed"``: the nodes drawn
  at round 0 stay stragglers for the whole run. Draws are ``uniform(seed, i, i, t, salt)``
  (:func:`gossip.comm.channel.uniform`), the same on every process;
- ``k_i(t)``: the communication phases node ``i`` takes part in (one per ``share`` / ``mix`` /
  ``exchange`` / upload / download it sends or receives in; ``2 (n - 1)`` for the ring
  all-reduce, whose steps are sequential), each paying the link ``latency`` ``L`` once;
- ``s_i(t)``, ``r_i(t)``: the bytes node ``i`` sends and receives in round ``t``, the real
  (compressed) sizes the communicator counts; a link carries both directions at once
  (full duplex) at ``bandwidth`` ``B`` bit/s (0: infinite). A node's messages share its link,
  so they take their summed size.

``sim_time`` (seconds, summed over rounds) is in every metrics record of a run with a
``[time]`` section (any key given; the others take the defaults below). Without one the
records have no ``sim_time`` and are byte for byte what they were. Simulated time depends on
the seed and the config only, so it is the same in process and under ``mpiexec``.

Where we depart from a real network: no congestion beyond a node's own link, no overlap of
computation and communication, downloads from the server are not limited by the server's
link, and messages lost by ``[faults]`` still take their time (they were sent).

Examples
--------
>>> import numpy as np
>>> model = TimeModel(compute=0.5, latency=0.01, bandwidth=8e6)
>>> float(model.round_time(0, np.array([1, 1]), np.array([1000, 3000]), np.array([2000, 0])))
0.513
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, NamedTuple

import numpy as np
import scipy.sparse as sp
import torch

from gossip.comm.base import payload_row_bytes
from gossip.comm.channel import uniform
from gossip.comm.timed import TimedComm
from gossip.options import Option, non_negative

__all__ = ["TIME_OPTIONS", "ClockComm", "SimClock", "TimeModel", "make_clock"]


def _at_least_one(v) -> str | None:
    return None if v >= 1 else "must be >= 1"


def _fraction(v) -> str | None:
    return None if 0 <= v <= 1 else "must be in [0, 1]"


#: The keys of ``[time]``; all unset: no time model (no ``sim_time`` in the records).
TIME_OPTIONS: list[Option] = [
    Option("compute", float, None, "seconds of one local step on a normal node (default 1)",
           check=non_negative),
    Option("straggler_fraction", float, None, "probability that a node is a straggler "
           "(default 0)", check=_fraction),
    Option("slowdown", float, None, "a straggler's compute time factor (default 1)",
           check=_at_least_one),
    Option("stragglers", str, None, "stragglers drawn every round or once for the run "
           "(default per_round)", choices=("per_round", "fixed")),
    Option("latency", float, None, "seconds per communication phase of a node (default 0)",
           check=non_negative),
    Option("bandwidth", float, None, "link bandwidth in bit/s (default 0: infinite)",
           check=non_negative),
]
_DEFAULTS = {"compute": 1.0, "straggler_fraction": 0.0, "slowdown": 1.0,
             "stragglers": "per_round", "latency": 0.0, "bandwidth": 0.0}
_STRAGGLER_SALT = 0x57A6


class TimeModel:
    """The constants of the model (module docstring) and the straggler draws.

    Parameters
    ----------
    compute, straggler_fraction, slowdown, stragglers, latency, bandwidth
        As the ``[time]`` keys.
    seed : int
        Seed of the straggler draws.
    """

    def __init__(self, compute: float = 1.0, straggler_fraction: float = 0.0,
                 slowdown: float = 1.0, stragglers: str = "per_round", latency: float = 0.0,
                 bandwidth: float = 0.0, seed: int = 0) -> None:
        self.compute, self.fraction, self.slowdown = float(compute), float(straggler_fraction), \
            float(slowdown)
        self.stragglers, self.latency, self.bandwidth = stragglers, float(latency), \
            float(bandwidth)
        self.seed = int(seed)

    def straggling(self, t: int, n: int) -> np.ndarray:
        """Boolean ``(n,)``: the stragglers of round ``t``."""
        ids = np.arange(n, dtype=np.int64)
        when = t if self.stragglers == "per_round" else 0
        return uniform(self.seed, ids, ids, when, _STRAGGLER_SALT) < self.fraction

    def round_time(self, t: int, steps: np.ndarray, sent: np.ndarray, received: np.ndarray,
                   phases: np.ndarray | None = None) -> float:
        """``T(t)`` for ``steps[i]`` local steps, ``sent[i]`` / ``received[i]`` bytes and
        ``phases[i]`` communication phases of node ``i`` (default: 1 where it sends or
        receives anything)."""
        n = len(sent)
        if phases is None:
            phases = ((sent > 0) | (received > 0)).astype(np.float64)
        c = np.where(self.straggling(t, n), self.compute * self.slowdown, self.compute)
        link = 8.0 * np.maximum(sent, received) / self.bandwidth if self.bandwidth > 0 else 0.0
        return float(np.max(steps * c + phases * self.latency + link))


class ClockComm(TimedComm):
    """The communicator the algorithm talks to when the run has a time model: it delegates
    every call (to the run's :class:`~gossip.comm.timed.TimedComm`) and notes, per node, the
    bytes sent and received and the phases of the current round, for all ``n`` nodes on every
    process (from ``W``'s pattern and the senders, which every process knows; ``exchange``
    sums the notes of the senders' processes).
    """

    def __init__(self, inner, n: int) -> None:
        super().__init__(inner)
        self.paused = True  # the inner TimedComm keeps the comm_time clock
        self._n = n
        self._last = None  # (W, messages out of, into each node) of the last pattern
        self.reset()

    def reset(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The notes of the round so far, ``(sent, received, phases)``; starts a new round."""
        notes = getattr(self, "_notes", None)
        self._notes = tuple(np.zeros(self._n) for _ in range(3))
        return notes

    def _note(self, sent=None, received=None, phases=None) -> None:
        s, r, k = self._notes
        for acc, add in ((s, sent), (r, received)):
            if add is not None:
                acc += add
        if phases is None:
            phases = ((np.asarray(sent if sent is not None else 0) > 0)
                      | (np.asarray(received if received is not None else 0) > 0))
        k += phases

    def _pattern(self, W, row_bytes: int) -> None:
        """One message of ``row_bytes`` along every off-diagonal nonzero ``W[i, j]``."""
        if self._last is None or self._last[0] is not W:
            coo = sp.coo_array(W)
            off = (coo.row != coo.col) & (coo.data != 0)
            self._last = (W, np.bincount(coo.col[off], minlength=self._n).astype(np.float64),
                          np.bincount(coo.row[off], minlength=self._n).astype(np.float64))
        _, out, into = self._last
        self._note(sent=out * row_bytes, received=into * row_bytes)

    def share(self, payload, W, t=None):
        self._pattern(W, payload_row_bytes(payload))
        return super().share(payload, W, t)

    def mix(self, X, W, t=None):
        self._pattern(W, payload_row_bytes((X,)))
        return super().mix(X, W, t)

    def exchange(self, messages, t=None):
        notes = torch.zeros(2, self._n, dtype=torch.float64)
        for (src, dst), payload in messages.items():
            if src != dst:
                size = sum(x.numel() * x.element_size() for x in payload)
                notes[0, src] += size
                notes[1, dst] += size
        total = self.inner.allreduce_sum(notes).numpy()
        self._note(sent=total[0], received=total[1])
        return super().exchange(messages, t)

    def _senders(self, senders, row_bytes: int, received: bool = False) -> None:
        v = np.zeros(self._n)
        v[np.arange(self._n) if senders is None else np.asarray(senders, dtype=np.int64)] = \
            row_bytes
        self._note(received=v) if received else self._note(sent=v)

    def upload_mean(self, X, row_bytes, senders=None, t=None):
        self._senders(senders, row_bytes)
        return super().upload_mean(X, row_bytes, senders, t)

    def upload_sum(self, X, row_bytes, senders, t=None):
        self._senders(senders, row_bytes)
        return super().upload_sum(X, row_bytes, senders, t)

    def count_messages(self, senders, row_bytes, down=False):
        self._senders(senders, row_bytes, received=down)
        return super().count_messages(senders, row_bytes, down)

    def gather_rows(self, X, row_bytes, senders, t=None):
        self._senders(senders, row_bytes)
        return super().gather_rows(X, row_bytes, senders, t)

    def broadcast(self, x, receivers=None):
        self._senders(receivers, x.numel() * x.element_size(), received=True)
        return super().broadcast(x, receivers)

    def allreduce_mean(self, X):
        n = self._n
        dim = X.reshape(X.shape[0], -1).shape[1]
        chunk = np.array([len(c) for c in np.array_split(np.arange(dim), n)], dtype=np.float64)
        size = 2.0 * (dim - chunk) * X.element_size()
        self._note(sent=size, received=size, phases=np.full(n, 2.0 * (n - 1)))
        return super().allreduce_mean(X)


class SimClock(NamedTuple):
    """A run's time model, the communicator that notes its rounds and the local steps ``H``."""

    model: TimeModel
    comm: ClockComm
    local_steps: int

    def round(self, t: int) -> float:
        """``T(t)`` of the round just done (and a fresh note for the next one)."""
        sent, received, phases = self.comm.reset()
        steps = np.full(len(sent), float(self.local_steps))
        return self.model.round_time(t, steps, sent, received, phases)


def time_model(config: Mapping[str, Any]) -> TimeModel | None:
    """The :class:`TimeModel` of ``config["time"]``, or None when no key of it is set."""
    given = {k: v for k, v in config["time"].items() if v is not None}
    if not given:
        return None
    return TimeModel(**{**_DEFAULTS, **given}, seed=config["seed"])


def make_clock(config: Mapping[str, Any], timed: TimedComm, algorithm
               ) -> tuple[TimedComm, SimClock | None]:
    """``(comm, clock)``: the communicator the algorithm gets and the run's clock; ``(timed,
    None)`` without a time model."""
    model = time_model(config)
    if model is None:
        return timed, None
    comm = ClockComm(timed, config["nodes"])
    return comm, SimClock(model, comm, int(getattr(algorithm.cfg, "local_steps", 1)))
