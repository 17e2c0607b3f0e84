"""Image classification with a data set partitioned over the nodes.

Node ``i`` holds the training samples ``D_i`` of a partition (``iid``, ``dirichlet``,
``dirichlet_balanced``, ``shards``, ``quantity_skew``; :mod:`gossip.data.partition`) and the
objective

    f_i(x) = 1/|D_i| sum_{(a, y) in D_i} CE(model(x; a), y) + weight_decay / 2 ||x||^2,

the global objective being ``f = 1/n sum_i f_i`` (Lian et al. 2017; Koloskova et al. 2020).
A stochastic gradient at step ``t`` uses node ``i``'s mini-batch ``t``: its samples
``t B .. t B + B - 1`` in a stream that visits ``D_i`` in a fresh random order every epoch,
``perm(seed, i, epoch)``. The stream depends on ``(seed, i, t)`` only, so the same seed gives
the same batches in process and over MPI, whatever the placement.
 Gradients of the hosted block are computed for all its nodes at once
(:mod:`gossip.problems.classification.backends`: fused batched matmuls for mlp/logreg, ``vmap`` for
other models) when the model allows it, else
in a loop. Data is normalised once and kept on ``device``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch.nn import functional as F

from gossip.comm.device import upload
from gossip.data.partition import PARTITIONS, class_counts, make_partition
from gossip.data.registry import DATASETS, load_dataset, normalize
from gossip.errors import ConfigError
from gossip.models.flat import layout_of, model_vector
from gossip.models.registry import MODELS, make_model, model_options
from gossip.options import at_least, non_negative, positive
from gossip.problems.base import PROBLEMS, Problem, register_problem
from gossip.problems.classification.grads import BACKENDS, choose_backend
from gossip.registry import option

__all__ = ["ClassificationConfig", "ClassificationProblem", "make_classification_problem"]


def _below_one(v) -> str | None:
    return None if 0 <= v < 1 else "must be in [0, 1)"


def _widths(v) -> str | None:
    return None if all(isinstance(h, int) and h >= 1 for h in v) else "must be positive integers"


@dataclass(frozen=True)
class ClassificationConfig:
    """``[problem]`` keys of ``classification`` (``[data]`` and ``[model]`` keys fold in)."""

    dataset: str = option("mnist", "data set", choices=DATASETS)
    root: str | None = option(None, "folder of the data set files (mnist: bundled copy when "
                              "unset)")
    partition: str = option("dirichlet", "how the training set is split", choices=PARTITIONS)
    alpha: float = option(0.1, "Dirichlet concentration (dirichlet, quantity_skew)",
                          check=positive)
    shards_per_node: int = option(2, "classes per node (shards)", check=at_least(1))
    min_size: int = option(10, "least samples per node (dirichlet, dirichlet_balanced, "
                           "quantity_skew)", check=non_negative)
    group_size: int = option(10, "nodes per group, each group splitting its own share of the "
                             "data (dirichlet_balanced)", check=at_least(1))
    min_fraction: float = option(0.5, "least samples per node relative to its group's mean "
                                 "(dirichlet_balanced)", check=_below_one)
    batch_size: int = option(32, "mini-batch size per node and step (at most the largest "
                             "node's sample count; a smaller node wraps into its next epoch)",
                             check=at_least(1))
    model: str = option("mlp", "network", choices=MODELS)
    hidden: list[int] = option([128], "hidden widths (mlp)", check=_widths)
    groups: int = option(2, "GroupNorm groups (resnet20)", check=positive)
    backend: str = option("auto", "local gradients: fused (Linear/ReLU chains), vmap over "
                          "nodes, loop, or auto", choices=BACKENDS)
    test_subset: int = option(0, "evaluate on at most this many test samples (0: all)",
                              check=non_negative)
    eval_nodes: int = option(0, "nodes whose own models are evaluated (0: all)",
                             check=non_negative)
    weight_decay: float = option(0.0, "L2 penalty weight_decay / 2 ||x||^2",
                                 check=non_negative)

EVAL_CHUNK = 2048
#: Samples per gradient call of :meth:`ClassificationProblem.full_gradients`.
FULL_CHUNK = 4096


@register_problem("classification", ClassificationConfig)
class ClassificationProblem(Problem):
    """Classification of ``dataset`` by ``model``, the training set split over ``n`` nodes."""

    HAS_FULL_GRADIENTS = True

    def __init__(
        self,
        cfg: ClassificationConfig,
        *,
        n: int,
        seed: int = 0,
        device: torch.device | str = "cpu",
        dtype: torch.dtype = torch.float32,
    ) -> None:
        batch_size, weight_decay, partition = cfg.batch_size, cfg.weight_decay, cfg.partition
        alpha, shards_per_node, min_size = cfg.alpha, cfg.shards_per_node, cfg.min_size
        test_subset, eval_nodes, model = cfg.test_subset, cfg.eval_nodes, cfg.model
        self.n, self.seed, self.batch_size = n, seed, batch_size
        self.weight_decay = weight_decay
        self.device, self.dtype = torch.device(device), dtype
        ds = load_dataset(cfg.dataset, cfg.root, seed=seed)
        self.info = ds.info
        self.classes = int(ds.info["classes"])
        self.input_shape = tuple(ds.info["shape"])
        labels = ds.train_y.numpy()
        drawn: dict = {}
        self.parts = make_partition(
            partition, labels, n, seed=seed, alpha=alpha,
            shards_per_node=shards_per_node, min_size=min_size,
            group_size=cfg.group_size, min_fraction=cfg.min_fraction, report=drawn,
        )
        largest = max(len(part) for part in self.parts)
        if batch_size > largest:
            raise ConfigError(
                f"problem.batch_size={batch_size} is more than any node holds (the largest of "
                f"the {n} nodes has {largest} training samples with partition={partition!r}); "
                f"it must be in [1, {largest}]"
            )
        self._counts = class_counts(self.parts, labels, self.classes)
        self.partition = {"name": partition, "alpha": alpha, "shards_per_node": shards_per_node,
                          "min_size": min_size, **drawn}
        if partition == "dirichlet_balanced":
            self.partition.update(group_size=cfg.group_size, min_fraction=cfg.min_fraction)
        self.train_x = normalize(ds.train_x, ds.info, device=self.device, dtype=dtype)
        self.train_y = ds.train_y.to(self.device)
        test = np.arange(len(ds.test_y))
        if 0 < test_subset < len(test):
            rng = np.random.default_rng(np.random.SeedSequence([seed, 0x7E57]))
            test = np.sort(rng.choice(len(test), size=test_subset, replace=False))
        t = torch.from_numpy(test)
        self.test_x = normalize(ds.test_x[t], ds.info, device=self.device, dtype=dtype)
        self.test_y = ds.test_y[t].to(self.device)
        k = n if eval_nodes == 0 else min(eval_nodes, n)
        self.eval_ids = np.unique(np.linspace(0, n - 1, k).round().astype(np.int64))

        self.model_name = model
        given = {"hidden": list(cfg.hidden), "groups": cfg.groups}
        self.model_options = {o.name: given[o.name] for o in model_options(model)}
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            net = make_model(model, self.input_shape, self.classes, self.model_options)
        self.model = net.to(device=self.device, dtype=dtype)
        for p in self.model.parameters():
            p.requires_grad_(False)
        self.layout = layout_of(self.model)
        self.dim = sum(int(np.prod(s)) for _, s in self.layout)
        self._x0 = model_vector(self.model)
        self.backend = choose_backend(self.model, self.input_shape, self.classes,
                                      prefer=cfg.backend)
        self._perms: dict[int, dict[int, np.ndarray]] = {}
        self.steps_done = 0

    # -- data streams ----------------------------------------------------------------------
    def _perm(self, node: int, epoch: int) -> np.ndarray:
        cache = self._perms.setdefault(node, {})
        if epoch not in cache:
            if len(cache) >= 2:
                cache.pop(min(cache))
            rng = np.random.default_rng(np.random.SeedSequence([self.seed, node, epoch, 0xBA7C]))
            cache[epoch] = rng.permutation(len(self.parts[node]))
        return cache[epoch]

    def batch_indices(self, node: int, step: int) -> np.ndarray:
        """Training-set indices of node ``node``'s mini-batch at step ``step`` ``(B,)``.

        Sample ``s`` of the node's stream (``s = step B + k``) is
        ``D_i[perm(seed, i, s // |D_i|)[s mod |D_i|]]``.
        """
        part = self.parts[node]
        s = np.arange(step * self.batch_size, (step + 1) * self.batch_size)
        epochs, pos = np.divmod(s, len(part))
        out = np.empty(self.batch_size, dtype=np.int64)
        for e in np.unique(epochs):
            sel = epochs == e
            out[sel] = part[self._perm(node, int(e))[pos[sel]]]
        return out

    # -- Problem interface ---------------------------------------------------------------
    def init_params(self, nodes: range) -> torch.Tensor:
        """Every node starts from the same model, initialised from ``seed``."""
        return self._x0.expand(len(nodes), self.dim).clone()

    def gradients(
        self, X: torch.Tensor, nodes: range, step: int
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``G`` ``(b, dim)`` and mini-batch losses ``(b,)`` (cross-entropy, without the L2
        term) of the hosted nodes at step ``step``."""
        idx = np.stack([self.batch_indices(i, step) for i in nodes])
        idx_t = upload(torch.from_numpy(idx), self.device)  # no host sync on a GPU
        G, losses = self.backend.grads(self.model, X, self.train_x[idx_t], self.train_y[idx_t])
        if self.weight_decay:
            G = G + self.weight_decay * X
        self.steps_done = step + 1
        return G, losses

    def full_gradients(self, X: torch.Tensor, nodes: range) -> tuple[torch.Tensor, torch.Tensor]:
        """``grad f_i(x_i)`` over node ``i``'s whole training set ``D_i`` (in chunks of
        ``FULL_CHUNK`` samples, weighted by their size; one pass over ``D_i``) and the mean
        cross-entropy there (without the L2 term)."""
        G = torch.zeros_like(X)
        losses = torch.zeros(len(nodes), dtype=X.dtype, device=X.device)
        for k, i in enumerate(nodes):
            part = torch.from_numpy(self.parts[i]).to(self.device)
            for a in range(0, len(part), FULL_CHUNK):
                idx = part[a : a + FULL_CHUNK]
                g, loss = self.backend.grads(self.model, X[k : k + 1],
                                             self.train_x[idx][None], self.train_y[idx][None])
                w = len(idx) / len(part)
                G[k] += w * g[0]
                losses[k] += w * loss[0]
        if self.weight_decay:
            G = G + self.weight_decay * X
        return G, losses

    def _test_logits(self, X: torch.Tensor):
        for a in range(0, len(self.test_y), EVAL_CHUNK):
            yield (self.backend.logits(self.model, X, self.test_x[a : a + EVAL_CHUNK]),
                   self.test_y[a : a + EVAL_CHUNK])

    def evaluate(self, X: torch.Tensor, comm) -> dict[str, float]:
        """Collective. ``test_accuracy`` / ``test_loss`` of ``x_bar = 1/n sum_i x_i``,
        ``test_accuracy_nodes`` = mean test accuracy of the models ``x_i`` of the evaluated
        nodes (under an ``[attack]`` both over the honest nodes ``self.honest`` only),
        ``epoch`` = samples drawn per node / mean local data size."""
        nodes = comm.nodes
        evaluated = self.eval_ids
        if self.honest is None:
            x_bar = comm.mean_rows(X)
        else:  # under an [attack]: the honest nodes' mean and models only
            H = self.honest
            mask = torch.zeros(len(nodes), dtype=torch.bool, device=X.device)
            mask[torch.as_tensor(H[(H >= nodes.start) & (H < nodes.stop)] - nodes.start)] = True
            x_bar = comm.sum_rows(X, mask) / len(H)
            evaluated = np.intersect1d(evaluated, H)
        correct = loss = 0.0
        for logits, y in self._test_logits(x_bar[None]):
            correct += (logits[0].argmax(1) == y).sum().item()
            loss += F.cross_entropy(logits[0], y, reduction="sum").item()
        m = len(self.test_y)
        hosted = evaluated[(evaluated >= nodes.start) & (evaluated < nodes.stop)]
        node_correct = torch.zeros((), dtype=torch.float64, device=X.device)
        if len(hosted):
            rows = X[torch.from_numpy(hosted - nodes.start).to(X.device)]
            for logits, y in self._test_logits(rows):
                node_correct += (logits.argmax(2) == y).sum()
        node_correct = comm.allreduce_sum(node_correct.reshape(1)).item()
        return {
            "test_accuracy": correct / m,
            "test_loss": loss / m,
            "test_accuracy_nodes": node_correct / (m * len(evaluated)),
            "epoch": self.steps_done * self.batch_size * self.n / len(self.train_y),
        }

    def partition_table(self) -> np.ndarray:
        """``(n, classes)`` int64: training samples of each class on each node."""
        return self._counts.copy()

    def describe(self) -> dict:
        return {
            "dim": self.dim,
            "dataset": self.info["name"],
            "classes": self.classes,
            "train_samples": int(len(self.train_y)),
            "test_samples": int(len(self.test_y)),
            "partition": {**self.partition,
                          "sizes": [int(len(p)) for p in self.parts],
                          "class_counts": self._counts.tolist()},
            "model": self.model_name,
            "model_options": self.model_options,
            "parameters": self.dim,
            "batch_size": self.batch_size,
            "backend": self.backend.name,
            "backend_reason": self.backend.reason,
            "eval_nodes": [int(i) for i in self.eval_ids],
        }


def make_classification_problem(
    options: dict[str, Any],
    *,
    n: int,
    seed: int = 0,
    device: torch.device | str = "cpu",
    dtype: torch.dtype = torch.float32,
) -> ClassificationProblem:
    """:class:`ClassificationProblem` from a ``[problem]`` section (without ``name``)."""
    cfg = PROBLEMS.config("classification", options)
    return ClassificationProblem(cfg, n=n, seed=seed, device=device, dtype=dtype)
