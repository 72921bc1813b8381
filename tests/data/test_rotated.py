"""RotatedDataset, RotationSet, rotate_batch, orbit_batch."""

from __future__ import annotations

import math

import pytest
import torch
from torch.utils.data import DataLoader, Dataset

from equify.actions import ImageAction
from equify.data import (
    ChannelStats,
    ImageDataset,
    RotatedDataset,
    RotationSet,
    orbit_batch,
    rotate_batch,
)
from equify.groups import SO2, CyclicGroup, DihedralGroup
from equify.testing import assert_equivariant

C4, D4, C8 = CyclicGroup(4), DihedralGroup(4), CyclicGroup(8)


def small_dataset(n: int = 6, size: int = 9, channels: int = 1, normalized: bool = False):
    gen = torch.Generator().manual_seed(0)
    images = torch.rand(n, channels, size, size, generator=gen)
    labels = torch.arange(n) % 3
    stats = ChannelStats((0.5,) * channels, (0.2,) * channels) if normalized else None
    return ImageDataset(images, labels, ["a", "b", "c"], "toy/test", stats)


@pytest.mark.parametrize("g", [C4, D4, C8, "C8", "D4"], ids=str)
def test_all_mode_enumerates_every_element_as_image_action(g) -> None:
    base = small_dataset()
    ds = RotatedDataset(base, group=g, mode="all")
    group = CyclicGroup(8) if g == "C8" else DihedralGroup(4) if g == "D4" else g
    k = group.order
    assert len(ds) == len(base) * k and ds.num_elements == k
    act = ImageAction()
    seen = set()
    for i in range(len(ds)):
        image, label, info = ds[i]
        j, e = divmod(i, k)  # image-major, element innermost
        assert info["element"] == e and label == int(base.labels[j])
        assert info["angle"] == pytest.approx(360.0 * (e % group.n) / group.n)
        assert info["reflection"] == bool(group.is_reflection(e))
        expected = act.apply(base.images[j : j + 1], e, group)[0]
        if k in (4, 8) and group.n == 4:  # C4 / D4: exact permutations
            assert torch.equal(image, expected)
        else:
            assert torch.allclose(image, expected, atol=1e-6)
        seen.add((j, e))
    assert len(seen) == len(ds)
    assert torch.equal(ds.elements, torch.arange(k).repeat(len(base)))
    assert torch.equal(ds.labels, base.labels.repeat_interleave(k))


def test_c4_and_d4_items_are_rot90_and_flips() -> None:
    base = small_dataset(n=2, size=10)
    ds = RotatedDataset(base, group=D4)
    x = base.images[1]
    for e in range(8):
        image, _, _ = ds[8 + e]
        flipped = torch.flip(x, (-1,)) if e >= 4 else x
        assert torch.equal(image, torch.rot90(flipped, e % 4, (-2, -1)))


def test_angles_mode_matches_so2_rotations_and_is_exact_at_right_angles() -> None:
    base = small_dataset(n=3)
    angles = list(range(0, 360, 15))
    ds = RotatedDataset(base, angles=angles)
    assert len(ds) == 3 * 24 and ds.num_elements == 24
    act = ImageAction()
    for i in range(len(ds)):
        image, _, info = ds[i]
        j, e = divmod(i, 24)
        assert info["element"] == e and info["angle"] == angles[e] and not info["reflection"]
        theta = torch.tensor(math.radians(angles[e]), dtype=torch.float64)
        expected = act.apply(base.images[j : j + 1], SO2().rotation(theta))[0]
        assert torch.allclose(image, expected, atol=1e-6)
        if angles[e] % 90 == 0:
            assert torch.equal(image, torch.rot90(base.images[j], angles[e] // 90, (-2, -1)))
    # angles given through group="SO2" too; tensors and numpy arrays are accepted
    ds2 = RotatedDataset(base, group="SO2", angles=torch.tensor([0.0, 45.0]))
    assert len(ds2) == 6 and ds2[1][2]["angle"] == 45.0


def test_random_mode_is_deterministic_given_seed_and_index() -> None:
    base = small_dataset(n=40)
    a = RotatedDataset(base, group=C8, mode="random", seed=5)
    b = RotatedDataset(base, group=C8, mode="random", seed=5)
    c = RotatedDataset(base, group=C8, mode="random", seed=6)
    assert len(a) == 40
    assert torch.equal(a.elements, b.elements) and not torch.equal(a.elements, c.elements)
    assert set(a.elements.tolist()) <= set(range(8)) and len(set(a.elements.tolist())) > 4
    for i in (0, 7, 39):
        x1, y1, i1 = a[i]
        x2, y2, i2 = a[i]  # same on every access
        assert torch.equal(x1, x2) and y1 == y2 and i1 == i2 == b[i][2]
        expected = ImageAction().apply(base.images[i : i + 1], int(a.elements[i]), C8)[0]
        assert torch.allclose(x1, expected, atol=1e-6)


def test_random_uniform_angles_and_random_choice_from_a_list() -> None:
    base = small_dataset(n=200)
    cont = RotatedDataset(base, group="SO2", mode="random", seed=1)
    ang = cont.angles
    assert ang.dtype == torch.float64 and float(ang.min()) >= 0 and float(ang.max()) < 360
    assert float(ang.std()) > 80  # spread over the circle (uniform: ~104)
    assert torch.equal(ang, RotatedDataset(base, group="SO2", mode="random", seed=1).angles)
    image, _, info = cont[10]
    assert info["element"] == -1 and info["angle"] == float(ang[10])
    theta = torch.deg2rad(ang[10])
    assert torch.allclose(image, ImageAction().apply(base.images[10:11], SO2().rotation(theta))[0])
    listed = RotatedDataset(base, angles=[0, 90, 180], mode="random", seed=2)
    assert set(listed.angles.tolist()) == {0.0, 90.0, 180.0}


def test_getitems_equals_getitem_and_dataloader_collates_info() -> None:
    base = small_dataset(n=5, normalized=True)
    ds = RotatedDataset(base, angles=[0, 30, 90, 200], mode="all")
    idx = [3, 0, 17, 9, 9, -1]
    batch = ds.__getitems__(idx)
    for i, (image, label, info) in zip(idx, batch, strict=True):
        single = ds[i]
        assert torch.allclose(image, single[0], atol=1e-6) and label == single[1]
        assert info == single[2]
    loader = DataLoader(ds, batch_size=8, shuffle=False)
    images, labels, info = next(iter(loader))
    assert images.shape == (8, 1, 9, 9) and labels.dtype == torch.int64
    assert info["element"].tolist() == [0, 1, 2, 3, 0, 1, 2, 3]
    assert info["angle"].dtype == torch.float64 and info["reflection"].dtype == torch.bool
    n = sum(x.shape[0] for x, _, _ in loader)
    assert n == len(ds)


def test_normalisation_comes_after_the_rotation() -> None:
    base = small_dataset(n=2, normalized=True)
    ds = RotatedDataset(base, angles=[45])
    image, _, _ = ds[0]
    raw = ImageAction().apply(base.images[:1], SO2().rotation(torch.tensor(math.pi / 4)))[0]
    assert torch.allclose(image, (raw - 0.5) / 0.2, atol=1e-6)
    # corners brought in from outside are black before normalisation: -mean/std after it
    assert image[0, 0, 0].item() == pytest.approx(-2.5)


class _TupleDataset(Dataset):
    def __init__(self, images, labels):
        self.images, self.labels = images, labels

    def __len__(self):
        return len(self.labels)

    def __getitem__(self, i):
        return self.images[i], int(self.labels[i])


def test_generic_map_style_base() -> None:
    base = small_dataset(n=3)
    generic = _TupleDataset(base.images, base.labels)
    ds = RotatedDataset(generic, group=C4)
    ref = RotatedDataset(base, group=C4)
    for i in range(len(ds)):
        assert torch.equal(ds[i][0], ref[i][0]) and ds[i][1] == ref[i][1]
    assert torch.equal(ds.labels, ref.labels)


def test_rotate_batch_and_orbit_batch() -> None:
    x = torch.rand(4, 2, 7, 7, dtype=torch.float64)
    assert torch.equal(rotate_batch(x, "C4", 1), torch.rot90(x, 1, (-2, -1)))
    assert torch.equal(rotate_batch(x, D4, 4), torch.flip(x, (-1,)))
    per_sample = rotate_batch(x, [0, 90, 180, 270], torch.tensor([0, 1, 2, 3]))
    for b in range(4):
        assert torch.equal(per_sample[b], torch.rot90(x[b], b, (-2, -1)))
    orbit = orbit_batch(x, "C8")
    assert orbit.shape == (8, 4, 2, 7, 7) and orbit.dtype == torch.float64
    for k in range(8):
        assert torch.allclose(orbit[k], ImageAction().apply(x, k, C8), atol=1e-12)
    before = x.clone()
    orbit_batch(x, range(0, 360, 30), action=ImageAction(padding="border"))
    assert torch.equal(x, before)


def test_rotate_batch_commutes_with_c4_but_not_with_d4() -> None:
    x = torch.rand(3, 1, 8, 8, dtype=torch.float64)
    act = ImageAction()

    def fn(y):
        return rotate_batch(y, C4, 1)

    # a fixed rotation commutes with every rotation: equivariant for C4, exactly
    assert_equivariant(fn, x, C4, act, act, exact=True)
    # ... but not with reflections: the same check fails for D4
    with pytest.raises(AssertionError):
        assert_equivariant(fn, x, D4, act, act)


def test_rotation_set() -> None:
    rs = RotationSet(group="D4")
    assert len(rs) == 8 and rs.angles.tolist() == [0, 90, 180, 270] * 2
    assert rs.reflections.tolist() == [False] * 4 + [True] * 4
    assert rs.names()[5] == "flip, then 90°"
    assert rs.info(5) == {"element": 5, "angle": 90.0, "reflection": True}
    ra = RotationSet.parse(range(0, 360, 120))
    assert ra.group is None and ra.angles.tolist() == [0.0, 120.0, 240.0]
    assert RotationSet.parse(rs) is rs


def test_bad_input_raises() -> None:
    base = small_dataset()
    with pytest.raises(ValueError, match="give a finite group"):
        RotatedDataset(base)
    with pytest.raises(ValueError, match="not both"):
        RotatedDataset(base, group=C4, angles=[0, 90])
    with pytest.raises(ValueError, match="mode 'all'"):
        RotatedDataset(base, group="SO2")
    with pytest.raises(ValueError, match="mode must be one of"):
        RotatedDataset(base, group=C4, mode="some")
    with pytest.raises(ValueError, match="finite groups"):
        RotatedDataset(base, group="SO3", mode="random")
    with pytest.raises(ValueError, match="unknown group"):
        RotatedDataset(base, group="Z4")
    with pytest.raises(TypeError, match="Action"):
        RotatedDataset(base, group=C4, action="bilinear")
    with pytest.raises(TypeError, match="angles"):
        RotatedDataset(base, angles=["a"])
    with pytest.raises(ValueError, match="non-empty"):
        RotatedDataset(base, angles=[])
    with pytest.raises(IndexError):
        RotatedDataset(base, group=C4)[24]
    with pytest.raises(ValueError, match=r"positions must lie in \[0, 3\]"):
        rotate_batch(torch.zeros(1, 1, 3, 3), C4, 4)
    with pytest.raises(ValueError, match="finite group"):
        RotationSet(group="SO2")
