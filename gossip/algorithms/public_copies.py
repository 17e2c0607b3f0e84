"""Who keeps public copies of whom, for compressed gossip with public copies (CHOCO, BEER).

Node ``j`` sends its compressed difference ``q_j`` to every node that keeps a copy ``x_hat_j``;
every holder adds the same ``q_j``, so all copies of ``j`` stay equal. On a static topology the
holders are ``W``'s nonzero pattern; on a time-varying schedule a copy must stay exact between
the rounds in which it is used, so the holders are the neighbours of ``j`` in the run's base
graph (both directions, self included), and every ``W(t)`` must mix only along those edges.

:func:`share_copies` is the round's one message per holder: share the encoded differences,
keep the rows of the known senders, decode, and add them to the copies.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
import torch

from gossip.algorithms.base import Context
from gossip.comm.mixing import remember
from gossip.compression.cast import none
from gossip.errors import ConfigError

__all__ = ["check_within", "compressor_of", "pattern", "receivers", "share_copies"]


def compressor_of(ctx: Context):
    """The run's compressor, or the identity (``none``) when the run has none."""
    return ctx.compressor if ctx.compressor is not None else none()


def pattern(W) -> sp.csr_array:
    """The nonzero pattern of ``W`` as a 0/1 CSR matrix (explicit zeros dropped)."""
    P = sp.csr_array(W, copy=True)
    P.data = np.ones_like(P.data)
    P.eliminate_zeros()
    return P


def receivers(ctx: Context, algorithm: str) -> sp.csr_array:
    """Who must receive ``q_j``: ``W``'s pattern if static, else the base graph's (symmetric).

    Computed once per (schedule, graph) of a run and handed out as the same read-only matrix
    every round, so the communicator's share plan and message counts are found by identity.
    """
    key = (id(ctx.schedule), id(ctx.graph), ctx.comm.n)
    hit = _receivers_cache.get(key)
    if hit is not None and hit[0] is ctx.schedule and hit[1][0] is ctx.graph:
        return hit[1][1]
    base = _receivers(ctx, algorithm)
    for a in (base.data, base.indices, base.indptr):
        a.flags.writeable = False
    remember(_receivers_cache, key, (ctx.schedule, (ctx.graph, base)))
    return base


_receivers_cache: dict[tuple, tuple] = {}


def _receivers(ctx: Context, algorithm: str) -> sp.csr_array:
    n = ctx.comm.n
    if ctx.schedule.is_static:
        return pattern(ctx.schedule.matrix(0))
    if ctx.graph is None or ctx.graph.number_of_nodes() != n:
        raise ConfigError(
            f"{algorithm} on a time-varying schedule needs the run's base graph on n nodes"
        )
    edges = np.array([(int(u), int(v)) for u, v in ctx.graph.edges()], dtype=np.int64)
    edges = edges.reshape(-1, 2)
    rows = np.concatenate([edges[:, 0], edges[:, 1], np.arange(n)])
    cols = np.concatenate([edges[:, 1], edges[:, 0], np.arange(n)])
    return pattern(sp.csr_array((np.ones(len(rows)), (rows, cols)), shape=(n, n)))


def check_within(W, base: sp.csr_array, algorithm: str, t: int) -> None:
    """ConfigError when ``W(t)`` mixes along an edge that ``base`` has no copies for."""
    P = pattern(W)
    if (P - base.multiply(P)).count_nonzero():
        raise ConfigError(f"{algorithm}: W({t}) mixes along an edge outside the base graph")


def share_copies(
    comm, compressor, base: sp.csr_array, known: np.ndarray, t: int, parts: list[tuple]
) -> list[torch.Tensor]:
    """Send the encoded differences to the holders of the copies and update the copies.

    ``parts`` holds ``(payload, state, step, copies)`` per kind of copy (CHOCO: one, ``X_hat``;
    BEER: two, ``H`` and ``G``): the payload of the hosted nodes' ``q_j``, the compressor
    state and step to decode it with, and the copies ``(len(known), d)`` of the ``known``
    nodes. All payloads travel in one :meth:`~gossip.comm.base.Communicator.share` along
    ``base`` (round ``t``); returns the new copies, ``x_hat_j + D(q_j)`` for every known ``j``.

    Every holder of ``x_hat_j`` must add the same ``q_j`` (one copy per node and process), so
    a channel that loses or replaces a message to a holder raises a ValueError.
    """
    payload = tuple(p for part in parts for p in part[0])
    got = comm.share(payload, base, t)
    if not got.complete:
        raise ValueError(
            f"round {t}: the channel lost or replaced {len(got.failed) + len(got.replaced)} "
            "messages of public copies, which must reach every holder"
        )
    ids = got.ids
    keep = np.isin(ids, known)
    rows = tuple(r[torch.from_numpy(keep).to(r.device)] for r in got.rows)
    at = torch.from_numpy(np.searchsorted(known, ids[keep]))
    out, start = [], 0
    for part_payload, state, step, copies in parts:
        k = len(part_payload)
        new = copies.clone()
        new[at] += compressor.decode(rows[start : start + k], state, ids[keep], step).to(new.dtype)
        out.append(new)
        start += k
    return out
