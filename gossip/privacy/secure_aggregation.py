"""Secure aggregation, simulated: the server learns the sum of the clients' vectors, not one.

Bonawitz et al., 2017, "Practical Secure Aggregation for Privacy-Preserving Machine Learning"
(CCS), the semi-honest protocol with double masking. The participants ``U`` of a round (the
sampled clients of ``fedavg``, every node of ``allreduce``), ``m = |U|``:

1. *Fixed point.* Client ``i`` saturates its vector to ``[-c, c]`` (``c`` =
   ``algorithm.secure_aggregation_clip``; entries beyond it are clipped, with a warning:
   choose ``c`` above the largest update) and maps it to ``Z_{2^k}`` (``k`` =
   ``algorithm.secure_aggregation_bits``) with ``f`` fractional bits,
   ``q_i = round(2^f clip_c(x_i)) mod 2^k``. ``f`` (:func:`fraction_bits`) is the largest
   with ``m ceil(2^f c) <= 2^{k-1} - 1``, so the sum of any ``m`` encoded vectors lies in
   ``(-2^{k-1}, 2^{k-1})`` and decodes uniquely (two's complement): no overflow, by
   construction. Quantisation error of the decoded mean: at most ``2^{-f-1}`` per entry.
2. *Masking.* With pairwise seeds ``s_ij`` (``i < j``) and self-mask seeds ``b_i``::

       y_i = q_i + PRG(b_i) + sum_{j in U, j > i} PRG(s_ij) - sum_{j in U, j < i} PRG(s_ji)
             (mod 2^k)

   ``PRG(s)`` a vector of ``d`` integers uniform in ``[0, 2^k)``. The pairwise masks cancel in
   ``sum_i y_i``; the self masks (``double_mask``) protect a client whose upload is merely late.
3. *Aggregation.* The server receives the ``y_i`` that arrive (``U_2``, the survivors;
   :func:`masked_inputs` is what it sees per client) and sums them mod ``2^k``
   (``comm.upload_sum``: int64 rows, every partial sum ``< m 2^k <= 2^62``, reduced with an
   explicit ``mod 2^k``).
4. *Unmasking.* For a client ``v`` that dropped after sharing its keys (its upload lost:
   ``[faults] drop``), the survivors' pair masks with ``v`` do not cancel; the survivors hand
   the server shares of ``v``'s key, the server rebuilds ``s_uv`` and removes
   ``+- PRG(s_uv)`` for every survivor ``u``; for every survivor it rebuilds ``b_u`` and
   removes ``PRG(b_u)``. What remains is ``sum_{u in U_2} q_u``, exactly (integers), and the
   mean over the survivors is its decoding divided by ``|U_2|``. Fewer than
   ``t = max(2, ceil(threshold m))`` survivors: the round aborts (no unmasking; the caller
   leaves the model unchanged and counts the round in ``secure_aggregation_aborted``).

Where this departs from the paper (a simulation, no cryptography): the seeds are not agreed by
Diffie-Hellman but derived from ``(run seed, round, min(i, j), max(i, j))`` (pairs) and
``(run seed, round, i)`` (self masks), the same on every process, and the server "reconstructs"
them by deriving them again; no Shamir sharing, encryption or signature is computed. Only the
masked upload passes the communicator's channel (a client drops *after* sharing keys); the
key advertisement, share and unmasking messages always arrive. Keys are fresh every round.
The PRG work is ``m - 1`` vectors per client (``m (m - 1) d`` draws a round), as in the paper.

Bytes: the protocol messages are counted through the communicator (the key rounds with
``comm.count_messages``, since nothing is sent; the masked vectors with ``comm.upload_sum``),
per round (:func:`round_bytes`), ``s = |U_2|``, ``D = m - s``, ``K = 32`` (a public key or a
seed), ``I = 4`` (a client id), ``E = 2 I + n_s K + 28`` (an AEAD-encrypted share of the
``n_s`` secrets, 2 with double masking, 1 without; 28 = 12 nonce + 16 tag)::

    advertise:  m * 2K          (up)   + m * m (I + 2K)        (all keys to all, down)
    share keys: m * (m - 1) E   (up)   + m * (m - 1) E         (forwarded, down)
    masked:     m * ceil(d k / 8)                              (k bits per entry, not 32)
    unmask:     s * s I         (survivor list, down) + s * (D + s [double]) (I + K)  (shares up)

(unmask is 0 when the round aborts, or without double masking and without dropouts).
The download of the result is the algorithm's own broadcast, as without secure aggregation.

Examples
--------
>>> q = encode(torch.tensor([[0.5, -0.25]]), bits=16, frac=4, clip=1.0)
>>> q.tolist(), decode(q[0], bits=16, frac=4).tolist()
([[8, 65532]], [0.5, -0.25])
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
import torch

from gossip.errors import ConfigError
from gossip.options import fraction, int_range, positive
from gossip.registry import option

__all__ = [
    "ID_BYTES",
    "KEY_BYTES",
    "Outcome",
    "SecAgg",
    "SecureAggregationOptions",
    "aborted_metrics",
    "client_mask",
    "decode",
    "encode",
    "fraction_bits",
    "init_secure",
    "make_secagg",
    "masked_inputs",
    "pair_mask",
    "round_bytes",
    "secure_mean",
    "self_mask",
]

KEY_BYTES = 32  # an X25519 public key, a PRG seed, a share of a 32-byte secret
ID_BYTES = 4  # a client id
AEAD_BYTES = 28  # 12-byte nonce + 16-byte tag of an authenticated encryption
_PAIR_SALT, _SELF_SALT = 0x5EC0, 0x5EC1


@dataclass(frozen=True)
class SecureAggregationOptions:
    """``[algorithm]`` keys of secure aggregation (``fedavg``, ``allreduce``)."""

    secure_aggregation: bool = option(False, "simulate Bonawitz et al. 2017 secure aggregation "
                                      "of the uploads (the server sees masked vectors only)")
    secure_aggregation_bits: int = option(32, "k: the masked vectors live in Z_{2^k}",
                                          check=int_range(16, 48))
    secure_aggregation_clip: float = option(8.0, "c: every entry is saturated to [-c, c] before "
                                            "the fixed-point encoding", check=positive)
    secure_aggregation_threshold: float = option(0.5, "t = max(2, ceil(threshold m)) "
                                                 "survivors needed, else the round aborts",
                                                 check=fraction)
    secure_aggregation_double_mask: bool = option(True, "add a self mask b_i, removed at "
                                                  "unmasking (double masking)")


class SecAgg(NamedTuple):
    """The parameters of one run: ``bits`` k, ``frac`` f, ``clip`` c, ``threshold`` t (a count),
    ``double_mask``, ``seed`` (the run's, for the simulated key agreement)."""

    bits: int
    frac: int
    clip: float
    threshold: int
    double_mask: bool
    seed: int


class Outcome(NamedTuple):
    """A round's result: ``mean`` over the survivors (``None``: aborted), the ``survivors``
    ``U_2`` and the ``dropped`` clients (sorted ids)."""

    mean: torch.Tensor | None
    survivors: np.ndarray
    dropped: np.ndarray


def fraction_bits(bits: int, m: int, clip: float) -> int:
    """The largest ``f`` with ``m ceil(2^f c) <= 2^{k-1} - 1``: the sum of ``m`` vectors in
    ``[-c, c]`` encoded with ``f`` fractional bits cannot leave ``(-2^{k-1}, 2^{k-1})``
    (``-1`` when even ``f = 0`` overflows)."""
    limit = 2 ** (bits - 1) - 1
    f = bits - 1
    while f >= 0 and m * math.ceil(math.ldexp(clip, f)) > limit:
        f -= 1
    return f


def make_secagg(cfg: SecureAggregationOptions, m: int, seed: int, algorithm: str) -> SecAgg:
    """The run's :class:`SecAgg` for ``m`` participants per round; ConfigError (one line) when
    ``m < 2``, ``m 2^k`` could overflow int64 partial sums, or ``k`` leaves no fractional bit."""
    k, c = cfg.secure_aggregation_bits, cfg.secure_aggregation_clip
    if m < 2:
        raise ConfigError(f"algorithm.secure_aggregation with algorithm.name={algorithm!r} needs "
                          f"at least 2 clients per round (has {m}): the sum of one is the vector")
    if m > 2 ** (62 - k):
        raise ConfigError(f"algorithm.secure_aggregation_bits={k} with {m} clients per round "
                          f"could overflow int64 sums; use at most {62 - math.ceil(math.log2(m))}")
    f = fraction_bits(k, m, c)
    if f < 1:
        raise ConfigError(f"algorithm.secure_aggregation_bits={k} leaves no fractional bit for "
                          f"{m} clients with secure_aggregation_clip={c}; raise the bits or "
                          "lower the clip")
    t = max(2, math.ceil(cfg.secure_aggregation_threshold * m))
    return SecAgg(k, f, float(c), t, bool(cfg.secure_aggregation_double_mask), int(seed))


def init_secure(cfg, m: int, ctx, algorithm: str, robust: bool) -> torch.Tensor | tuple:
    """The count of aborted rounds (int64 zero) when ``cfg.secure_aggregation`` is on, else
    ``()``; ConfigError (one line) for a run it cannot serve: compression, a robust server
    (``robust``: a rule other than the mean, worker momentum or an ``[attack]``; the server
    only sees the sum), or what :func:`make_secagg` refuses."""
    if not cfg.secure_aggregation:
        return ()
    key = "algorithm.secure_aggregation=true"
    if ctx.compressor is not None:
        raise ConfigError(f"{key} with a [compression] operator: the masked vectors are "
                          "dense fixed point; use compression.name='none'")
    if robust:
        what = (f"algorithm.aggregator={cfg.aggregator!r}" if cfg.aggregator != "mean" else
                f"algorithm.worker_momentum={cfg.worker_momentum!r}" if cfg.worker_momentum
                else "an [attack]")
        raise ConfigError(f"{key} with {what}: the server sees only the sum of the uploads, a "
                          "robust server needs them one by one; use one of the two")
    make_secagg(cfg, m, ctx.seed, algorithm)
    return torch.zeros((), dtype=torch.int64)


def aborted_metrics(S: torch.Tensor | tuple) -> dict[str, int]:
    """``{"secure_aggregation_aborted": rounds aborted so far}`` (``{}`` without secure
    aggregation), for every metrics record."""
    return {} if isinstance(S, tuple) else {"secure_aggregation_aborted": int(S)}


def encode(X: torch.Tensor, bits: int, frac: int, clip: float) -> torch.Tensor:
    """``round(2^f clip_c(X)) mod 2^k`` as int64 (computed in float64, exact)."""
    q = torch.round(X.to(torch.float64).clamp(-clip, clip) * 2.0 ** frac).to(torch.int64)
    return torch.remainder(q, 2 ** bits)


def decode(S: torch.Tensor, bits: int, frac: int) -> torch.Tensor:
    """The signed value of ``S`` in ``[0, 2^k)`` (two's complement) divided by ``2^f``,
    float64."""
    signed = torch.where(S >= 2 ** (bits - 1), S - 2 ** bits, S)
    return signed.to(torch.float64) / 2.0 ** frac


def _prg(entropy: list[int], d: int, bits: int) -> np.ndarray:
    return np.random.default_rng(entropy).integers(0, 2 ** bits, size=d, dtype=np.int64)


def pair_mask(p: SecAgg, t: int, i: int, j: int, d: int) -> np.ndarray:
    """``PRG(s_ij)``, ``s_ij`` derived from ``(seed, t, min(i, j), max(i, j))``."""
    return _prg([p.seed, t, min(i, j), max(i, j), _PAIR_SALT], d, p.bits)


def self_mask(p: SecAgg, t: int, i: int, d: int) -> np.ndarray:
    """``PRG(b_i)``, ``b_i`` derived from ``(seed, t, i)``."""
    return _prg([p.seed, t, i, _SELF_SALT], d, p.bits)


def client_mask(p: SecAgg, t: int, i: int, others, d: int) -> np.ndarray:
    """``sum_{j > i} PRG(s_ij) - sum_{j < i} PRG(s_ji) mod 2^k`` over ``j`` in ``others``
    (``i`` itself skipped)."""
    return client_masks(p, t, [i], others, d)[i]


def client_masks(p: SecAgg, t: int, clients, others, d: int) -> dict[int, np.ndarray]:
    """:func:`client_mask` of every ``i`` in ``clients``; a pair with both ends in ``clients``
    draws its PRG once (added at one end, subtracted at the other). The signed sums stay below
    ``m 2^k <= 2^62`` (checked by :func:`make_secagg`), so one ``mod 2^k`` at the end is exact."""
    M = 2 ** p.bits
    clients = [int(i) for i in clients]
    hosted = set(clients)
    acc = {i: np.zeros(d, dtype=np.int64) for i in clients}
    for i in clients:
        for j in (int(j) for j in others):
            if j == i or (j in hosted and j < i):  # the pair was drawn at its smaller end
                continue
            mask = pair_mask(p, t, i, j, d)
            if j > i:
                acc[i] += mask
                if j in hosted:
                    acc[j] -= mask
            else:
                acc[i] -= mask
    return {i: np.remainder(a, M) for i, a in acc.items()}


def _hosted(ids: np.ndarray, nodes: range) -> np.ndarray:
    return ids[(ids >= nodes.start) & (ids < nodes.stop)]


def masked_inputs(p: SecAgg, X: torch.Tensor, senders: np.ndarray, nodes: range, t: int
                  ) -> torch.Tensor:
    """What the server receives from each hosted participant: ``y_i`` (int64 in
    ``[0, 2^k)``) on the rows of ``senders`` in ``nodes``, zeros on the other rows.

    Each row is uniform on ``Z_{2^k}^d`` whatever ``x_i`` is (the masks are), and the sum of
    all participants' rows mod ``2^k`` is ``sum_i q_i`` exactly.
    """
    d, M = X.shape[1], 2 ** p.bits
    Y = torch.zeros(X.shape, dtype=torch.int64, device=X.device)
    hosted = _hosted(senders, nodes).tolist()
    masks = client_masks(p, t, hosted, senders, d)
    for i in hosted:
        mask = masks[i]
        if p.double_mask:
            mask = (mask + self_mask(p, t, i, d)) % M
        row = X[i - nodes.start]
        _warn_saturated(row, p.clip)
        q = encode(row, p.bits, p.frac, p.clip)
        Y[i - nodes.start] = (q + torch.from_numpy(mask).to(X.device)) % M
    return Y


def _warn_saturated(x: torch.Tensor, clip: float) -> None:
    """A warning (shown once: its text does not change within a run) when a client's update
    has entries beyond ``[-clip, clip]``: the encoding saturates them, the mean is biased."""
    if bool((x.abs() > clip).any()):
        warnings.warn(f"secure aggregation saturated entries of a client's update to +-{clip}; "
                      f"raise algorithm.secure_aggregation_clip above the largest update entry",
                      stacklevel=2)


def _recovery(p: SecAgg, t: int, survivors: np.ndarray, dropped: np.ndarray, nodes: range,
              d: int) -> np.ndarray:
    """The masks the server removes that belong to the hosted survivors:
    ``sum_u [PRG(b_u)] + sum_{u, v dropped} (+-PRG(s_uv))`` (mod 2^k), the sign as in ``y_u``."""
    M = 2 ** p.bits
    acc = np.zeros(d, dtype=np.int64)
    for u in _hosted(survivors, nodes).tolist():
        acc = (acc + client_mask(p, t, u, dropped, d)) % M
        if p.double_mask:
            acc = (acc + self_mask(p, t, u, d)) % M
    return acc


def round_bytes(p: SecAgg, m: int, survivors: int, d: int) -> dict[str, int]:
    """The protocol's bytes in one round of ``m`` participants with ``survivors`` masked
    uploads arriving, for ``d`` entries (the formula of the module docstring); ``total``
    their sum."""
    s, dropped = survivors, m - survivors
    share = 2 * ID_BYTES + (2 if p.double_mask else 1) * KEY_BYTES + AEAD_BYTES
    out = {
        "advertise": m * 2 * KEY_BYTES + m * m * (ID_BYTES + 2 * KEY_BYTES),
        "share_keys": 2 * m * (m - 1) * share,
        "masked": m * math.ceil(d * p.bits / 8),
        "unmask": 0,
    }
    if s >= p.threshold and (p.double_mask or dropped):
        shares = dropped + (s if p.double_mask else 0)
        out["unmask"] = s * s * ID_BYTES + s * shares * (ID_BYTES + KEY_BYTES)
    out["total"] = sum(out.values())
    return out


def secure_mean(p: SecAgg, comm, X: torch.Tensor, senders: np.ndarray, t: int) -> Outcome:
    """One round of the protocol (collective): the participants ``senders`` (sorted ids, the
    same on every process) aggregate their hosted rows of ``X`` ``(b, d)``; returns the mean
    over the survivors in ``X``'s dtype (``None`` when fewer than ``p.threshold`` survive)."""
    senders = np.asarray(senders, dtype=np.int64)
    m, d, M = len(senders), X.shape[1], 2 ** p.bits
    share = 2 * ID_BYTES + (2 if p.double_mask else 1) * KEY_BYTES + AEAD_BYTES
    comm.count_messages(senders, 2 * KEY_BYTES)  # advertise keys: 2 public keys up
    comm.count_messages(senders, m * (ID_BYTES + 2 * KEY_BYTES), down=True)  # every key pair down
    comm.count_messages(senders, (m - 1) * share)  # encrypted shares up
    comm.count_messages(senders, (m - 1) * share, down=True)  # forwarded to holders
    Y = masked_inputs(p, X, senders, comm.nodes, t)
    total, dropped = comm.upload_sum(Y, math.ceil(d * p.bits / 8), senders, t)
    survivors = np.setdiff1d(senders, dropped)
    s = len(survivors)
    if s < p.threshold:
        return Outcome(None, survivors, dropped)
    S = torch.remainder(total, M)
    if p.double_mask or len(dropped):
        shares = len(dropped) + (s if p.double_mask else 0)
        comm.count_messages(survivors, s * ID_BYTES, down=True)  # the survivor list
        comm.count_messages(survivors, shares * (ID_BYTES + KEY_BYTES))  # shares, up
        local = torch.from_numpy(_recovery(p, t, survivors, dropped, comm.nodes, d))
        S = torch.remainder(S - torch.remainder(comm.allreduce_sum(local).to(S.device), M), M)
    return Outcome((decode(S, p.bits, p.frac) / s).to(X.dtype), survivors, dropped)
