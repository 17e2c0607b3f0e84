"""Poisson-subsampled mini-batches of DP-SGD (``privacy.sampling = "poisson"``).

At step ``t`` node ``i`` includes each of its ``n_i`` training examples independently with
probability ``q_i = B / n_i`` (Abadi et al. 2016, Algorithm 1 with "lots" drawn this way; the
sampling the accountant's ``PoissonSampledDpEvent`` composes, so ``epsilon`` is exact for the
run, not an approximation). The inclusion mask comes from a generator seeded by
``(seed, i, t)`` only, so a node's batches are the same in process and under MPI, and after a
resume.

The realised batch sizes ``|b_{i,t}| ~ Binomial(n_i, q_i)`` differ between nodes; a block of
nodes is padded to the largest of them (at least 1) with weight-0 entries, so the vectorised
per-sample paths run on one ``(b, L)`` array and every sum is ``sum_k w_k clip_C(g_{i,k})``
with ``w_k in {0, 1}``. Nothing is capped or resampled (either would change the sampling the
accountant assumes); the padding costs ``L - B`` extra rows, ``L <= B + O(sqrt(B log b))``
with high probability.
"""

from __future__ import annotations

import numpy as np

__all__ = ["POISSON_TAG", "inclusion_mask", "poisson_batches"]

#: Last entry of the inclusion generator's seed (keeps it apart from the noise streams).
POISSON_TAG = 0x9015


def inclusion_mask(seed: int, node: int, step: int, size: int, q: float) -> np.ndarray:
    """``(size,)`` bools: example ``k`` of node ``node`` is in its batch of ``step`` with
    probability ``q``, independently, by ``rng([seed, node, step, POISSON_TAG])``."""
    u = np.random.default_rng([seed, node, step, POISSON_TAG]).random(size)
    return u < q


def poisson_batches(seed: int, nodes: range, sizes: list[int], batch: int, step: int
                    ) -> tuple[np.ndarray, np.ndarray]:
    """``(pos, w)`` of the hosted ``nodes`` at ``step``, both ``(b, L)``: ``pos[k]`` the
    positions (in ``0 .. n_i - 1``) of node ``k``'s included examples, then padding
    (position 0); ``w[k]`` 1 for an included example, 0 for padding;
    ``L = max(1, max_k |b_k|)``."""
    chosen = [np.flatnonzero(inclusion_mask(seed, i, step, sizes[i], batch / sizes[i]))
              for i in nodes]
    L = max([1, *(len(c) for c in chosen)])
    pos = np.zeros((len(chosen), L), dtype=np.int64)
    w = np.zeros((len(chosen), L))
    for k, c in enumerate(chosen):
        pos[k, : len(c)] = c
        w[k, : len(c)] = 1.0
    return pos, w
