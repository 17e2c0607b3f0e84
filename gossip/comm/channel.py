"""The message channel: one place decides what arrives.

Every node-to-node message of a round ``t`` -- a row of :meth:`Communicator.share` (and so of
``mix``), a point-to-point message of ``exchange``, a row uploaded to the server by
``upload_mean`` / ``gather_rows`` -- passes through the communicator's ``channel``, which
decides for the message ``(src, dst, t)``:

- whether it **arrives** (:meth:`Channel.arrives`; a fault model drops messages), and
- whether its payload is **replaced** (:meth:`Channel.replaces`, :meth:`Channel.replace`; a
  Byzantine sender sends something else than the protocol asks).

Messages are not delayed: a message arrives in its own round or not at all.

Seeding: a decision depends on ``(seed, src, dst, t)`` only (:func:`uniform`), never on which
process hosts which node, so a run gives the same numbers in process and under ``mpiexec``.
The receiving side applies the channel (the sender's row is at hand there), and a replacement
is a function of ``(src, dst, t)`` and the row as sent, so every process computes the same one.
The server of the centralized modes is destination :data:`SERVER`.

Byte accounting counts what the senders sent: a dropped message was still sent (it is lost on
the way), so it counts in ``stats.bytes_sent``; a replacing channel keeps each tensor's dtype and
shape (checked), so a replaced message costs what the original would.

The algorithm receives what arrived and which messages failed (Flower's "failures as data"):
:class:`Delivery` for ``share``; ``exchange`` leaves lost messages out of its result; the
centralized collectives return the failed senders. The rule of ``mix`` for a lost message
``j -> i`` is that its weight goes to the diagonal, ``x_i <- sum_{j arrived} W_ij x_j +
(W_ii + sum_{j lost} W_ij) x_i``: rows stay stochastic, and with symmetric losses (``j -> i``
lost exactly when ``i -> j`` is, :class:`DropChannel` with ``symmetric=True``) a symmetric
``W`` stays doubly stochastic, so the node average is preserved.

What the algorithms do with failures: D-SGD, D^2, gradient tracking (``mix``) and naive
compressed D-SGD follow the diagonal rule; RelaySum counts a lost relay as ``m = 0, c = 0``;
FedAvg and compressed all-reduce average the uploads that arrived; CHOCO and BEER keep one
public copy of a node per process, which every holder must update alike, so they raise a
ValueError when a message of theirs is lost or replaced. Not through the channel: the server's
downloads (``broadcast``) and the exact ring all-reduce (``allreduce_mean``).

A run's channel comes from its ``[faults]`` section (:func:`gossip.network.faults.fault_channel`);
:class:`Compose` chains channels (faults and an attack together).

By default a communicator has the :data:`IDENTITY` channel: every message arrives as sent and
the communicator skips the channel altogether (one attribute check per call).

Examples
--------
>>> import numpy as np
>>> ch = DropChannel(0.5, seed=0, symmetric=True)
>>> ch.arrives(np.array([0, 1, 2]), np.array([1, 2, 0]), t=3).tolist()
[False, True, True]
>>> ch.arrives(np.array([1, 2, 0]), np.array([0, 1, 2]), t=3).tolist()  # the same links back
[False, True, True]
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import numpy as np
import scipy.sparse as sp
import torch

__all__ = [
    "IDENTITY",
    "NO_EDGES",
    "SERVER",
    "Channel",
    "Compose",
    "Delivery",
    "DropChannel",
    "Identity",
    "ReplaceChannel",
    "check_replacement",
    "deliver",
    "deliver_messages",
    "repair_mix",
    "upload_rows",
    "uniform",
]

Payload = tuple[torch.Tensor, ...]

#: The destination id of a message to the server (``upload_mean``, ``gather_rows``).
SERVER = -1

#: No edges: an empty ``(0, 2)`` array of ``(dst, src)`` pairs.
NO_EDGES = np.zeros((0, 2), dtype=np.int64)
NO_EDGES.flags.writeable = False

_MASK64 = np.uint64(0xFFFFFFFFFFFFFFFF)


def _splitmix(z: np.ndarray) -> np.ndarray:
    """The splitmix64 finaliser (Steele et al. 2014), elementwise on uint64 (wrapping)."""
    z = z + np.uint64(0x9E3779B97F4A7C15)
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))


def uniform(seed: int, src: np.ndarray, dst: np.ndarray, t: int, salt: int = 0) -> np.ndarray:
    """Uniform numbers in ``[0, 1)``, one per message, from ``(seed, src, dst, t, salt)`` only.

    A splitmix64 hash chain over the five numbers (vectorised over the messages); the top 53
    bits make the float.
    """
    src = np.asarray(src, dtype=np.int64)
    dst = np.asarray(dst, dtype=np.int64)
    with np.errstate(over="ignore"):
        z = _splitmix(np.full(src.shape, np.uint64(int(seed) & int(_MASK64))))
        for word in (src.astype(np.uint64), dst.astype(np.uint64),
                     np.uint64(int(t) & int(_MASK64)), np.uint64(int(salt) & int(_MASK64))):
            z = _splitmix(z ^ word)
    return (z >> np.uint64(11)).astype(np.float64) * 2.0**-53


class Delivery(NamedTuple):
    """What one :meth:`~gossip.comm.base.Communicator.share` delivered to the hosted nodes.

    Attributes
    ----------
    ids : ndarray of int64
        Sorted ids of every node whose row the hosted nodes need (hosted nodes included).
    rows : Payload
        Those nodes' payload rows *as sent*, in the order of ``ids``.
    failed : ndarray ``(k, 2)`` of int64
        The messages that did not arrive, as ``(dst, src)`` pairs (``dst`` hosted here), sorted.
    replaced : ndarray ``(m, 2)`` of int64
        The messages that arrived with another payload, as ``(dst, src)`` pairs, sorted.
    replaced_rows : Payload
        The payload rows that arrived on those messages (``m`` rows each), in that order.
    """

    ids: np.ndarray
    rows: Payload
    failed: np.ndarray = NO_EDGES
    replaced: np.ndarray = NO_EDGES
    replaced_rows: Payload = ()

    @property
    def complete(self) -> bool:
        """Every message arrived as sent."""
        return not (len(self.failed) or len(self.replaced))


class Channel:
    """Decides, per message ``(src, dst, t)``, whether it arrives and what it carries.

    Subclasses override :meth:`arrives` (drops) and/or :meth:`replaces` and :meth:`replace`
    (Byzantine payloads); every method is a pure function of its arguments and the channel's
    own fixed parameters (see the module docstring for seeding). The base class delivers
    everything unchanged.
    """

    is_identity = False

    def arrives(self, src: np.ndarray, dst: np.ndarray, t: int) -> np.ndarray:
        """Boolean per message: does ``src[k] -> dst[k]`` in round ``t`` arrive?"""
        return np.ones(len(src), dtype=bool)

    def replaces(self, src: np.ndarray, dst: np.ndarray, t: int) -> np.ndarray:
        """Boolean per message: is the payload of ``src[k] -> dst[k]`` replaced?"""
        return np.zeros(len(src), dtype=bool)

    def replace(self, src: np.ndarray, dst: np.ndarray, t: int, rows: Payload) -> Payload:
        """The payload rows that arrive instead of ``rows`` (row ``k`` was sent on
        ``src[k] -> dst[k]``); same tensors, dtypes and shapes."""
        return rows


class Identity(Channel):
    """Every message arrives as sent (the default; communicators skip it)."""

    is_identity = True


#: The default channel of every communicator.
IDENTITY = Identity()


class DropChannel(Channel):
    """Each message is lost independently with probability ``p``.

    Parameters
    ----------
    p : float
        Drop probability in ``[0, 1]``; ``p = 0`` delivers everything (numbers equal the
        identity channel's bit for bit).
    seed : int
        Seed of the decisions (``uniform(seed, src, dst, t) < p``).
    symmetric : bool
        Decide per undirected link: ``j -> i`` is lost exactly when ``i -> j`` is (both use
        ``(min, max)``), which keeps a symmetric ``W`` doubly stochastic under ``mix``.
    """

    def __init__(self, p: float, seed: int = 0, symmetric: bool = False) -> None:
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"drop probability must be in [0, 1], got {p}")
        self.p, self.seed, self.symmetric = float(p), int(seed), bool(symmetric)

    def arrives(self, src: np.ndarray, dst: np.ndarray, t: int) -> np.ndarray:
        a, b = np.asarray(src, dtype=np.int64), np.asarray(dst, dtype=np.int64)
        if self.symmetric:
            a, b = np.minimum(a, b), np.maximum(a, b)
        return uniform(self.seed, a, b, t) >= self.p


class ReplaceChannel(Channel):
    """Byzantine senders: every message sent by a node of ``senders`` carries
    ``fn(src, dst, t, rows)`` instead of its payload rows.

    Parameters
    ----------
    senders : iterable of int
        The Byzantine nodes.
    fn : callable
        ``fn(src, dst, t, rows) -> rows``: pure, same dtypes and shapes as ``rows`` (row ``k``
        belongs to message ``src[k] -> dst[k]``). For ``share`` the rows are encoded payload
        rows, for the uploads the (decoded) vectors the server would average.
    """

    def __init__(self, senders, fn: Callable[..., Payload]) -> None:
        self.senders = np.unique(np.asarray(list(senders), dtype=np.int64))
        self.fn = fn

    def replaces(self, src: np.ndarray, dst: np.ndarray, t: int) -> np.ndarray:
        return np.isin(np.asarray(src, dtype=np.int64), self.senders)

    def replace(self, src: np.ndarray, dst: np.ndarray, t: int, rows: Payload) -> Payload:
        return tuple(self.fn(src, dst, t, rows))


class Compose(Channel):
    """Channels in a row (a fault model and an attack together): a message arrives when it
    arrives through every one of ``channels``, and the replacements chain in order, each
    channel replacing the rows it replaces in what the previous ones delivered.

    >>> import numpy as np
    >>> a, b = DropChannel(0.5, seed=0), DropChannel(0.5, seed=1)
    >>> src, dst = np.arange(6), np.roll(np.arange(6), 1)
    >>> both = Compose(a, b).arrives(src, dst, t=0)
    >>> bool((both == (a.arrives(src, dst, 0) & b.arrives(src, dst, 0))).all())
    True
    """

    def __init__(self, *channels: Channel) -> None:
        self.channels = tuple(c for c in channels if not c.is_identity)
        self.is_identity = not self.channels

    def arrives(self, src: np.ndarray, dst: np.ndarray, t: int) -> np.ndarray:
        out = np.ones(len(src), dtype=bool)
        for c in self.channels:
            out &= c.arrives(src, dst, t)
        return out

    def replaces(self, src: np.ndarray, dst: np.ndarray, t: int) -> np.ndarray:
        out = np.zeros(len(src), dtype=bool)
        for c in self.channels:
            out |= c.replaces(src, dst, t)
        return out

    def replace(self, src: np.ndarray, dst: np.ndarray, t: int, rows: Payload) -> Payload:
        src, dst = np.asarray(src, dtype=np.int64), np.asarray(dst, dtype=np.int64)
        for c in self.channels:
            mine = np.flatnonzero(c.replaces(src, dst, t))
            if not len(mine):
                continue
            at = torch.from_numpy(mine)
            part = tuple(r[at.to(r.device)] for r in rows)
            new = check_replacement(part, c.replace(src[mine], dst[mine], t, part))
            rows = tuple(r.index_copy(0, at.to(r.device), x) for r, x in zip(rows, new))
        return rows


def check_replacement(rows: Payload, new: Payload) -> Payload:
    """``new`` if it has the tensors, dtypes and shapes of ``rows``; else a ValueError."""
    if len(new) != len(rows) or any(
        a.dtype != b.dtype or a.shape != b.shape for a, b in zip(rows, new)
    ):
        want = [(tuple(a.shape), a.dtype) for a in rows]
        got = [(tuple(b.shape), b.dtype) for b in new]
        raise ValueError(f"a replaced payload must keep its tensors {want}, got {got}")
    return new


def _round(channel: Channel, t: int | None) -> int:
    """``t`` as an int; a ValueError when a channel that decides per round gets none."""
    if t is None:
        name = type(channel).__name__
        raise ValueError(f"the channel {name} decides per round: pass the round t")
    return int(t)


def deliver(
    channel: Channel, nodes: range, ids: np.ndarray, rows: Payload, W, t: int | None
) -> Delivery:
    """The :class:`Delivery` of a share to the hosted ``nodes`` whose rows ``ids`` are in
    ``rows``: the channel's decisions for every message ``j -> i`` with ``i`` hosted
    (``W[i, j] != 0``, ``i != j``)."""
    if channel.is_identity:
        return Delivery(ids, rows)
    t = _round(channel, t)
    lo = nodes.start
    coo = sp.coo_array(sp.csr_array(W)[lo : nodes.stop])
    coo.sum_duplicates()
    dst, src = coo.row.astype(np.int64) + lo, coo.col.astype(np.int64)
    keep = (dst != src) & (coo.data != 0)
    dst, src = dst[keep], src[keep]
    order = np.lexsort((src, dst))
    dst, src = dst[order], src[order]
    arrived = channel.arrives(src, dst, t)
    changed = channel.replaces(src, dst, t) & arrived
    at = torch.from_numpy(np.searchsorted(ids, src[changed]))
    sent = tuple(r[at.to(r.device)] for r in rows)
    new = sent
    if changed.any():
        new = check_replacement(sent, channel.replace(src[changed], dst[changed], t, sent))
    return Delivery(
        ids,
        rows,
        np.stack([dst[~arrived], src[~arrived]], 1),
        np.stack([dst[changed], src[changed]], 1),
        new,
    )


def deliver_messages(
    channel: Channel, received: dict[tuple[int, int], Payload], t: int | None
) -> dict[tuple[int, int], Payload]:
    """``received`` (point-to-point messages to hosted nodes) after the channel: lost ones
    left out, replaced ones with their new payload (``src == dst`` untouched)."""
    if channel.is_identity:
        return received
    t = _round(channel, t)
    keys = [k for k in received if k[0] != k[1]]
    src = np.array([k[0] for k in keys], dtype=np.int64)
    dst = np.array([k[1] for k in keys], dtype=np.int64)
    arrived = channel.arrives(src, dst, t)
    changed = channel.replaces(src, dst, t) & arrived
    out = dict(received)
    for k, key in enumerate(keys):
        if not arrived[k]:
            del out[key]
        elif changed[k]:
            rows = tuple(x.unsqueeze(0) for x in received[key])
            new = channel.replace(src[k : k + 1], dst[k : k + 1], t, rows)
            out[key] = tuple(x[0] for x in check_replacement(rows, new))
    return out


def upload_rows(
    channel: Channel, nodes: range, n: int, X: torch.Tensor, senders: np.ndarray | None,
    t: int | None,
) -> tuple[torch.Tensor, torch.Tensor | None, np.ndarray, int]:
    """Rows of the hosted senders as the server receives them: ``(rows, mask, failed,
    arrived)`` with ``mask`` the hosted rows that arrived (``None``: all rows, every node
    sends and the channel is the identity), ``failed`` the sorted ids of every sender whose
    upload was lost (the same on every process) and ``arrived`` how many arrived."""
    everyone = np.arange(n, dtype=np.int64) if senders is None else np.asarray(senders)
    if channel.is_identity:
        if senders is None:
            return X, None, np.zeros(0, dtype=np.int64), n
        mask = torch.zeros(len(nodes), dtype=torch.bool, device=X.device)
        hosted = everyone[(everyone >= nodes.start) & (everyone < nodes.stop)] - nodes.start
        mask[torch.as_tensor(hosted, dtype=torch.long)] = True
        return X, mask, np.zeros(0, dtype=np.int64), len(everyone)
    t = _round(channel, t)
    server = np.full(len(everyone), SERVER, dtype=np.int64)
    arrived = channel.arrives(everyone, server, t)
    changed = channel.replaces(everyone, server, t) & arrived
    here = (everyone >= nodes.start) & (everyone < nodes.stop)
    mask = torch.zeros(len(nodes), dtype=torch.bool, device=X.device)
    mask[torch.as_tensor(everyone[here & arrived] - nodes.start, dtype=torch.long)] = True
    mine = everyone[here & changed]
    if len(mine):
        at = torch.as_tensor(mine - nodes.start, dtype=torch.long, device=X.device)
        (new,) = check_replacement(
            (X[at],), channel.replace(mine, server[: len(mine)], t, (X[at],))
        )
        X = X.clone()
        X[at] = new
    return X, mask, everyone[~arrived], int(arrived.sum())


def repair_mix(Y: torch.Tensor, W, nodes: range, X: torch.Tensor, got: Delivery) -> torch.Tensor:
    """``Y = W[nodes] @ rows`` (every message as sent) corrected for what the channel did.

    A lost message ``j -> i`` gives its weight to the diagonal and a replaced one brings the
    row ``r_ji`` that arrived::

        y_i += W_ij (x_i - x_j)     (lost)        y_i += W_ij (r_ji - x_j)     (replaced)

    ``X`` is the hosted block, ``got`` the :class:`Delivery` of ``(X,)``; returns a new tensor.
    """
    A = sp.csr_array(W)
    rows = got.rows[0].reshape(got.rows[0].shape[0], -1)
    out = Y.reshape(Y.shape[0], -1).clone()
    for edges, arrived in ((got.failed, None), (got.replaced, got.replaced_rows)):
        if not len(edges):
            continue
        dst, src = edges[:, 0], edges[:, 1]
        w = torch.as_tensor(np.asarray(A[dst, src]).ravel(), dtype=out.dtype, device=out.device)
        at = torch.as_tensor(dst - nodes.start, dtype=torch.long, device=out.device)
        sent = rows[torch.as_tensor(np.searchsorted(got.ids, src), device=rows.device)]
        if arrived is None:
            new = X.reshape(X.shape[0], -1)[at]
        else:
            new = arrived[0].reshape(len(edges), -1)
        out.index_add_(0, at, w[:, None] * (new.to(out.dtype) - sent.to(out.dtype)))
    return out.reshape(Y.shape)
