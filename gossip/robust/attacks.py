"""Byzantine attacks: the ``[attack]`` section, the channel that carries them, label flipping.

An attack picks its Byzantine nodes (``nodes``: a count, chosen by the run's seed, or a list
of ids) and makes every message they send say something else (a
:class:`~gossip.comm.channel.ReplaceChannel`: the uploads of ``allreduce`` / ``fedavg``, the
gossip rows of the decentralized algorithms), except ``label_flip``, which corrupts their
training labels and lets them follow the protocol. The Byzantine node's own state keeps
following the protocol; it is excluded from the metrics (``problem.honest``) and listed in
``summary.json`` (``attack.byzantine``).

What a Byzantine message carries (row ``r`` as the protocol would send it; ``mu``, ``sigma``
the coordinate-wise mean and standard deviation of the honest senders' rows of that round):

``sign_flip``  ``-scale * r``
``gaussian``   ``std * xi``, ``xi ~ N(0, I)`` drawn from ``(seed, src, dst, t)`` (so every
               receiver of a gossip row gets its own draw)
``ipm``        ``-epsilon * mu`` (inner-product manipulation, Xie, Koyejo, Gupta 2019, "Fall
               of Empires: Breaking Byzantine-tolerant SGD by Inner Product Manipulation")
``alie``       ``mu - z sigma`` ("A Little Is Enough", Baruch, Baruch, Goldberg 2019), by
               default ``z = Phi^{-1}((k - s) / k)``, ``s = floor(k / 2 + 1) - f``, for ``k``
               senders of which ``f`` are Byzantine (their ``z_max``)

The omniscient adversary of ALIE and IPM knows every honest row of the round: an algorithm
that supports them calls :func:`inform_adversary` with the rows it is about to send; the
statistics are computed with the communicator's uncounted ``sum_rows`` (the adversary's
knowledge, not protocol traffic), identical on every process, so in-process and MPI runs
agree. Only integer-free float payloads are replaced (integer tensors of a compressed
payload, e.g. top-k indices, pass unchanged); ALIE/IPM need uncompressed rows.

The channel is built by :func:`build_attack` (one function, so a run that also has a fault
channel can compose both in one place).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch

from gossip.comm.channel import ReplaceChannel
from gossip.errors import ConfigError
from gossip.registry import NoOptions, Registry, option

__all__ = ["ATTACKS", "Attack", "AttackChannel", "adversary", "alie_z", "build_attack",
           "inform_adversary", "pick_byzantine"]

#: Every attack by its ``[attack] name``.
ATTACKS: Registry[str] = Registry("attack", "attack")


@dataclass(frozen=True)
class _Nodes:
    nodes: int | list[int] = option(1, "Byzantine nodes: how many (chosen by seed) or a list "
                                    "of node ids")


@dataclass(frozen=True)
class SignFlipOptions(_Nodes):
    scale: float = option(1.0, "sign_flip: sends -scale * row")


@dataclass(frozen=True)
class GaussianOptions(_Nodes):
    std: float = option(100.0, "gaussian: sends std * N(0, I)")


@dataclass(frozen=True)
class IpmOptions(_Nodes):
    epsilon: float = option(0.1, "ipm: sends -epsilon * (mean of the honest rows)")


@dataclass(frozen=True)
class AlieOptions(_Nodes):
    z: float | None = option(None, "alie: sends mean - z std of the honest rows "
                             "(default: Baruch et al.'s z_max)")


@dataclass(frozen=True)
class LabelFlipOptions(_Nodes):
    """label_flip: its nodes train on labels ``C - 1 - y``."""


for _name, _opts in (("none", NoOptions), ("sign_flip", SignFlipOptions),
                     ("gaussian", GaussianOptions), ("ipm", IpmOptions),
                     ("alie", AlieOptions), ("label_flip", LabelFlipOptions)):
    ATTACKS.register(_name, _opts)(_name)

#: Attacks that need the honest rows' statistics (:func:`inform_adversary`).
OMNISCIENT = ("ipm", "alie")
#: Algorithms whose public copies a replaced message would desynchronise.
KEEPS_PUBLIC_COPIES = ("choco", "beer")


def alie_z(k: int, f: int) -> float:
    """Baruch et al.'s ``z_max = Phi^{-1}((k - s) / k)``, ``s = floor(k / 2 + 1) - f``.

    >>> round(alie_z(16, 3), 4)
    0.3186
    """
    from scipy.stats import norm

    s = math.floor(k / 2 + 1) - f
    return float(norm.ppf((k - s) / k))


def pick_byzantine(nodes: int | list[int], n: int, seed: int) -> np.ndarray:
    """Sorted Byzantine ids: ``nodes`` itself when a list, else that many drawn by ``seed``."""
    if isinstance(nodes, list):
        ids = np.unique(np.asarray(nodes, dtype=np.int64))
        if len(ids) != len(nodes) or (len(ids) and (ids.min() < 0 or ids.max() >= n)):
            raise ConfigError(f"attack.nodes={nodes!r} must be distinct node ids in "
                              f"[0, {n - 1}]")
    else:
        if not 0 <= nodes < n:
            raise ConfigError(f"attack.nodes={nodes} must be in [0, {n - 1}] (nodes={n})")
        rng = np.random.default_rng([seed, 0xB12A])
        ids = np.sort(rng.choice(n, size=nodes, replace=False)).astype(np.int64)
    if len(ids) >= n:
        raise ConfigError(f"attack.nodes={nodes!r} leaves no honest node of {n}")
    return ids


class AttackChannel(ReplaceChannel):
    """The Byzantine nodes' messages replaced by the attack ``name`` (module docstring).

    ``knowledge`` holds ``(mu, sigma, k, f)`` of the round ``t`` it was set for
    (:meth:`observe`); ALIE and IPM refuse a round they were not told about.
    """

    is_byzantine = True

    def __init__(self, name: str, senders: np.ndarray, options: Any, seed: int) -> None:
        super().__init__(senders, self._replace)
        self.name, self.options, self.seed = name, options, int(seed)
        self.knowledge: tuple | None = None

    def observe(self, t: int, mu: torch.Tensor, sigma: torch.Tensor, k: int, f: int) -> None:
        """The honest rows' mean ``mu`` and std ``sigma`` of round ``t``; ``k`` senders,
        ``f`` of them Byzantine."""
        self.knowledge = (int(t), mu, sigma, int(k), int(f))

    def _replace(self, src, dst, t, rows):
        return tuple(self._one(src, dst, t, r) if r.is_floating_point() else r for r in rows)

    def _one(self, src: np.ndarray, dst: np.ndarray, t: int, r: torch.Tensor) -> torch.Tensor:
        o = self.options
        if self.name == "sign_flip":
            return -o.scale * r
        if self.name == "gaussian":
            shape = r.shape[1:]
            xi = np.stack([
                np.random.default_rng([self.seed, int(s), int(d) + 1, int(t), 0x6A55])
                .standard_normal(shape) for s, d in zip(src, dst)
            ]) if len(src) else np.zeros((0, *shape))
            return (o.std * torch.as_tensor(xi, device=r.device)).to(r.dtype)
        if self.knowledge is None or self.knowledge[0] != int(t):
            raise ValueError(f"attack {self.name} in round {t}: the algorithm did not inform "
                             "the adversary (inform_adversary) of this round's honest rows")
        _, mu, sigma, k, f = self.knowledge
        if self.name == "ipm":
            out = -o.epsilon * mu
        else:
            z = alie_z(k, f) if o.z is None else o.z
            out = mu - z * sigma
        return out.to(device=r.device, dtype=r.dtype).expand_as(r).clone()


def adversary(channel) -> AttackChannel | None:
    """The :class:`AttackChannel` a communicator's ``channel`` carries: the channel itself, or
    the one inside a chain of channels (an attack and a run's ``[faults]``,
    :class:`~gossip.comm.channel.Compose`); ``None`` when there is none."""
    if isinstance(channel, AttackChannel):
        return channel
    for part in getattr(channel, "channels", ()):
        found = adversary(part)
        if found is not None:
            return found
    return None


def inform_adversary(comm, X: torch.Tensor, t: int, senders: np.ndarray | None = None) -> None:
    """Tell an omniscient attack (ALIE, IPM) the honest rows ``X`` (hosted block) of the
    senders of round ``t`` (``None``: every node): their mean and coordinate-wise std
    (population form), computed with ``comm.sum_rows`` (uncounted, the same on every
    process). Does nothing for any other channel."""
    channel = adversary(comm.channel)
    if channel is None or channel.name not in OMNISCIENT:
        return
    n, nodes = comm.n, comm.nodes
    everyone = np.arange(n) if senders is None else np.asarray(senders, dtype=np.int64)
    honest = np.setdiff1d(everyone, channel.senders)
    mask = torch.zeros(len(nodes), dtype=torch.bool, device=X.device)
    here = honest[(honest >= nodes.start) & (honest < nodes.stop)] - nodes.start
    mask[torch.as_tensor(here, dtype=torch.long, device=X.device)] = True
    rows = X.reshape(X.shape[0], -1).to(torch.float64)
    h = max(len(honest), 1)
    mu = comm.sum_rows(rows, mask) / h
    var = comm.sum_rows((rows - mu) ** 2, mask) / h
    channel.observe(t, mu.reshape(X.shape[1:]), var.sqrt().reshape(X.shape[1:]),
                    len(everyone), len(everyone) - len(honest))


@dataclass
class Attack:
    """A run's attack: ``name``, the ``byzantine`` and ``honest`` ids, the ``channel`` that
    replaces the Byzantine messages (``None`` for ``label_flip``), the options."""

    name: str
    byzantine: np.ndarray
    honest: np.ndarray
    channel: AttackChannel | None
    options: Any

    def describe(self) -> dict:
        """The ``attack`` entry of ``summary.json``."""
        return {"name": self.name, **asdict(self.options),
                "byzantine": [int(i) for i in self.byzantine]}


def build_attack(section: dict, n: int, seed: int, problem, algorithm, compressed: bool
                 ) -> Attack | None:
    """The attack of the resolved ``[attack]`` section (``None`` for ``name = "none"``);
    flips the labels for ``label_flip`` and sets ``problem.honest``. ConfigError when the
    attack cannot run with this problem, algorithm or compression."""
    name = section["name"]
    if name == "none":
        return None
    opts = ATTACKS.config(name, {k: v for k, v in section.items() if k != "name"})
    byz = pick_byzantine(opts.nodes, n, seed)
    honest = np.setdiff1d(np.arange(n), byz)
    alg = type(algorithm).__name__
    if getattr(algorithm, "name", None) in KEEPS_PUBLIC_COPIES and name != "label_flip":
        raise ConfigError(f"attack.name={name!r} cannot run with algorithm.name="
                          f"{algorithm.name!r}: every holder of a public copy must update it "
                          "alike, so a replaced message stops the run (gossip.algorithms."
                          "public_copies); use label_flip or another algorithm")
    if name in OMNISCIENT:
        if not getattr(algorithm, "INFORMS_ADVERSARY", False):
            raise ConfigError(f"attack.name={name!r} needs an algorithm that informs the "
                              f"adversary of the honest rows (allreduce, fedavg, "
                              f"clipped_gossip, robust_dsgd), not {alg}")
        if compressed:
            raise ConfigError(f"attack.name={name!r} replaces uncompressed rows; use "
                              "compression.name='none'")
    channel = None
    if name == "label_flip":
        _flip_labels(problem, byz)
    else:
        channel = AttackChannel(name, byz, opts, seed)
    problem.honest = honest
    return Attack(name, byz, honest, channel, opts)


def _flip_labels(problem, byz: np.ndarray) -> None:
    """``y <- C - 1 - y`` on the Byzantine nodes' training samples (disjoint from every
    honest node's, checked)."""
    parts = getattr(problem, "parts", None)
    if parts is None or not hasattr(problem, "train_y"):
        raise ConfigError("attack.name='label_flip' needs a classification problem "
                          "(problem.name='classification')")
    bad = np.unique(np.concatenate([parts[i] for i in byz])) if len(byz) else np.zeros(0, int)
    good = np.concatenate([p for i, p in enumerate(parts) if i not in set(byz.tolist())])
    if np.intersect1d(bad, good).size:
        raise ConfigError("attack.name='label_flip' needs disjoint node data; this partition "
                          "shares samples between Byzantine and honest nodes")
    at = torch.as_tensor(bad, dtype=torch.long, device=problem.train_y.device)
    problem.train_y = problem.train_y.clone()
    problem.train_y[at] = problem.classes - 1 - problem.train_y[at]
