"""StarDist's real fluorescence nuclei: the image, the tiles' alignment and region split."""

from __future__ import annotations

import importlib.util
import os

import pytest
import torch

from equify.data import (
    load_nuclei_image,
    load_nuclei_tiles,
    load_segmentation_splits,
    nuclei_files,
)
from equify.data import nuclei as nuclei_module

REQUIRE = os.environ.get("EQUIFY_REQUIRE_STARDIST") == "1"
HAVE_FILES = (
    importlib.util.find_spec("stardist") is not None
    and importlib.util.find_spec("tifffile") is not None
)
needs_files = pytest.mark.skipif(
    not (HAVE_FILES or REQUIRE),
    reason="pip install --no-deps stardist==0.9.2 tifffile (set EQUIFY_REQUIRE_STARDIST=1 to "
    "make this a failure)",
)

#: What the annotation of StarDist 0.9.2's img2d.tif / mask2d.tif holds.
N_NUCLEI = 125
MAX_ID = 183
FOREGROUND_PIXELS = 52226


@pytest.fixture(scope="module")
def image():
    return load_nuclei_image()


@needs_files
def test_files_and_full_image(image) -> None:
    img_path, mask_path = nuclei_files()
    assert img_path.name == "img2d.tif" and mask_path.name == "mask2d.tif"
    assert img_path.parent.parts[-3:] == ("stardist", "data", "images")
    x, ids = image
    assert x.shape == (1, 512, 512) and x.dtype == torch.float32
    assert ids.shape == (512, 512) and ids.dtype == torch.int64
    assert float(x.min()) == 0.0 and float(x.max()) == 1.0
    # percentile normalisation clips about 1% at 0 and 0.2% at 1, not more
    assert 0.005 < float((x == 0).float().mean()) < 0.05
    assert 0.0005 < float((x == 1).float().mean()) < 0.01
    assert len(ids.unique()) - 1 == N_NUCLEI and int(ids.max()) == MAX_ID
    assert int(ids.min()) == 0 and int((ids > 0).sum()) == FOREGROUND_PIXELS
    # the nuclei are brighter than the background
    assert float(x[0][ids > 0].mean()) > 2 * float(x[0][ids == 0].mean())


@needs_files
def test_tiles_align_with_the_image_and_split_by_region(image) -> None:
    _, ids = image
    # the tiles are normalised by the training region's percentiles only (columns < 384)
    x, _ = load_nuclei_image(percentile_columns=(0, 384))
    assert not torch.equal(x, image[0])  # the test strip would have shifted them
    train, test = load_nuclei_tiles(tile=64)
    assert train.classes == test.classes == ["background", "nucleus"]
    assert (train.name, test.name) == ("nuclei/train", "nuclei/test")
    # train region: columns < 384, stride 32 -> 15 x 11 tiles; test: columns >= 384, stride 64
    assert len(train) == 15 * 11 and len(test) == 8 * 2
    assert train.image_shape == test.image_shape == (1, 64, 64)
    for ds in (train, test):
        for (r, c), tile, mask, inst in zip(
            ds.tile_origins.tolist(), ds.images, ds.masks, ds.instances, strict=True
        ):
            assert torch.equal(tile, x[:, r : r + 64, c : c + 64])
            assert torch.equal(inst, ids[r : r + 64, c : c + 64])
            assert torch.equal(mask, (ids[r : r + 64, c : c + 64] > 0).long())
    assert int(train.tile_origins[:, 1].max()) + 64 <= 384
    assert int(test.tile_origins[:, 1].min()) >= 384
    assert int(test.tile_origins[:, 1].max()) + 64 <= 512
    # no pixel shared; the test tiles cover the test strip exactly
    covered = torch.zeros(2, 512, 512, dtype=torch.bool)
    for k, ds in enumerate((train, test)):
        for r, c in ds.tile_origins.tolist():
            covered[k, r : r + 64, c : c + 64] = True
    assert not bool((covered[0] & covered[1]).any())
    assert bool(covered[1, :, 384:].all()) and not bool(covered[1, :, :384].any())
    # both splits hold nuclei
    assert int(train.class_pixel_counts()[1]) > 0 and int(test.class_pixel_counts()[1]) > 0


@needs_files
def test_tile_options_and_dispatcher() -> None:
    train, test = load_nuclei_tiles(tile=100, test_fraction=0.5, train_stride=52, test_stride=39)
    # regions of 256 columns: train rows 0, 52, .., 364 (8) x columns 0, .., 156 (4); test
    # rows 0, 39, .., 390 (11) x columns 256, 295, .., 412 (5)
    assert len(train) == 8 * 4 and len(test) == 11 * 5
    assert int(test.tile_origins[:, 1].min()) == 256
    train2, test2 = load_segmentation_splits("Nuclei", size=32)
    assert train2.image_shape == (1, 32, 32)
    assert len(train2) == 31 * 23 and len(test2) == 16 * 4


@needs_files
@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"tile": 0}, ValueError, "tile as a positive int"),
        ({"tile": 64.0}, TypeError, "tile as a positive int"),
        ({"tile": 129}, ValueError, "does not fit in both regions"),
        ({"tile": 64, "test_fraction": 0.1}, ValueError, "expected tile <= 51"),
        ({"tile": 64, "test_fraction": 0.9}, ValueError, "expected tile <= 51"),
        ({"test_fraction": 1.0}, ValueError, "between 0 and 1"),
        ({"test_fraction": "0.2"}, TypeError, "test_fraction"),
        ({"train_stride": 0}, ValueError, "train_stride"),
        ({"test_stride": True}, TypeError, "test_stride"),
    ],
)
def test_bad_tile_requests(kwargs, error, match) -> None:
    with pytest.raises(error, match=match):
        load_nuclei_tiles(**kwargs)


def test_missing_package_names_the_install_command(monkeypatch) -> None:
    real = importlib.util.find_spec
    monkeypatch.setattr(
        nuclei_module.importlib.util,
        "find_spec",
        lambda name, *a: None if name == "stardist" else real(name, *a),
    )
    with pytest.raises(ImportError, match=r"pip install --no-deps stardist==0\.9\.2 tifffile"):
        nuclei_files()
    with pytest.raises(ImportError, match="stardist"):
        load_segmentation_splits("nuclei")


def test_missing_files_raise_file_not_found(monkeypatch, tmp_path) -> None:
    fake = tmp_path / "stardist"
    fake.mkdir()
    (fake / "__init__.py").write_text("")
    spec = importlib.util.spec_from_file_location("stardist", fake / "__init__.py")
    monkeypatch.setattr(nuclei_module.importlib.util, "find_spec", lambda name, *a: spec)
    with pytest.raises(FileNotFoundError, match="img2d.tif"):
        nuclei_files()


def test_missing_tifffile_names_the_install_command(monkeypatch) -> None:
    import builtins

    real_import = builtins.__import__

    def no_tifffile(name, *args, **kwargs):
        if name == "tifffile":
            raise ImportError("no tifffile")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_tifffile)
    with pytest.raises(ImportError, match=r"tifffile.*pip install --no-deps stardist"):
        nuclei_module._read_tiff(nuclei_module.Path("x.tif"))


@needs_files
def test_bad_percentile_columns_are_refused() -> None:
    with pytest.raises(ValueError, match="percentile_columns"):
        load_nuclei_image(percentile_columns=(300, 200))
