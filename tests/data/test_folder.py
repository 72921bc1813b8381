"""The folder source on temporary directories of generated PNGs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from equify.data import load_dataset, load_image_folder, load_splits


def write_pngs(root: Path, counts: dict[str, int], hw=(6, 5), rgb=False, seed=0) -> dict:
    """Random PNGs ``root/<class>/<i>.png``; returns {class: [uint8 arrays in file order]}."""
    rng = np.random.default_rng(seed)
    out = {}
    for cls, n in counts.items():
        (root / cls).mkdir(parents=True, exist_ok=True)
        arrays = []
        for i in range(n):
            shape = (*hw, 3) if rgb else hw
            a = rng.integers(0, 256, size=shape, dtype=np.uint8)
            Image.fromarray(a).save(root / cls / f"{i:03d}.png")
            arrays.append(a)
        out[cls] = arrays
    return out


def _as_set(images: torch.Tensor) -> set:
    return {tuple(r) for r in (images.flatten(1) * 255).round().int().tolist()}


def test_pool_layout_is_split_by_class_and_reads_exact_pixels(tmp_path: Path) -> None:
    arrays = write_pngs(tmp_path, {"cat": 10, "dog": 5})
    (tmp_path / "cat" / "notes.txt").write_text("not an image")  # skipped
    (tmp_path / ".hidden").mkdir()  # not a class
    train, test = load_image_folder(tmp_path, color="grayscale")
    assert train.classes == ["cat", "dog"]
    assert train.images.shape == (12, 1, 6, 5) and test.images.shape == (3, 1, 6, 5)
    assert train.images.dtype == torch.float32
    assert train.class_counts().tolist() == [8, 4] and test.class_counts().tolist() == [2, 1]
    # every pixel is read exactly and each image carries the label of its folder
    for ds in (train, test):
        for image, label in zip(ds.images, ds.labels, strict=True):
            key = tuple((image.flatten() * 255).round().int().tolist())
            cls = ds.classes[int(label)]
            assert any(key == tuple(a.flatten().tolist()) for a in arrays[cls])
    assert not _as_set(train.images) & _as_set(test.images)
    again = load_image_folder(tmp_path, color="grayscale")
    assert torch.equal(again.test.images, test.images)  # seeded


def test_train_test_layout_and_rgb(tmp_path: Path) -> None:
    tr = write_pngs(tmp_path / "train", {"a": 3, "b": 2}, rgb=True, seed=1)
    te = write_pngs(tmp_path / "test", {"a": 1, "b": 2}, rgb=True, seed=2)
    train, test = load_splits("folder", root=tmp_path)  # default color: rgb
    assert train.images.shape == (5, 3, 6, 5) and test.images.shape == (3, 3, 6, 5)
    assert train.labels.tolist() == [0, 0, 0, 1, 1] and test.labels.tolist() == [0, 1, 1]
    expected = torch.from_numpy(tr["a"][0]).permute(2, 0, 1).float() / 255
    assert torch.equal(train.images[0], expected)
    expected = torch.from_numpy(te["b"][1]).permute(2, 0, 1).float() / 255
    assert torch.equal(test.images[2], expected)
    gray = load_dataset("folder", "test", root=tmp_path, color="grayscale")
    assert gray.image_shape == (1, 6, 5)
    with pytest.raises(ValueError, match="fix the split"):
        load_splits("folder", root=tmp_path, test_fraction=0.3)


def test_only_a_train_folder_is_an_error(tmp_path: Path) -> None:
    write_pngs(tmp_path / "train", {"a": 2})
    with pytest.raises(ValueError, match="no test/"):
        load_image_folder(tmp_path)


def test_differing_sizes_need_a_size(tmp_path: Path) -> None:
    write_pngs(tmp_path, {"a": 3}, hw=(6, 6))
    write_pngs(tmp_path, {"b": 3}, hw=(10, 8), seed=3)
    with pytest.raises(ValueError, match=r"differ in size.*6x6.*10x8|differ in size.*10x8.*6x6"):
        load_image_folder(tmp_path)
    train, test = load_splits("folder", root=tmp_path, size=12, fit="pad", color="grayscale")
    assert train.image_shape == (1, 12, 12) and len(train) + len(test) == 6
    resized = load_image_folder(tmp_path, size=(7, 9), fit="resize", color="grayscale")
    assert resized.train.image_shape == (1, 7, 9)
    with pytest.raises(ValueError, match="fit='resize'"):
        load_image_folder(tmp_path, size=8, fit="pad")


def test_broken_image_names_the_file(tmp_path: Path) -> None:
    write_pngs(tmp_path, {"a": 2, "b": 2})
    bad = tmp_path / "b" / "broken.png"
    bad.write_bytes(b"this is not a png")
    with pytest.raises(ValueError, match=r"cannot read image file .*broken\.png"):
        load_image_folder(tmp_path)


def test_layout_errors(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="image folder not found"):
        load_image_folder(tmp_path / "missing")
    with pytest.raises(ValueError, match="no class sub-folders"):
        load_image_folder(tmp_path)
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="holds no image files"):
        load_image_folder(tmp_path)
    with pytest.raises(ValueError, match="needs root"):
        load_splits("folder")
    with pytest.raises(ValueError, match="color must be one of"):
        load_image_folder(tmp_path, color="cmyk")
