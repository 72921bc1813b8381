"""Fashion-MNIST: synthetic idx directories, error messages, and the real files when present."""

from __future__ import annotations

import gzip
import logging
import os
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from equify.data import DEFAULT_FASHION_MNIST_ROOT, load_dataset, load_fashion_mnist, load_splits
from equify.data.fashion_mnist import FASHION_MNIST_FILES

from .test_idx import idx_bytes

logger = logging.getLogger(__name__)


def make_fake(root: Path, n_train: int = 30, n_test: int = 10, compress: bool = True) -> dict:
    rng = np.random.default_rng(0)
    data = {}
    root.mkdir(parents=True, exist_ok=True)
    for split, n in (("train", n_train), ("test", n_test)):
        images = rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
        labels = (np.arange(n) % 10).astype(np.uint8)
        for name, arr in zip(FASHION_MNIST_FILES[split], (images, labels), strict=True):
            raw = idx_bytes(arr)
            if compress:
                (root / name).write_bytes(gzip.compress(raw))
            else:
                (root / name.removesuffix(".gz")).write_bytes(raw)
        data[split] = (images, labels)
    return data


@pytest.mark.parametrize("compress", [True, False])
def test_loads_synthetic_files(tmp_path: Path, compress: bool) -> None:
    data = make_fake(tmp_path, compress=compress)
    train, test = load_fashion_mnist(tmp_path)
    for ds, (images, labels) in ((train, data["train"]), (test, data["test"])):
        assert ds.images.dtype == torch.float32 and ds.images.shape == (len(labels), 1, 28, 28)
        assert ds.labels.dtype == torch.int64
        assert torch.equal(ds.images[:, 0], torch.from_numpy(images).float() / 255)
        assert torch.equal(ds.labels, torch.from_numpy(labels).long())
        assert ds.classes[0] == "T-shirt/top" and ds.classes[9] == "Ankle boot"
    assert train.name == "fashion-mnist/train"


def test_missing_directory_says_where_and_how(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere"
    with pytest.raises(FileNotFoundError) as err:
        load_splits("fashion-mnist", root=missing)
    msg = str(err.value)
    assert str(missing) in msg
    assert "apt-get install dataset-fashion-mnist" in msg
    assert "root=" in msg and "train-images-idx3-ubyte.gz" in msg


def test_missing_file_says_which(tmp_path: Path) -> None:
    make_fake(tmp_path)
    (tmp_path / "t10k-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(FileNotFoundError) as err:
        load_fashion_mnist(tmp_path)
    msg = str(err.value)
    assert str(tmp_path / "t10k-labels-idx1-ubyte.gz") in msg
    assert str(tmp_path / "t10k-labels-idx1-ubyte") in msg
    assert "apt-get install dataset-fashion-mnist" in msg


def test_inconsistent_files_raise(tmp_path: Path) -> None:
    make_fake(tmp_path)
    (tmp_path / "train-labels-idx1-ubyte.gz").write_bytes(
        gzip.compress(idx_bytes(np.zeros(29, dtype=np.uint8)))
    )
    with pytest.raises(ValueError, match="30 images but .* 29 labels"):
        load_fashion_mnist(tmp_path)
    (tmp_path / "train-labels-idx1-ubyte.gz").write_bytes(
        gzip.compress(idx_bytes(np.full(30, 10, dtype=np.uint8)))
    )
    with pytest.raises(ValueError, match=r"labels must lie in \[0, 9\]"):
        load_fashion_mnist(tmp_path)
    (tmp_path / "train-labels-idx1-ubyte.gz").write_bytes(
        gzip.compress(idx_bytes(np.zeros((30, 28, 28), dtype=np.uint8)))
    )
    with pytest.raises(ValueError, match=r"labels of shape \(N,\)"):
        load_fashion_mnist(tmp_path)
    (tmp_path / "train-images-idx3-ubyte.gz").write_bytes(b"\x1f\x8b\x08\x00broken")
    with pytest.raises(ValueError, match="train-images-idx3-ubyte.gz"):
        load_fashion_mnist(tmp_path)


def test_fashion_mnist_has_an_official_split(tmp_path: Path) -> None:
    make_fake(tmp_path)
    with pytest.raises(ValueError, match="official"):
        load_splits("fashion-mnist", root=tmp_path, test_fraction=0.1)
    ds = load_dataset("fashion_mnist", "test", root=tmp_path, size=29, normalize=True)
    assert ds.image_shape == (1, 29, 29) and len(ds) == 10 and ds.normalization is not None


def _require_real() -> bool:
    return os.environ.get("EQUIFY_REQUIRE_FASHION_MNIST") == "1"


@pytest.fixture(scope="module")
def real_fashion_mnist():
    if not DEFAULT_FASHION_MNIST_ROOT.is_dir() and not _require_real():
        pytest.skip(
            f"{DEFAULT_FASHION_MNIST_ROOT} missing (apt-get install dataset-fashion-mnist); set "
            "EQUIFY_REQUIRE_FASHION_MNIST=1 to make this a failure"
        )
    t0 = time.perf_counter()
    splits = load_fashion_mnist()
    seconds = time.perf_counter() - t0
    logger.info("Fashion-MNIST loaded in %.2f s", seconds)
    return splits, seconds


def test_real_fashion_mnist(real_fashion_mnist) -> None:
    (train, test), seconds = real_fashion_mnist
    assert seconds < 30, f"loading took {seconds:.1f} s"
    assert train.images.shape == (60000, 1, 28, 28) and test.images.shape == (10000, 1, 28, 28)
    assert train.images.dtype == torch.float32 and train.labels.dtype == torch.int64
    assert float(train.images.min()) == 0.0 and float(train.images.max()) == 1.0
    assert train.class_counts().tolist() == [6000] * 10
    assert test.class_counts().tolist() == [1000] * 10
    # the first labels of the official files
    assert train.labels[:10].tolist() == [9, 0, 0, 3, 0, 2, 7, 2, 5, 5]
    assert test.labels[:10].tolist() == [9, 2, 1, 1, 6, 1, 4, 6, 5, 7]
    # pixel values are multiples of 1/255
    q = train.images[:100] * 255
    assert torch.allclose(q, q.round(), atol=1e-4)
