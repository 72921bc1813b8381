"""Real photographs from installed packages: discovery, loading, crops and splits."""

from __future__ import annotations

import importlib.util
import os

import pytest
import torch

from equify.data import available_photos, centre_view, load_photo, random_crops, split_photos
from equify.data import photos as photos_module

REQUIRE = os.environ.get("EQUIFY_REQUIRE_PRETRAINED") == "1"
needs_skimage = pytest.mark.skipif(
    importlib.util.find_spec("skimage") is None and not REQUIRE,
    reason="scikit-image is not installed (pip install 'equify[pretrained]')",
)


@needs_skimage
def test_skimage_photos_are_found_and_load_as_rgb() -> None:
    found = available_photos(["skimage"])
    assert {"skimage/chelsea", "skimage/coffee", "skimage/astronaut"} <= set(found)
    assert all(name.startswith("skimage/") for name in found)
    cat = load_photo("skimage/chelsea")
    assert cat.shape == (3, 300, 451) and cat.dtype == torch.float32
    assert float(cat.min()) >= 0.0 and float(cat.max()) <= 1.0 and float(cat.std()) > 0.05
    # by path too: the same pixels
    same = load_photo(found["skimage/chelsea"])
    assert torch.equal(cat, same)


def test_a_grey_file_by_path_becomes_rgb(tmp_path) -> None:
    pil = pytest.importorskip("PIL.Image")
    import numpy as np

    path = tmp_path / "grey.png"
    pil.fromarray((np.arange(20 * 30).reshape(20, 30) % 256).astype(np.uint8)).save(path)
    x = load_photo(path)
    assert x.shape == (3, 20, 30) and torch.equal(x[0], x[1]) and torch.equal(x[1], x[2])


def test_missing_and_unknown_photos(tmp_path, monkeypatch) -> None:
    with pytest.raises(ValueError, match="unknown photo 'skimage/dog'"):
        load_photo("skimage/dog")
    with pytest.raises(FileNotFoundError, match="no image file"):
        load_photo(tmp_path / "none.jpg")
    with pytest.raises(TypeError):
        load_photo(3)  # type: ignore[arg-type]
    monkeypatch.setitem(photos_module.PHOTO_FILES, "opencv/nothere", (str(tmp_path), "x.jpg"))
    with pytest.raises(FileNotFoundError, match="apt-get install opencv-doc"):
        load_photo("opencv/nothere")
    assert "opencv/nothere" not in available_photos()
    with pytest.raises(TypeError, match="list of prefixes"):
        available_photos("skimage")  # type: ignore[arg-type]


def test_centre_view_and_random_crops() -> None:
    photo = torch.rand(3, 40, 60)
    view = centre_view(photo, 16)
    assert view.shape == (3, 16, 16)
    # the centred square of a wide photo: its middle columns
    torch.testing.assert_close(centre_view(photo, 40), photo[:, :, 10:50])
    crops = random_crops([photo, torch.rand(3, 30, 30)], 12, per_photo=5, seed=3)
    assert crops.shape == (10, 3, 12, 12) and 0 <= float(crops.min()) <= float(crops.max()) <= 1
    again = random_crops([photo], 12, per_photo=5, seed=3)
    assert torch.equal(again, crops[:5])  # seeded: the same crops
    assert not torch.equal(random_crops([photo], 12, per_photo=5, seed=4), again)
    for bad in ({"size": 0}, {"per_photo": 0}, {"scale": (0.0, 1.0)}, {"scale": (0.8, 0.5)}):
        with pytest.raises(ValueError):
            random_crops([photo], **{"size": 8, "per_photo": 1, **bad})
    with pytest.raises(ValueError, match="no photos"):
        random_crops([], 8, 1)
    with pytest.raises(ValueError, match=r"\(C, H, W\)"):
        centre_view(torch.rand(1, 3, 8, 8), 4)


def test_split_photos_is_seeded_disjoint_and_complete() -> None:
    names = [f"p{i}" for i in range(10)]
    train, test = split_photos(names, 0.3, seed=1)
    assert len(test) == 3 and not set(train) & set(test) and set(train) | set(test) == set(names)
    assert split_photos(names, 0.3, seed=1) == (train, test)
    tiny_train, tiny_test = split_photos(["a", "b"], 0.9)  # both sides keep a photo
    assert len(tiny_train) == len(tiny_test) == 1
    with pytest.raises(ValueError, match="at least two"):
        split_photos(["a"])
    with pytest.raises(ValueError, match="test_fraction"):
        split_photos(names, 1.0)
