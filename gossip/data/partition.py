"""Partitions of a training set over ``n`` nodes.

Every partition is a list of ``n`` sorted int64 index arrays, pairwise disjoint and together
covering ``range(len(labels))``, and is a function of ``(labels, n, seed, options)`` only.

- ``iid``: a seeded permutation cut into ``n`` near-equal parts.
- ``dirichlet``: for each class ``c``, ``p_c ~ Dir(alpha 1_n)`` and node ``i`` gets a
  ``p_{c,i}`` share of the class (Hsu, Qi & Brown 2019, "Measuring the effects of non-identical
  data distribution"). Nodes already holding ``len(labels) / n`` samples get no more (the
  balancing of Wang et al. 2020, FedMA). Draws are repeated with seeds ``seed, seed + 1, ...``
  until every node has at least ``min_size`` samples; at large ``n``, where no draw does, it
  falls back to ``dirichlet_balanced`` groups with a warning.
- ``dirichlet_balanced``: the split of the RelaySum paper's code (Vogels et al. 2021): the same
  per-class Dirichlet within groups of 10 nodes, each group on its own slice of the data, every
  node holding at least half its group's mean.
- ``shards``: sort by label, cut each class into equal shards, ``n * k`` shards in all, and deal
  them so that every node holds exactly ``k`` distinct classes (McMahan et al. 2017 deal
  shards at random, which can give a node fewer than ``k`` classes).
- ``quantity_skew``: iid labels, node sizes proportional to ``q ~ Dir(alpha 1_n)``, retried like
  ``dirichlet`` until every node has ``min_size`` samples (Li et al. 2022, "Federated learning
  on non-IID data silos").
"""

from __future__ import annotations

import warnings

import numpy as np

from gossip.errors import ConfigError
from gossip.options import unknown_name

__all__ = [
    "PARTITIONS",
    "class_counts",
    "dirichlet",
    "dirichlet_balanced",
    "iid",
    "make_partition",
    "quantity_skew",
    "shards",
]

PARTITIONS = ("iid", "dirichlet", "dirichlet_balanced", "shards", "quantity_skew")
MAX_TRIES = 1000
#: Nodes per group of :func:`dirichlet_balanced` (the reference code's ``num_auxiliary_workers``).
GROUP_SIZE = 10


def _rng(seed: int, tag: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence([seed, tag]))


def _check_n(labels: np.ndarray, n: int, min_size: int = 1) -> None:
    if n < 1:
        raise ConfigError(f"nodes must be >= 1, got {n}")
    if n * max(min_size, 1) > len(labels):
        raise ConfigError(
            f"cannot give {n} nodes at least {max(min_size, 1)} samples each from "
            f"{len(labels)} training samples; use fewer nodes or a smaller min_size"
        )


def iid(labels: np.ndarray, n: int, *, seed: int = 0) -> list[np.ndarray]:
    """A seeded permutation of the samples cut into ``n`` parts whose sizes differ by <= 1."""
    labels = np.asarray(labels)
    _check_n(labels, n)
    perm = _rng(seed, 1).permutation(len(labels))
    return [np.sort(p).astype(np.int64) for p in np.array_split(perm, n)]


def _by_class(labels: np.ndarray, pool: np.ndarray, classes: np.ndarray) -> list[np.ndarray]:
    """The samples of ``pool`` of each class, in pool order."""
    pool_labels = labels[pool]
    return [pool[pool_labels == c] for c in classes]


def _class_split(
    by_class: list[np.ndarray], m: int, alpha: float, rng: np.random.Generator
) -> tuple[list[tuple[np.ndarray, np.ndarray]], np.ndarray]:
    """One per-class Dirichlet draw of the samples ``by_class`` over ``m`` nodes.

    For each class ``c`` in turn: its samples shuffled, ``p ~ Dir(alpha 1_m)``, ``p_i = 0``
    for nodes already holding ``N / m`` samples (``N`` all samples of ``by_class``),
    renormalised, and node ``i`` gets the ``i``-th of the pieces cut at
    ``floor(N_c cumsum(p))``. Returns the per-class ``(shuffled indices, cuts)`` and the node
    sizes; :func:`_assemble` builds the parts, so a rejected draw builds no per-node arrays.
    """
    cap = sum(len(idx) for idx in by_class) / m
    sizes = np.zeros(m, dtype=np.int64)
    pieces = []
    for members in by_class:
        idx = rng.permutation(members)
        p = rng.dirichlet(np.full(m, alpha))
        p = p * (sizes < cap)
        p = p / p.sum() if p.sum() > 0 else np.full(m, 1.0 / m)
        cuts = (np.cumsum(p) * len(idx)).astype(np.int64)[:-1]
        sizes += np.diff(cuts, prepend=0, append=len(idx))
        pieces.append((idx, cuts))
    return pieces, sizes


def _assemble(pieces: list[tuple[np.ndarray, np.ndarray]], m: int) -> list[np.ndarray]:
    parts: list[list[np.ndarray]] = [[] for _ in range(m)]
    for idx, cuts in pieces:
        for i, chunk in enumerate(np.split(idx, cuts)):
            parts[i].append(chunk)
    return [np.sort(np.concatenate(p)).astype(np.int64) for p in parts]


def _note(report: dict | None, **items: object) -> None:
    if report is not None:
        report.update(items)


def dirichlet(
    labels: np.ndarray, n: int, *, alpha: float, seed: int = 0, min_size: int = 10,
    report: dict | None = None,
) -> list[np.ndarray]:
    """Per-class Dirichlet(alpha) split over ``n`` nodes (smaller alpha: more skewed).

    Draws with seeds ``seed, seed + 1, ...`` until every node has ``min_size`` samples. When
    no draw in ``MAX_TRIES`` does (a Dirichlet over many nodes leaves some nearly empty:
    MNIST, ``alpha = 0.1``, 256 nodes or more) and ``n > GROUP_SIZE``, it warns and draws
    :func:`dirichlet_balanced` instead, with ``group_size = GROUP_SIZE``, ``min_fraction = 0``
    and the same ``min_size``: the same per-class Dirichlet, on groups of ``GROUP_SIZE`` nodes
    that each split their own share of the data, as the reference code of Vogels et al. (2021)
    does for every ``n``. ``report`` (a dict, optional) receives ``draws`` (draws made, all
    groups counted) and ``drawn_as`` (``"dirichlet"`` or ``"dirichlet_balanced"``).

    Raises
    ------
    ConfigError
        ``alpha <= 0``, ``n * min_size`` more than the samples, or no draw of either kind
        gives every node ``min_size`` samples.
    """
    labels = np.asarray(labels)
    if not alpha > 0:
        raise ConfigError(f"partition alpha must be > 0, got {alpha}")
    _check_n(labels, n, min_size)
    by_class = _by_class(labels, np.arange(len(labels)), np.unique(labels))
    for attempt in range(MAX_TRIES):
        pieces, sizes = _class_split(by_class, n, alpha, _rng(seed + attempt, 2))
        if sizes.min() >= min_size:
            _note(report, draws=attempt + 1, drawn_as="dirichlet")
            return _assemble(pieces, n)
    failed = (f"dirichlet partition with alpha={alpha}: no draw in {MAX_TRIES} seeds gave all "
              f"{n} nodes >= min_size={min_size} samples")
    if n <= GROUP_SIZE:
        raise ConfigError(f"{failed}; raise alpha or lower min_size")
    sub: dict = {}
    try:
        parts = dirichlet_balanced(labels, n, alpha=alpha, seed=seed, group_size=GROUP_SIZE,
                                   min_fraction=0.0, min_size=min_size, report=sub)
    except ConfigError as err:
        raise ConfigError(f"{failed}, nor in groups of {GROUP_SIZE} ({err})") from None
    warnings.warn(f"{failed}; drew it in groups of {GROUP_SIZE} nodes instead, each group on "
                  f"its own 1/{-(-n // GROUP_SIZE)} of the data, as partition = "
                  f"'dirichlet_balanced' with min_fraction = 0 does without these "
                  f"{MAX_TRIES} draws", stacklevel=2)
    _note(report, draws=MAX_TRIES + sub["draws"], drawn_as="dirichlet_balanced")
    return parts


def dirichlet_balanced(
    labels: np.ndarray, n: int, *, alpha: float, seed: int = 0, group_size: int = GROUP_SIZE,
    min_fraction: float = 0.5, min_size: int = 0, report: dict | None = None,
) -> list[np.ndarray]:
    """The Dirichlet split of the RelaySum paper's code: groups of nodes, least size relative
    to the group's mean.

    The rule of ``distribute_data_dirichlet`` in ``tasks/utils/non_iid_dirichlet.py`` of
    epfml/relaysgd (Vogels et al. 2021, adapted there from Lin et al. 2020), written anew:

    1. shuffle the samples (seeded); cut the nodes into ``K = ceil(n / g)`` groups of
       ``g = group_size`` consecutive ids (the last holds ``n - g (K - 1)``) and the shuffled
       samples into ``K`` consecutive slices, ``floor(g N / n)`` each, the last the rest;
    2. in each group of ``m`` nodes and ``N_k`` samples, split per class as :func:`dirichlet`
       (``Dir(alpha 1_m)``, nodes holding ``N_k / m`` get no more) and redraw until every node
       holds ``L_k = max(min_size, floor(min_fraction N_k / m))``.

    The authors use ``g = 10`` and ``min_fraction = 0.5`` (no absolute least size) and redraw
    without limit; here each group gets ``MAX_TRIES`` draws (seeds ``(seed, k, attempt)``).
    Every node of group ``k`` ends with ``L_k <= |D_i| < N_k / m + max_c N_{k,c}`` samples
    (it receives classes only while below ``N_k / m``; ``N_{k,c}`` the group's samples of
    class ``c``; except when every share of the nodes below it underflows to 0, where the
    class is split evenly, as in :func:`dirichlet`). With 16 nodes on MNIST, alpha 0.01 and
    seed 0, nodes hold 1888 to 7322 samples, where :func:`dirichlet` gives 10 to 6270.

    Raises
    ------
    ConfigError
        A bad option, ``n * min_size`` more than the samples, a group whose least size cannot
        fit, or a group with no draw in ``MAX_TRIES`` meeting ``L_k``.
    """
    labels = np.asarray(labels)
    if not alpha > 0:
        raise ConfigError(f"partition alpha must be > 0, got {alpha}")
    if not (isinstance(group_size, (int, np.integer)) and group_size >= 1):
        raise ConfigError(f"partition group_size must be an integer >= 1, got {group_size!r}")
    if not 0 <= min_fraction < 1:
        raise ConfigError(f"partition min_fraction must be in [0, 1), got {min_fraction}")
    _check_n(labels, n, min_size)
    N, g = len(labels), int(group_size)
    K = -(-n // g)
    order = _rng(seed, 5).permutation(N)
    step = g * N // n
    classes = np.unique(labels)
    parts: list[np.ndarray] = []
    draws = 0
    for k in range(K):
        m = g if k < K - 1 else n - g * (K - 1)
        pool = order[k * step : (k + 1) * step if k < K - 1 else N]
        least = max(min_size, int(min_fraction * len(pool) / m))
        if m * least > len(pool):
            raise ConfigError(
                f"dirichlet_balanced: group {k} has {len(pool)} samples for {m} nodes, fewer "
                f"than min_size={min_size} each; use fewer nodes or a smaller min_size")
        by_class = _by_class(labels, pool, classes)
        for attempt in range(MAX_TRIES):
            rng = np.random.default_rng(np.random.SeedSequence([seed, 6, k, attempt]))
            pieces, sizes = _class_split(by_class, m, alpha, rng)
            draws += 1
            if sizes.min() >= least:
                parts.extend(_assemble(pieces, m))
                break
        else:
            raise ConfigError(
                f"dirichlet_balanced partition with alpha={alpha}: no draw in {MAX_TRIES} seeds "
                f"gave group {k} ({m} nodes, {len(pool)} samples) >= {least} samples per node; "
                f"raise alpha or lower min_fraction / min_size")
    _note(report, draws=draws, drawn_as="dirichlet_balanced")
    return parts


def shards(labels: np.ndarray, n: int, *, k: int = 2, seed: int = 0) -> list[np.ndarray]:
    """Every node gets ``k`` shards of ``k`` distinct classes (``1 <= k <= classes``).

    Classes are dealt in a seeded order ``perm``: node ``i`` holds classes
    ``perm[(i k + h) mod C]`` for ``h < k`` (distinct because ``k <= C``), and each class's
    samples are shuffled and cut into as many equal shards as nodes hold it.
    """
    labels = np.asarray(labels)
    classes = np.unique(labels)
    C = len(classes)
    if not 1 <= k <= C:
        raise ConfigError(f"shards_per_node must be in [1, {C}] (the number of classes), got {k}")
    _check_n(labels, n)
    rng = _rng(seed, 3)
    order = classes[rng.permutation(C)]
    holders: dict[int, list[int]] = {int(c): [] for c in classes}
    for i in range(n):
        for h in range(k):
            holders[int(order[(i * k + h) % C])].append(i)
    parts: list[list[np.ndarray]] = [[] for _ in range(n)]
    leftovers = []
    for c in classes:
        idx = rng.permutation(np.flatnonzero(labels == c))
        who = holders[int(c)]
        if not who:  # n * k < C: this class has no holder
            leftovers.append(idx)
            continue
        for i, chunk in zip(who, np.array_split(idx, len(who))):
            parts[i].append(chunk)
    if leftovers:
        raise ConfigError(
            f"shards with {n} nodes x {k} classes leaves {len(leftovers)} of {C} classes "
            f"unassigned; need nodes * shards_per_node >= {C}"
        )
    return [np.sort(np.concatenate(p)).astype(np.int64) for p in parts]


def quantity_skew(
    labels: np.ndarray, n: int, *, alpha: float, seed: int = 0, min_size: int = 10
) -> list[np.ndarray]:
    """IID labels with node sizes ``~ Dir(alpha 1_n)``, at least ``min_size`` each."""
    labels = np.asarray(labels)
    if not alpha > 0:
        raise ConfigError(f"partition alpha must be > 0, got {alpha}")
    _check_n(labels, n, min_size)
    N = len(labels)
    for attempt in range(MAX_TRIES):
        rng = _rng(seed + attempt, 4)
        q = rng.dirichlet(np.full(n, alpha))
        cuts = (np.cumsum(q) * N).astype(np.int64)[:-1]
        sizes = np.diff(np.concatenate([[0], cuts, [N]]))
        if sizes.min() >= min_size:
            perm = rng.permutation(N)
            return [np.sort(p).astype(np.int64) for p in np.split(perm, cuts)]
    raise ConfigError(
        f"quantity_skew partition with alpha={alpha}: no draw in {MAX_TRIES} seeds gave all "
        f"{n} nodes >= min_size={min_size} samples; raise alpha or lower min_size"
    )


def make_partition(
    name: str,
    labels: np.ndarray,
    n: int,
    *,
    seed: int = 0,
    alpha: float = 0.5,
    shards_per_node: int = 2,
    min_size: int = 10,
    group_size: int = GROUP_SIZE,
    min_fraction: float = 0.5,
    report: dict | None = None,
) -> list[np.ndarray]:
    """Partition ``name`` (one of :data:`PARTITIONS`) with the options it uses; ``report``
    (dirichlet kinds) receives the draws made and the kind drawn."""
    if name == "iid":
        return iid(labels, n, seed=seed)
    if name == "dirichlet":
        return dirichlet(labels, n, alpha=alpha, seed=seed, min_size=min_size, report=report)
    if name == "dirichlet_balanced":
        return dirichlet_balanced(labels, n, alpha=alpha, seed=seed, group_size=group_size,
                                  min_fraction=min_fraction, min_size=min_size, report=report)
    if name == "shards":
        return shards(labels, n, k=shards_per_node, seed=seed)
    if name == "quantity_skew":
        return quantity_skew(labels, n, alpha=alpha, seed=seed, min_size=min_size)
    raise unknown_name("partition", name, PARTITIONS)


def class_counts(parts: list[np.ndarray], labels: np.ndarray, classes: int) -> np.ndarray:
    """``(n, classes)`` int64: ``counts[i, c]`` = samples of class ``c`` on node ``i``."""
    labels = np.asarray(labels)
    return np.stack(
        [np.bincount(labels[p], minlength=classes)[:classes] for p in parts]
    ).astype(np.int64)
