"""Seeded, stratified train/test splits shared by every data source.

Convention:
    For each class ``c`` with ``n_c`` samples, ``round(test_fraction * n_c)`` samples go to the
    test split, clamped to ``[1, n_c - 1]`` when ``n_c >= 2`` so that both splits see every class
    (a class with a single sample stays in train). Which samples go where is drawn from a
    ``torch.Generator`` seeded with ``seed``: the same labels and seed give the same split on every
    machine. The returned indices are in a seeded random order (not sorted), so that any prefix of
    a split is roughly class-balanced even when the source is sorted by class.
"""

from __future__ import annotations

import logging
import zlib
from collections.abc import Sequence

import numpy as np
import torch

__all__ = ["DEFAULT_TEST_FRACTION", "derive_seed", "stratified_split"]

logger = logging.getLogger(__name__)

#: Test fraction of the sources without an official split (``mnist``, ``digits``, ``folder``).
DEFAULT_TEST_FRACTION = 0.2


def check_seed(seed: object) -> int:
    """Return ``seed`` if it is a non-negative int, else raise TypeError/ValueError."""
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise TypeError(f"expected seed as an int, got {type(seed).__name__}")
    if seed < 0:
        raise ValueError(f"expected a non-negative seed, got {seed}")
    return seed


def check_test_fraction(test_fraction: object) -> float:
    """Return ``test_fraction`` as a float in ``(0, 1)``, else raise TypeError/ValueError."""
    if isinstance(test_fraction, bool) or not isinstance(test_fraction, int | float):
        raise TypeError(f"expected test_fraction as a float, got {type(test_fraction).__name__}")
    f = float(test_fraction)
    if not 0.0 < f < 1.0:
        raise ValueError(f"expected test_fraction strictly between 0 and 1, got {test_fraction}")
    return f


def derive_seed(seed: int, *tags: str) -> int:
    """A stable 63-bit seed derived from ``seed`` and string tags (independent random streams).

    Unlike Python's ``hash`` it is the same in every process.
    """
    check_seed(seed)
    h = zlib.crc32(str(seed).encode())
    for tag in tags:
        h = zlib.crc32(tag.encode(), h)
    return (seed * 0x9E3779B1 + h) % (2**63 - 1)


def _labels_as_numpy(labels: object) -> np.ndarray:
    if isinstance(labels, torch.Tensor):
        if labels.dtype.is_floating_point or labels.dtype.is_complex or labels.dtype == torch.bool:
            raise TypeError(f"expected integer labels, got a tensor of dtype {labels.dtype}")
        arr = labels.detach().cpu().numpy()
    elif isinstance(labels, np.ndarray | Sequence):
        arr = np.asarray(labels)
        if arr.size and not np.issubdtype(arr.dtype, np.integer):
            raise TypeError(f"expected integer labels, got an array of dtype {arr.dtype}")
    else:
        raise TypeError(f"expected labels as a tensor, array or list, got {type(labels).__name__}")
    if arr.ndim != 1:
        raise ValueError(f"expected labels of shape (N,), got shape {arr.shape}")
    return arr.astype(np.int64, copy=False)


def stratified_split(
    labels: torch.Tensor | np.ndarray | Sequence[int],
    test_fraction: float = DEFAULT_TEST_FRACTION,
    seed: int = 0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Split sample indices into train and test, keeping each class's proportion.

    Args:
        labels: ``(N,)`` integer class labels.
        test_fraction: fraction of each class that goes to the test split, in ``(0, 1)``.
        seed: seed of the draw (see the module's Convention).

    Returns:
        ``(train_idx, test_idx)``: LongTensors of indices into ``labels``, disjoint, together
        covering ``range(N)``, each in a seeded random order.

    Raises:
        TypeError: labels that are not integers, a seed that is not an int.
        ValueError: labels not of shape ``(N,)``, a fraction outside ``(0, 1)``.

    Example:
        >>> train, test = stratified_split([0, 0, 0, 0, 1, 1, 1, 1], 0.25, seed=0)
        >>> len(train), len(test)
        (6, 2)
    """
    arr = _labels_as_numpy(labels)
    f = check_test_fraction(test_fraction)
    gen = torch.Generator().manual_seed(derive_seed(seed, "stratified_split"))
    train_parts, test_parts = [], []
    for c in np.unique(arr):
        idx = torch.from_numpy(np.flatnonzero(arr == c))
        n = idx.numel()
        n_test = round(f * n)
        if n >= 2:
            n_test = min(max(n_test, 1), n - 1)
        else:
            n_test = 0
            logger.warning("class %d has a single sample: it goes to the train split", int(c))
        perm = idx[torch.randperm(n, generator=gen)]
        test_parts.append(perm[:n_test])
        train_parts.append(perm[n_test:])
    empty = torch.zeros(0, dtype=torch.long)
    train = torch.cat(train_parts) if train_parts else empty
    test = torch.cat(test_parts) if test_parts else empty
    train = train[torch.randperm(train.numel(), generator=gen)]
    test = test[torch.randperm(test.numel(), generator=gen)]
    return train, test
