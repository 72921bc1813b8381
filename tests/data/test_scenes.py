"""Digit scenes: masks match the canvases, digits stay inside the inscribed circle, no overlap,
seeding, and the disjoint train/test digit pools of load_digit_scenes."""

from __future__ import annotations

import hashlib

import pytest
import torch

from equify.actions import ImageAction
from equify.data import (
    ImageDataset,
    SegmentationDataset,
    load_digit_scenes,
    load_mnist,
    make_digit_scenes,
    rotate_batch,
)
from equify.data.scenes import SOURCE_THRESHOLDS

from .test_fashion_mnist import make_fake

SIZE = 48
THRESHOLD = 0.3


@pytest.fixture(scope="module")
def mnist():
    return load_mnist()


@pytest.fixture(scope="module")
def scenes(mnist) -> SegmentationDataset:
    return make_digit_scenes(mnist.train, 40, size=SIZE, per_scene=(2, 4), threshold=THRESHOLD)


def blocks(n: int = 6, side: int = 10) -> ImageDataset:
    """Grey squares of side 2..7 on a ``side x side`` canvas, labels 0/1."""
    images = torch.zeros(n, 1, side, side)
    for i in range(n):
        images[i, 0, 1 : 3 + i % 6, 2 : 4 + i % 6] = 0.8
    return ImageDataset(images, torch.arange(n) % 2, ["even", "odd"], "blocks")


def boxes_of(instances: torch.Tensor) -> list[tuple[int, int, int, int]]:
    """Inclusive ``(top, bottom, left, right)`` of each instance id > 0 of ``(H, W)``."""
    out = []
    for j in instances.unique().tolist():
        if j == 0:
            continue
        rows, cols = torch.nonzero(instances == j, as_tuple=True)
        out.append((int(rows.min()), int(rows.max()), int(cols.min()), int(cols.max())))
    return out


def test_shapes_classes_and_metadata(scenes, mnist) -> None:
    assert scenes.images.shape == (40, 1, SIZE, SIZE) and scenes.images.dtype == torch.float32
    assert scenes.masks.shape == scenes.instances.shape == (40, SIZE, SIZE)
    assert scenes.classes == ["background", *[str(d) for d in range(10)]]
    assert scenes.name == "digit-scenes"
    assert scenes.digit_indices.shape == (40, 4)
    assert float(scenes.images.min()) == 0.0 and float(scenes.images.max()) <= 1.0


def test_masks_agree_with_the_canvas(scenes, mnist) -> None:
    fg = scenes.images[:, 0] > THRESHOLD
    # foreground <=> a label (digits never overlap, so the canvas is the digit's own pixel)
    assert torch.equal(fg, scenes.masks > 0)
    assert torch.equal(fg, scenes.instances > 0)
    assert bool((scenes.masks[scenes.images[:, 0] == 0] == 0).all())
    pool = mnist.train
    for i in range(len(scenes)):
        for slot, k in enumerate(scenes.digit_indices[i].tolist()):
            if k < 0:
                continue
            region = scenes.instances[i] == slot + 1
            # the digit's class is on exactly its foreground, and all of it was placed
            assert scenes.masks[i][region].unique().tolist() == [1 + int(pool.labels[k])]
            assert int(region.sum()) == int((pool.images[k] > THRESHOLD).sum())


def test_digit_counts_and_no_overlap(scenes) -> None:
    counts = (scenes.digit_indices >= 0).sum(1)
    assert int(counts.min()) >= 1 and int(counts.max()) <= 4
    assert len(set(counts.tolist())) > 1  # the count is drawn, not fixed
    for i in range(len(scenes)):
        n_labels = len(scenes.masks[i].unique()) - 1
        assert 1 <= n_labels <= int(counts[i])
        boxes = boxes_of(scenes.instances[i])
        assert len(boxes) == int(counts[i])
        for a in range(len(boxes)):
            for b in range(a + 1, len(boxes)):
                t0, b0, l0, r0 = boxes[a]
                t1, b1, l1, r1 = boxes[b]
                gap = b0 + 1 < t1 or b1 + 1 < t0 or r0 + 1 < l1 or r1 + 1 < l0
                assert gap, (i, boxes[a], boxes[b])
        # the whole box (sub-threshold pixels included) is empty outside the digits' boxes
        canvas = scenes.images[i, 0].clone()
        for t, bt, le, r in boxes:
            canvas[t : bt + 1, le : r + 1] = 0
        assert float(canvas.abs().sum()) == 0.0


def test_every_digit_lies_inside_the_inscribed_circle(scenes) -> None:
    rows, cols = torch.nonzero(scenes.images[:, 0] > 0, as_tuple=True)[1:]
    # every corner of every non-zero pixel (continuous coordinates, centre size / 2)
    for dr in (0, 1):
        for dc in (0, 1):
            d2 = (rows + dr - SIZE / 2) ** 2 + (cols + dc - SIZE / 2) ** 2
            assert float(d2.max()) <= (SIZE / 2) ** 2


def test_rotation_keeps_every_digit_in_the_frame(scenes) -> None:
    x = scenes.images
    near = rotate_batch(x, [45.0], 0, ImageAction(interpolation="nearest"))
    fg0 = (x > THRESHOLD).sum((1, 2, 3)).float()
    fg1 = (near > THRESHOLD).sum((1, 2, 3)).float()
    assert float(((fg1 - fg0) / fg0).abs().max()) < 0.08
    smooth = rotate_batch(x, [45.0], 0)
    mass0, mass1 = x.sum((1, 2, 3)), smooth.sum((1, 2, 3))
    assert float(((mass1 - mass0) / mass0).abs().max()) < 0.02
    # the same check fails for content pushed towards a corner
    shifted = torch.roll(x, shifts=(SIZE // 2 - 4, SIZE // 2 - 4), dims=(2, 3))
    lost = rotate_batch(shifted, [45.0], 0, ImageAction(interpolation="nearest"))
    ratio = (lost > THRESHOLD).sum((1, 2, 3)).float() / fg0
    assert float(ratio.min()) < 0.8


def test_seeding(mnist) -> None:
    a = make_digit_scenes(mnist.test, 6, size=40, seed=3)
    b = make_digit_scenes(mnist.test, 6, size=40, seed=3)
    c = make_digit_scenes(mnist.test, 6, size=40, seed=4)
    for t in ("images", "masks", "instances", "digit_indices"):
        assert torch.equal(getattr(a, t), getattr(b, t)), t
    assert not torch.equal(a.images, c.images)
    assert not torch.equal(a.digit_indices, c.digit_indices)


def test_exact_count_and_full_scenes() -> None:
    pool = blocks()
    two = make_digit_scenes(pool, 10, size=32, per_scene=(2, 2), threshold=0.5)
    assert ((two.digit_indices >= 0).sum(1) == 2).all()
    assert two.classes == ["background", "even", "odd"]
    # a canvas with room for one 5x5 square only (two side by side with a gap span 11 px,
    # whose corners leave the circle of radius 6) keeps the one it has
    big = torch.zeros(3, 1, 8, 8)
    big[:, 0, 1:6, 2:7] = 0.9
    squares = ImageDataset(big, torch.tensor([0, 1, 1]), ["even", "odd"])
    crowded = make_digit_scenes(squares, 10, size=12, per_scene=(3, 3), threshold=0.5)
    assert ((crowded.digit_indices >= 0).sum(1) == 1).all()
    assert ((crowded.masks > 0).sum((1, 2)) == 25).all()


def test_empty_and_degenerate_requests() -> None:
    pool = blocks()
    empty = make_digit_scenes(pool, 0, size=20)
    assert empty.images.shape == (0, 1, 20, 20) and empty.masks.shape == (0, 20, 20)
    assert len(empty) == 0 and empty.num_classes == 3
    with pytest.raises(ValueError, match="could not fit a single digit"):
        make_digit_scenes(pool, 2, size=3, threshold=0.5)
    blank = ImageDataset(torch.zeros(3, 1, 8, 8), torch.zeros(3).long(), ["x"])
    with pytest.raises(ValueError, match="could not fit a single digit"):
        make_digit_scenes(blank, 1, size=20)
    none = ImageDataset(torch.zeros(0, 1, 8, 8), torch.zeros(0).long(), ["x"])
    with pytest.raises(ValueError, match="non-empty digits"):
        make_digit_scenes(none, 1, size=20)
    assert len(make_digit_scenes(none, 0, size=20)) == 0


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"digits": torch.zeros(2, 1, 8, 8)}, TypeError, "ImageDataset"),
        (
            {"digits": ImageDataset(torch.rand(2, 3, 8, 8), torch.zeros(2).long(), ["x"])},
            ValueError,
            "1 channel",
        ),
        ({"n": -1}, ValueError, "n as an int >= 0"),
        ({"n": 2.0}, TypeError, "n as an int"),
        ({"size": 0}, ValueError, "size as an int >= 1"),
        ({"per_scene": (0, 2)}, ValueError, "1 <= lo <= hi"),
        ({"per_scene": (3, 2)}, ValueError, "1 <= lo <= hi"),
        ({"per_scene": (2,)}, TypeError, "pair of ints"),
        ({"per_scene": 2}, TypeError, "pair of ints"),
        ({"threshold": 0.0}, ValueError, "between 0 and 1"),
        ({"threshold": 1}, ValueError, "between 0 and 1"),
        ({"threshold": "0.3"}, TypeError, "threshold"),
        ({"seed": -1}, ValueError, "seed"),
    ],
)
def test_bad_arguments(kwargs, error, match) -> None:
    args = {"digits": blocks(), "n": 2, "size": 24}
    args.update(kwargs)
    with pytest.raises(error, match=match):
        make_digit_scenes(**args)


def _digest(image: torch.Tensor) -> str:
    return hashlib.sha1(image.contiguous().numpy().tobytes()).hexdigest()


def test_load_digit_scenes_uses_disjoint_pools(mnist) -> None:
    train, test = load_digit_scenes("MNIST", n_train=24, n_test=12, size=SIZE, seed=0)
    assert (len(train), len(test)) == (24, 12)
    assert (train.name, test.name) == ("digit-scenes/train", "digit-scenes/test")
    # the pools are load_mnist(0.2, seed)'s splits: digit_indices point into them
    pools = {"train": mnist.train, "test": mnist.test}
    used = {}
    for split, scenes in (("train", train), ("test", test)):
        pool = pools[split]
        idx = scenes.digit_indices
        assert int(idx.max()) < len(pool)
        for i in range(len(scenes)):
            for slot, k in enumerate(idx[i].tolist()):
                if k >= 0:
                    region = scenes.instances[i] == slot + 1
                    assert int(region.sum()) == int((pool.images[k] > 0.3).sum())
                    assert scenes.masks[i][region][0] == 1 + int(pool.labels[k])
        used[split] = {_digest(pool.images[k]) for k in idx[idx >= 0].tolist()}
    test_pool = {_digest(im) for im in mnist.test.images}
    train_pool = {_digest(im) for im in mnist.train.images}
    assert used["train"] <= train_pool and used["test"] <= test_pool
    assert not (used["train"] & test_pool) and not (used["test"] & train_pool)
    # train and test scenes are drawn with different seeds
    assert not torch.equal(train.digit_indices[:12], test.digit_indices)


def test_load_digit_scenes_fashion_from_a_directory(tmp_path) -> None:
    make_fake(tmp_path, n_train=20, n_test=10)
    train, test = load_digit_scenes(
        "fashion_mnist", n_train=4, n_test=3, size=64, per_scene=(1, 2), root=tmp_path
    )
    assert (train.name, test.name) == ("fashion-scenes/train", "fashion-scenes/test")
    assert train.classes[0] == "background" and train.classes[1] == "T-shirt/top"
    th = SOURCE_THRESHOLDS["fashion-mnist"]
    assert torch.equal(train.masks > 0, train.images[:, 0] > th)
    assert int(test.digit_indices.max()) < 10


def test_load_digit_scenes_bad_requests(tmp_path) -> None:
    with pytest.raises(ValueError, match="mnist, fashion-mnist"):
        load_digit_scenes("cifar")
    with pytest.raises(ValueError, match="no root"):
        load_digit_scenes("mnist", root=tmp_path)
    with pytest.raises(FileNotFoundError):
        load_digit_scenes("fashion-mnist", root=tmp_path / "missing")
    with pytest.raises(ValueError, match="n_train"):
        load_digit_scenes("mnist", n_train=-1)
