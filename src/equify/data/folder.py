"""Images on disk, one sub-folder per class (the ImageFolder layout), read with Pillow.

Layouts (class names are the sub-folder names, sorted; label ``k`` is the k-th name):

* ``root/<class>/<images>``: one pool, split by :func:`~equify.data.splits.stratified_split`
  (``test_fraction``, default 0.2, and ``seed``);
* ``root/train/<class>/<images>`` and ``root/test/<class>/<images>``: the given split (the class
  list is the union of both sides).

Images are searched recursively inside each class folder; files whose extension is not one of
:data:`IMAGE_EXTENSIONS` and hidden files are skipped. A file with an image extension that Pillow
cannot read is an error naming the file.

Sizes: without ``size`` every image must have the same size (a ValueError names two files that
differ); with ``size`` every image is brought to it, by zero-padding (``fit="pad"``) or by
bilinear, antialiased resizing (``fit="resize"``).
"""

from __future__ import annotations

import logging
import os
from collections import defaultdict
from pathlib import Path

import numpy as np
import torch

from equify.data._optional import import_optional
from equify.data.bundled import split_arrays
from equify.data.dataset import DatasetSplits, ImageDataset
from equify.data.splits import DEFAULT_TEST_FRACTION, check_test_fraction
from equify.data.transforms import FITS, fit_to_size, parse_size

__all__ = ["COLORS", "IMAGE_EXTENSIONS", "load_image_folder"]

logger = logging.getLogger(__name__)

#: File extensions read as images (lower case).
IMAGE_EXTENSIONS = (
    ".bmp",
    ".gif",
    ".jpeg",
    ".jpg",
    ".pgm",
    ".png",
    ".ppm",
    ".tif",
    ".tiff",
    ".webp",
)
#: Colour modes: ``"grayscale"`` gives 1 channel (Pillow mode ``L``), ``"rgb"`` 3 channels.
COLORS = ("grayscale", "rgb")


def _class_dirs(root: Path) -> dict[str, Path]:
    dirs = {p.name: p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")}
    if not dirs:
        raise ValueError(
            f"no class sub-folders in {root}: expected one sub-folder per class "
            "(root/<class>/<image files>), optionally under root/train and root/test"
        )
    return dict(sorted(dirs.items()))


def _image_files(class_dir: Path) -> list[Path]:
    files = []
    for p in sorted(class_dir.rglob("*")):
        if not p.is_file() or any(part.startswith(".") for part in p.relative_to(class_dir).parts):
            continue
        if p.suffix.lower() in IMAGE_EXTENSIONS:
            files.append(p)
        else:
            logger.debug("skipping %s: not an image extension", p)
    if not files:
        raise ValueError(
            f"class folder {class_dir} holds no image files "
            f"(extensions {', '.join(IMAGE_EXTENSIONS)})"
        )
    return files


def _read_image(path: Path, mode: str) -> np.ndarray:
    image_mod = import_optional("PIL.Image", "pillow", "the 'folder' dataset")
    try:
        with image_mod.open(path) as img:
            img.load()
            arr = np.asarray(img.convert(mode), dtype=np.uint8)
    except (OSError, SyntaxError, ValueError) as err:  # UnidentifiedImageError is an OSError
        raise ValueError(f"cannot read image file {path}: {err}") from err
    return arr[:, :, None] if arr.ndim == 2 else arr


def _stack(
    arrays: list[np.ndarray], files: list[Path], size: tuple[int, int] | None, fit: str
) -> torch.Tensor:
    """``(N, C, H, W)`` float32 in [0, 1]; same-size images are fitted together."""
    by_size: dict[tuple[int, int], list[int]] = defaultdict(list)
    for i, a in enumerate(arrays):
        by_size[a.shape[:2]].append(i)
    if size is None and len(by_size) > 1:
        (s0, i0), (s1, i1) = [(s, idx[0]) for s, idx in list(by_size.items())[:2]]
        raise ValueError(
            f"images differ in size: {files[i0]} is {s0[0]}x{s0[1]} (HxW) but {files[i1]} is "
            f"{s1[0]}x{s1[1]}; pass size=(H, W) (with fit='resize' or 'pad') to bring them to one "
            "(in the equify command: --set data.size=H --fit resize)"
        )
    fitted: list[tuple[list[int], torch.Tensor]] = []
    for idx in by_size.values():
        group = torch.from_numpy(np.stack([arrays[i] for i in idx]))
        group = group.permute(0, 3, 1, 2).float().div_(255.0)
        try:
            fitted.append((idx, fit_to_size(group, size, fit)))
        except ValueError as err:
            raise ValueError(f"{files[idx[0]]} and others of its size: {err}") from err
    out = torch.empty(len(arrays), *fitted[0][1].shape[1:])
    for idx, group in fitted:
        out[torch.tensor(idx)] = group
    return out


def _read_tree(
    root: Path, classes: list[str], mode: str, size: tuple[int, int] | None, fit: str
) -> tuple[torch.Tensor, torch.Tensor]:
    arrays: list[np.ndarray] = []
    files: list[Path] = []
    labels: list[int] = []
    for label, name in enumerate(classes):
        d = root / name
        if not d.is_dir():
            logger.warning("class %r has no folder in %s", name, root)
            continue
        for f in _image_files(d):
            arrays.append(_read_image(f, mode))
            files.append(f)
            labels.append(label)
    if not arrays:
        raise ValueError(f"no images found under {root}")
    return _stack(arrays, files, size, fit), torch.tensor(labels, dtype=torch.long)


def load_image_folder(
    root: str | os.PathLike,
    color: str = "rgb",
    size: int | tuple[int, int] | None = None,
    fit: str = "pad",
    test_fraction: float | None = None,
    seed: int = 0,
) -> DatasetSplits:
    """Load a directory of class sub-folders (see the module docstring for layouts and sizes).

    Args:
        root: the directory.
        color: ``"rgb"`` (3 channels) or ``"grayscale"`` (1 channel); every image is converted.
        size: common size ``(H, W)`` (or an int) to bring every image to; None requires all
            images to share one size.
        fit: ``"pad"`` or ``"resize"``, how images reach ``size``.
        test_fraction: test fraction of the seeded split when there are no ``train``/``test``
            sub-folders (default 0.2); must stay None when there are.
        seed: seed of that split.

    Returns:
        :class:`DatasetSplits` of float32 ``(N, C, H, W)`` images in ``[0, 1]``.

    Raises:
        FileNotFoundError: ``root`` does not exist.
        ValueError: no class folders or images, an unreadable image, differing sizes without
            ``size``, a bad option.
        ImportError: Pillow is not installed (``pip install "equify[data]"``).
    """
    if color not in COLORS:
        raise ValueError(f"color must be one of {COLORS}, got {color!r}")
    if fit not in FITS:
        raise ValueError(f"fit must be one of {FITS}, got {fit!r}")
    hw = parse_size(size) if size is not None else None
    r = Path(root)
    if not r.is_dir():
        raise FileNotFoundError(
            f"image folder not found: looked in {r.resolve()}; expected root/<class>/<images> "
            "or root/train/<class>/... and root/test/<class>/..."
        )
    mode = "L" if color == "grayscale" else "RGB"
    name = f"folder:{r.name}"
    has_train, has_test = (r / "train").is_dir(), (r / "test").is_dir()
    if has_train != has_test:
        present, missing = ("train", "test") if has_train else ("test", "train")
        raise ValueError(
            f"{r} has a {present}/ sub-folder but no {missing}/: give both (each with one "
            "sub-folder per class) or neither (class sub-folders directly under root)"
        )
    if has_train:
        if test_fraction is not None:
            raise ValueError(
                f"{r} has train/ and test/ sub-folders, which fix the split: leave test_fraction "
                f"None (got {test_fraction})"
            )
        train_classes = _class_dirs(r / "train")
        test_classes = _class_dirs(r / "test")
        if set(train_classes) != set(test_classes):
            logger.warning(
                "train/ and test/ of %s have different class folders: %s vs %s",
                r,
                sorted(train_classes),
                sorted(test_classes),
            )
        classes = sorted(set(train_classes) | set(test_classes))
        x_tr, y_tr = _read_tree(r / "train", classes, mode, hw, fit)
        x_te, y_te = _read_tree(r / "test", classes, mode, hw, fit)
        if hw is None and x_tr.shape[-2:] != x_te.shape[-2:]:
            raise ValueError(
                f"train images are {tuple(x_tr.shape[-2:])} but test images "
                f"{tuple(x_te.shape[-2:])} (HxW); pass size=(H, W) to bring them to one"
            )
        return DatasetSplits(
            ImageDataset(x_tr, y_tr, classes, f"{name}/train"),
            ImageDataset(x_te, y_te, classes, f"{name}/test"),
        )
    tf = DEFAULT_TEST_FRACTION if test_fraction is None else check_test_fraction(test_fraction)
    classes = list(_class_dirs(r))
    x, y = _read_tree(r, classes, mode, hw, fit)
    return split_arrays(x, y, classes, name, tf, seed)
