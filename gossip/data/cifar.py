"""CIFAR-10 from the python batches (Krizhevsky 2009).

The folder (``cifar-10-batches-py`` as extracted from ``cifar-10-python.tar.gz``, or its parent)
holds the pickled ``data_batch_1`` ... ``data_batch_5`` and ``test_batch``; each is a dict with
``b"data"`` (``(10000, 3072)`` uint8, channel-major 32x32 images) and ``b"labels"``.

The batches are read with :class:`BatchUnpickler`, which admits only what that format holds
(dicts, lists, numbers, bytes/str and NumPy arrays), so a crafted file cannot run code.
"""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import torch

from gossip.errors import DataError

__all__ = ["CIFAR_FILES", "BatchUnpickler", "load_cifar10"]

CIFAR_FILES = tuple(f"data_batch_{i}" for i in range(1, 6)) + ("test_batch",)
MEAN = (0.4914, 0.4822, 0.4465)
STD = (0.2470, 0.2435, 0.2616)


#: The globals a CIFAR-10 python batch refers to: a NumPy array's reconstruction (the module
#: is ``numpy.core`` for files pickled by NumPy 1, ``numpy._core`` by NumPy 2).
ALLOWED_GLOBALS = frozenset({
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
})


class BatchUnpickler(pickle.Unpickler):
    """An unpickler that refuses every global outside :data:`ALLOWED_GLOBALS` (built-in
    containers, numbers, bytes and str need none), so loading cannot call arbitrary code."""

    def find_class(self, module: str, name: str):
        if (module, name) not in ALLOWED_GLOBALS:
            raise pickle.UnpicklingError(
                f"refused global {module}.{name} (a CIFAR-10 batch holds only dicts, lists, "
                "bytes and NumPy arrays)")
        return super().find_class(module, name)


def _read_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    try:
        with path.open("rb") as f:
            d = BatchUnpickler(f, encoding="bytes").load()
    except (OSError, pickle.UnpicklingError, EOFError, ValueError, TypeError) as e:
        raise DataError(f"{path} is not a CIFAR-10 python batch: {e}") from None
    if not isinstance(d, dict):
        raise DataError(f"{path} is not a CIFAR-10 python batch (not a dict)")
    data = d.get(b"data", d.get("data"))
    labels = d.get(b"labels", d.get("labels"))
    if data is None or labels is None:
        raise DataError(f"{path} is not a CIFAR-10 python batch (needs keys data and labels)")
    data = np.asarray(data, dtype=np.uint8)
    labels = np.asarray(labels, dtype=np.int64)
    if data.ndim != 2 or data.shape[1] != 3072 or data.shape[0] != labels.shape[0]:
        raise DataError(
            f"{path} is malformed: data {data.shape} and labels {labels.shape} "
            "(need (N, 3072) and (N,))"
        )
    return data.reshape(-1, 3, 32, 32), labels


def load_cifar10(root: str | Path):
    """``(train_x, train_y, test_x, test_y, info)``: uint8 ``(N, 3, 32, 32)`` images, int64 labels.

    Raises
    ------
    DataError
        Missing folder or batch file, or a batch that is not a CIFAR-10 python batch.
    """
    root = Path(root).expanduser()
    if (root / "cifar-10-batches-py").is_dir():
        root = root / "cifar-10-batches-py"
    need = ", ".join(CIFAR_FILES)
    if not root.is_dir():
        raise DataError(f"cifar10 folder {root} does not exist; it needs {need}")
    missing = [f for f in CIFAR_FILES if not (root / f).is_file()]
    if missing:
        raise DataError(f"cifar10 folder {root} lacks {', '.join(missing)}; it needs {need}")
    train = [_read_batch(root / f) for f in CIFAR_FILES[:5]]
    test_x, test_y = _read_batch(root / "test_batch")
    train_x = np.concatenate([x for x, _ in train])
    train_y = np.concatenate([y for _, y in train])
    info = {
        "name": "cifar10",
        "classes": 10,
        "shape": (3, 32, 32),
        "mean": MEAN,
        "std": STD,
        "root": str(root),
    }
    return (
        torch.from_numpy(train_x),
        torch.from_numpy(train_y),
        torch.from_numpy(test_x),
        torch.from_numpy(test_y),
        info,
    )
