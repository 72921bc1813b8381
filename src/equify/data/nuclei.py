"""Real fluorescence nuclei with hand-drawn instance masks: the 2-D example image of StarDist.

The PyPI package ``stardist`` (Schmidt et al. 2018) ships a 512x512 uint16 fluorescence image
of cell nuclei (``data/images/img2d.tif``) and its instance annotation (``mask2d.tif``: 0 is
the background, each nucleus has its own id). equify only reads the two files with
``tifffile``; it never imports ``stardist`` (which needs numba and csbdeep), so the package can
be installed without its dependencies::

    pip install --no-deps stardist==0.9.2 tifffile

Tiles split the image by region, not at random: the rightmost vertical strip is the test
region, the rest the train region, and no tile of one split shares a pixel with the other.
"""

from __future__ import annotations

import importlib.util
import logging
from pathlib import Path

import numpy as np
import torch

from equify.data.segmentation import SegmentationDataset, SegmentationSplits

__all__ = [
    "NUCLEI_CLASSES",
    "NUCLEI_INSTALL",
    "load_nuclei_image",
    "load_nuclei_tiles",
    "nuclei_files",
]

logger = logging.getLogger(__name__)

#: How to install the files' package and their reader.
NUCLEI_INSTALL = "pip install --no-deps stardist==0.9.2 tifffile"

#: Class names of the nuclei tiles.
NUCLEI_CLASSES = ("background", "nucleus")

#: Percentiles that map the fluorescence to ``[0, 1]`` (clipped outside).
NORMALIZATION_PERCENTILES = (1.0, 99.8)


def nuclei_files() -> tuple[Path, Path]:
    """Paths of StarDist's 2-D example image and its instance mask.

    Returns:
        ``(image_path, mask_path)``: ``.../stardist/data/images/img2d.tif`` and ``mask2d.tif``.

    Raises:
        ImportError: ``stardist`` is not installed (the message gives the pip command).
        FileNotFoundError: the package is there but the files are not.
    """
    spec = importlib.util.find_spec("stardist")
    if spec is None or spec.origin is None:
        raise ImportError(
            f"the nuclei dataset needs the files of the package 'stardist', which is not "
            f"installed: {NUCLEI_INSTALL}"
        )
    folder = Path(spec.origin).parent / "data" / "images"
    paths = (folder / "img2d.tif", folder / "mask2d.tif")
    for p in paths:
        if not p.is_file():
            raise FileNotFoundError(
                f"StarDist's example file {p} is missing; reinstall the package: "
                f"{NUCLEI_INSTALL} --force-reinstall"
            )
    return paths


def _read_tiff(path: Path) -> np.ndarray:
    try:
        import tifffile
    except ImportError as err:
        raise ImportError(
            f"reading the nuclei files needs the package 'tifffile', which is not installed: "
            f"{NUCLEI_INSTALL}"
        ) from err
    return np.asarray(tifffile.imread(path))


def load_nuclei_image(
    percentile_columns: tuple[int, int] | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The whole nuclei image and its instance ids.

    Args:
        percentile_columns: ``(start, stop)``: the columns whose pixels set the normalisation
            (:func:`load_nuclei_tiles` passes the training region's, so that the test strip
            does not inform it); default the whole image.

    Returns:
        ``(image, instances)``: ``image`` float32 ``(1, 512, 512)``, the fluorescence mapped to
        ``[0, 1]`` by the 1st and 99.8th percentiles of those pixels (clipped); ``instances`` int64
        ``(512, 512)``, ``0`` = background, ``> 0`` the nucleus id.

    Raises:
        ImportError: ``stardist`` or ``tifffile`` missing (``pip install --no-deps
            stardist==0.9.2 tifffile``).
        FileNotFoundError: missing files.
        ValueError: files of an unexpected shape.
    """
    image_path, mask_path = nuclei_files()
    raw = _read_tiff(image_path)
    ids = _read_tiff(mask_path)
    if raw.ndim != 2 or ids.shape != raw.shape:
        raise ValueError(
            f"expected a 2-D image and a mask of the same shape, got {raw.shape} "
            f"({image_path}) and {ids.shape} ({mask_path})"
        )
    x = raw.astype(np.float64)
    ref = x
    if percentile_columns is not None:
        start, stop = (int(v) for v in percentile_columns)
        if not 0 <= start < stop <= x.shape[1]:
            raise ValueError(
                f"percentile_columns must satisfy 0 <= start < stop <= {x.shape[1]}, got "
                f"{percentile_columns!r}"
            )
        ref = x[:, start:stop]
    lo, hi = np.percentile(ref, NORMALIZATION_PERCENTILES)
    scaled = np.clip((x - lo) / max(hi - lo, 1e-12), 0.0, 1.0).astype(np.float32)
    image = torch.from_numpy(np.ascontiguousarray(scaled)).unsqueeze(0)
    instances = torch.from_numpy(ids.astype(np.int64))
    return image, instances


def _check_positive(value: object, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"expected {name} as a positive int, got {type(value).__name__}")
    if value < 1:
        raise ValueError(f"expected {name} as a positive int, got {value}")
    return value


def _origins(height: int, col0: int, col1: int, tile: int, stride: int) -> list[tuple[int, int]]:
    """Top-left corners, row-major, of the tiles that lie inside rows ``[0, height)`` and
    columns ``[col0, col1)``."""
    rows = range(0, height - tile + 1, stride)
    cols = range(col0, col1 - tile + 1, stride)
    return [(r, c) for r in rows for c in cols]


def _tiles(
    image: torch.Tensor,
    instances: torch.Tensor,
    origins: list[tuple[int, int]],
    tile: int,
    name: str,
) -> SegmentationDataset:
    images = torch.stack([image[:, r : r + tile, c : c + tile] for r, c in origins])
    inst = torch.stack([instances[r : r + tile, c : c + tile] for r, c in origins])
    ds = SegmentationDataset(
        images.contiguous(), (inst > 0).long(), NUCLEI_CLASSES, name, instances=inst.contiguous()
    )
    ds.tile_origins = torch.tensor(origins, dtype=torch.long).reshape(-1, 2)
    return ds


def load_nuclei_tiles(
    tile: int = 64,
    test_fraction: float = 0.25,
    train_stride: int | None = None,
    test_stride: int | None = None,
) -> SegmentationSplits:
    """Square tiles of the nuclei image, split by region into train and test.

    The rightmost ``round(W * test_fraction)`` columns are the test region, the others the train
    region; every tile lies entirely inside one region (tiles that would cross the boundary are
    not made), so the splits share no pixel. Tiles are taken row-major every ``stride`` pixels
    from the region's top-left corner.

    Args:
        tile: side of the square tiles.
        test_fraction: width fraction of the test strip, in ``(0, 1)``.
        train_stride: step between train tiles (default ``tile // 2``: overlapping tiles).
        test_stride: step between test tiles (default ``tile``: disjoint tiles).

    Returns:
        :class:`SegmentationSplits` ``(train, test)`` of :class:`SegmentationDataset`:
        ``images (N, 1, tile, tile)`` float32 in ``[0, 1]``, ``masks`` = instances ``> 0``,
        ``instances`` the nucleus ids (those of the whole image), classes
        ``["background", "nucleus"]``, names ``nuclei/train`` and ``nuclei/test``. Each also
        carries ``tile_origins``: int64 ``(N, 2)`` ``(row, col)`` of each tile's top-left pixel
        in the image (not kept by ``subset``).

    Raises:
        TypeError / ValueError: a bad tile, stride or fraction, or a tile that does not fit in
            both regions.
        ImportError / FileNotFoundError: as :func:`load_nuclei_image`.
    """
    tile = _check_positive(tile, "tile")
    if isinstance(test_fraction, bool) or not isinstance(test_fraction, int | float):
        raise TypeError(
            f"expected test_fraction as a float in (0, 1), got {type(test_fraction).__name__}"
        )
    if not 0.0 < float(test_fraction) < 1.0:
        raise ValueError(f"expected test_fraction strictly between 0 and 1, got {test_fraction}")
    train_stride = _check_positive(
        max(tile // 2, 1) if train_stride is None else train_stride, "train_stride"
    )
    test_stride = _check_positive(tile if test_stride is None else test_stride, "test_stride")
    height, width = (int(s) for s in _read_tiff(nuclei_files()[1]).shape[:2])
    test_width = round(width * float(test_fraction))
    train_width = width - test_width
    # the training region alone sets the intensity normalisation
    image, instances = load_nuclei_image(percentile_columns=(0, max(train_width, 1)))
    if tile > min(height, train_width, test_width):
        raise ValueError(
            f"tile {tile} does not fit in both regions: test_fraction {test_fraction} gives a "
            f"train region of {height}x{train_width} and a test region of {height}x{test_width} "
            f"pixels; expected tile <= {min(height, train_width, test_width)}"
        )
    train = _tiles(
        image,
        instances,
        _origins(height, 0, train_width, tile, train_stride),
        tile,
        "nuclei/train",
    )
    test = _tiles(
        image,
        instances,
        _origins(height, train_width, width, tile, test_stride),
        tile,
        "nuclei/test",
    )
    logger.info(
        "nuclei tiles of %d px: %d train (columns < %d), %d test",
        tile,
        len(train),
        train_width,
        len(test),
    )
    return SegmentationSplits(train, test)
