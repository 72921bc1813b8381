"""MNIST6-180 and MNIST6-M (Romero & Lohit 2022)."""

from __future__ import annotations

import pytest
import torch

from equify.actions import ImageAction
from equify.data import load_mnist, load_splits, make_two_class_sixes
from equify.groups import CyclicGroup, DihedralGroup


@pytest.fixture(scope="module")
def mnist():
    return load_mnist()


def _keys(images: torch.Tensor) -> list[tuple]:
    return [tuple(r) for r in (images.flatten(1) * 255).round().int().tolist()]


@pytest.mark.parametrize(
    ("variant", "transform"),
    [
        ("mnist6-180", lambda x: torch.rot90(x, 2, (-2, -1))),
        ("mnist6-m", lambda x: torch.flip(x, (-1,))),
    ],
)
def test_paired_follows_the_paper(mnist, variant, transform) -> None:
    for source in mnist:
        ds = make_two_class_sixes(source, variant)
        sixes = source.images[source.labels == 6]
        n = sixes.shape[0]
        assert len(ds) == 2 * n and ds.labels.tolist() == [0] * n + [1] * n
        assert ds.num_classes == 2 and ds.classes[0] == "6"
        assert torch.equal(ds.images[:n], sixes)
        assert torch.equal(ds.images[n:], transform(sixes))  # item n + i is item i transformed
        assert ds.images.dtype == torch.float32 and ds.image_shape == (1, 28, 28)


def test_class_one_uses_the_image_action(mnist) -> None:
    train = make_two_class_sixes(mnist.train, "mnist6-180")
    n = len(train) // 2
    assert torch.equal(train.images[n:], ImageAction().apply(train.images[:n], 1, CyclicGroup(2)))
    m = make_two_class_sixes(mnist.train, "mnist6-m")
    assert torch.equal(m.images[n:], ImageAction().apply(m.images[:n], 1, DihedralGroup(1)))


def test_loaded_through_the_entry_point_with_disjoint_train_and_test(mnist) -> None:
    train, test = load_splits("mnist6-180")
    assert (len(train), len(test)) == (800, 200)
    assert train.class_counts().tolist() == [400, 400] and test.class_counts().tolist() == [
        100,
        100,
    ]
    assert (train.name, test.name) == ("mnist6-180/train", "mnist6-180/test")
    # no test six is a train six (nor its rotation)
    assert not set(_keys(train.images)) & set(_keys(test.images))
    m_train, _ = load_splits("mnist6_m", size=29, normalize=True)
    assert m_train.image_shape == (1, 29, 29) and m_train.normalization is not None


@pytest.mark.parametrize("variant", ["mnist6-180", "mnist6-m"])
def test_disjoint_each_six_in_one_class_only(mnist, variant) -> None:
    group, undo = (CyclicGroup(2), 1) if variant == "mnist6-180" else (DihedralGroup(1), 1)
    source = mnist.train
    ds = make_two_class_sixes(source, variant, pairing="disjoint", seed=0)
    sixes = _keys(source.images[source.labels == 6])
    assert len(ds) == len(sixes) == 400
    assert ds.class_counts().tolist() == [200, 200]
    upright = _keys(ds.images[ds.labels == 0])
    # undo the transform on class 1 (both are involutions): back to source sixes
    restored = _keys(ImageAction().apply(ds.images[ds.labels == 1], undo, group))
    assert set(upright) <= set(sixes) and set(restored) <= set(sixes)
    assert not set(upright) & set(restored)
    assert len(set(upright) | set(restored)) == len(set(sixes))
    same = make_two_class_sixes(source, variant, pairing="disjoint", seed=0)
    other = make_two_class_sixes(source, variant, pairing="disjoint", seed=1)
    assert torch.equal(same.images, ds.images) and not torch.equal(other.images, ds.images)
    odd = make_two_class_sixes(source.subset(torch.arange(0, 4000, 2)), variant, "disjoint")
    n6 = int((source.labels[::2] == 6).sum())
    assert odd.class_counts().tolist() == [n6 - n6 // 2, n6 // 2]


def test_bad_options() -> None:
    with pytest.raises(ValueError, match="pairing must be one of"):
        load_splits("mnist6-180", pairing="both")
    with pytest.raises(TypeError, match="unexpected option"):
        load_splits("mnist6-m", color="rgb")


def test_rotated_mnist_turns_every_digit_by_its_own_seeded_angle(mnist) -> None:
    from equify.data import random_angles, rotate_randomly
    from equify.data.rotated import angle_matrices

    rotated = load_splits("rotated-mnist")
    again = load_splits("rotated_mnist")
    other = load_splits("rotated-mnist", seed=1)
    for split, source in zip(rotated, mnist, strict=True):
        assert len(split) == len(source) and torch.equal(split.labels, source.labels)
        angles = random_angles(source)
        assert angles.min() >= 0 and angles.max() < 360 and angles.std() > 90  # uniform-ish
        expected = ImageAction().apply(source.images, angle_matrices(angles))
        assert torch.equal(split.images, expected)
        assert split.name.startswith("rotated-mnist/")
    assert torch.equal(rotated.train.images, again.train.images)
    assert not torch.equal(rotated.train.images, other.train.images)
    assert not torch.equal(
        random_angles(mnist.train), random_angles(mnist.test)[: len(mnist.train)]
    )
    assert rotate_randomly(mnist.test.subset(torch.arange(0))).images.shape[0] == 0
    with pytest.raises(TypeError, match="ImageDataset"):
        rotate_randomly(torch.zeros(1, 1, 4, 4))
