"""Fashion-MNIST (Xiao et al. 2017), the full 60k/10k set, read from the standard idx files.

No download: the four files must be on disk, by default where the Debian package
``dataset-fashion-mnist`` installs them (:data:`DEFAULT_FASHION_MNIST_ROOT`).
"""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path

import numpy as np
import torch

from equify.data.dataset import DatasetSplits, ImageDataset
from equify.data.idx import read_idx

__all__ = [
    "DEFAULT_FASHION_MNIST_ROOT",
    "FASHION_MNIST_CLASSES",
    "FASHION_MNIST_FILES",
    "load_fashion_mnist",
]

logger = logging.getLogger(__name__)

#: Where ``apt-get install dataset-fashion-mnist`` puts the idx files.
DEFAULT_FASHION_MNIST_ROOT = Path("/usr/share/datasets/fashion-mnist")

#: Split -> (images file, labels file); each may also be present without the ``.gz``.
FASHION_MNIST_FILES = {
    "train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
    "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"),
}

FASHION_MNIST_CLASSES = (
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
)

_HOW_TO_GET = (
    "Install them with `apt-get install dataset-fashion-mnist` (Debian/Ubuntu; they land in "
    f"{DEFAULT_FASHION_MNIST_ROOT}), or download the four idx .gz files "
    "(train-images-idx3-ubyte.gz, train-labels-idx1-ubyte.gz, t10k-images-idx3-ubyte.gz, "
    "t10k-labels-idx1-ubyte.gz) from the Fashion-MNIST project "
    "(https://github.com/zalandoresearch/fashion-mnist) into a directory and pass root=<dir>."
)


def _find(root: Path, gz_name: str) -> Path:
    """The ``.gz`` file or its uncompressed twin in ``root``."""
    candidates = [root / gz_name, root / gz_name.removesuffix(".gz")]
    for c in candidates:
        if c.is_file():
            return c
    raise FileNotFoundError(
        f"Fashion-MNIST file not found: looked for {candidates[0]} and {candidates[1]}. "
        + _HOW_TO_GET
    )


def _read_split(root: Path, split: str) -> ImageDataset:
    img_name, lab_name = FASHION_MNIST_FILES[split]
    img_path, lab_path = _find(root, img_name), _find(root, lab_name)
    images = read_idx(img_path)
    labels = read_idx(lab_path)
    if images.dtype != np.uint8 or images.ndim != 3:
        raise ValueError(
            f"{img_path}: expected uint8 images of shape (N, H, W), got {images.dtype} "
            f"{images.shape}"
        )
    if labels.dtype != np.uint8 or labels.ndim != 1:
        raise ValueError(
            f"{lab_path}: expected uint8 labels of shape (N,), got {labels.dtype} {labels.shape}"
        )
    if labels.shape[0] != images.shape[0]:
        raise ValueError(
            f"{img_path} holds {images.shape[0]} images but {lab_path} {labels.shape[0]} labels"
        )
    if labels.size and int(labels.max()) >= len(FASHION_MNIST_CLASSES):
        raise ValueError(f"{lab_path}: labels must lie in [0, 9], found {int(labels.max())}")
    # One float32 copy; the division runs in place on that copy.
    x = torch.from_numpy(images.astype(np.float32)).div_(255.0).unsqueeze(1)
    y = torch.from_numpy(labels.astype(np.int64))
    return ImageDataset(x, y, FASHION_MNIST_CLASSES, name=f"fashion-mnist/{split}")


def load_fashion_mnist(root: str | os.PathLike | None = None) -> DatasetSplits:
    """Fashion-MNIST's official splits: 60,000 train and 10,000 test images, 10 classes.

    Args:
        root: directory holding the four idx files (``.gz`` or uncompressed); default
            :data:`DEFAULT_FASHION_MNIST_ROOT`.

    Returns:
        :class:`DatasetSplits` of ``(N, 1, 28, 28)`` float32 images in ``[0, 1]``.

    Raises:
        FileNotFoundError: a missing directory or file; the message says where it looked and how
            to get the files.
        ValueError: a corrupt or inconsistent file.
    """
    r = Path(root) if root is not None else DEFAULT_FASHION_MNIST_ROOT
    if not r.is_dir():
        raise FileNotFoundError(f"Fashion-MNIST directory not found: looked in {r}. " + _HOW_TO_GET)
    t0 = time.perf_counter()
    splits = DatasetSplits(_read_split(r, "train"), _read_split(r, "test"))
    logger.info("loaded Fashion-MNIST from %s in %.2f s", r, time.perf_counter() - t0)
    return splits
