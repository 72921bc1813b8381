"""Centred downsampling and group pooling."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from equify import (
    CyclicGroup,
    DihedralGroup,
    ImageAction,
    InvariantAction,
    RegularAction,
    assert_equivariant,
)
from equify.nn import CentredPool2d, GroupPool, centred_pool_geometry, is_centred


def test_is_centred_matches_the_condition() -> None:
    # stride-2 3x3 convs with padding 1 are centred at odd sizes only (Edixhoven et al.)
    assert [is_centred(n, 3, 2, 1) for n in (27, 28, 32, 33)] == [True, False, False, True]
    # 2x2 pooling is centred at even sizes only
    assert [is_centred(n, 2, 2, 0) for n in (27, 28, 32, 33)] == [False, True, True, False]
    assert is_centred(5, 5, 3, 0) and not is_centred(4, 5, 1, 0)  # kernel larger than the input
    for n in range(1, 30):
        assert is_centred(n, 3, 1, 1)  # stride 1 is always centred


@pytest.mark.parametrize("stride", [1, 2, 3, 4])
def test_geometry_is_centred_for_every_size(stride) -> None:
    for n in range(1, 60):
        k, p = centred_pool_geometry(n, stride)
        assert is_centred(n, k, stride, p)
        assert k >= stride and 2 * p <= k  # reads every pixel; valid PyTorch padding
        assert (n + 2 * p - k) // stride + 1 == math.ceil(n / stride)
    assert centred_pool_geometry(28, 2) == (2, 0)
    assert centred_pool_geometry(27, 2) == (3, 1)


def test_helpers_validate_arguments() -> None:
    with pytest.raises(ValueError, match="stride"):
        is_centred(10, 3, 0, 1)
    with pytest.raises(TypeError, match="size"):
        centred_pool_geometry(10.0, 2)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="mode"):
        CentredPool2d(2, mode="median")
    with pytest.raises(ValueError, match=r"\(B, C, H, W\)"):
        CentredPool2d()(torch.randn(3, 8, 8))


@pytest.mark.parametrize("mode", ["avg", "max"])
def test_centred_pool_is_exactly_equivariant_at_every_size(mode) -> None:
    group = DihedralGroup(4)
    pool = CentredPool2d(2, mode)
    for n in range(1, 41):
        x = torch.randn(2, 3, n, n, dtype=torch.float64)
        out = pool(x)
        assert out.shape[-1] == math.ceil(n / 2)
        assert_equivariant(pool, x, group, ImageAction(), ImageAction(), exact=mode == "max")


@pytest.mark.parametrize("stride", [3, 4])
def test_centred_pool_other_strides(stride) -> None:
    group = DihedralGroup(4)
    pool = CentredPool2d(stride)
    for n in (9, 10, 11, 12, 13):
        x = torch.randn(1, 2, n, n, dtype=torch.float64)
        assert_equivariant(pool, x, group, ImageAction(), ImageAction())


def test_centred_pool_on_rectangles_and_regular_features() -> None:
    group = DihedralGroup(2)  # flips and 180° need no square
    pool = CentredPool2d()
    x = torch.randn(2, 4 * 4, 11, 14, dtype=torch.float64)
    assert pool(x).shape == (2, 16, 6, 7)
    assert_equivariant(pool, x, group, RegularAction(group), RegularAction(group))


def test_naive_strided_pooling_fails_at_odd_sizes() -> None:
    group = CyclicGroup(4)
    naive = lambda t: F.avg_pool2d(t, 2, 2)  # noqa: E731
    for n in (27, 33):
        x = torch.randn(2, 3, n, n, dtype=torch.float64)
        with pytest.raises(AssertionError, match="not equivariant"):
            assert_equivariant(naive, x, group, ImageAction(), ImageAction())
    assert_equivariant(naive, torch.randn(2, 3, 28, 28), group, ImageAction(), ImageAction())
    # and a stride-2 3x3 window with padding 1 fails at even sizes
    naive3 = lambda t: F.avg_pool2d(t, 3, 2, 1)  # noqa: E731
    x = torch.randn(2, 3, 28, 28, dtype=torch.float64)
    with pytest.raises(AssertionError, match="not equivariant"):
        assert_equivariant(naive3, x, group, ImageAction(), ImageAction())


@pytest.mark.parametrize("group", [CyclicGroup(4), DihedralGroup(4), CyclicGroup(8)], ids=str)
@pytest.mark.parametrize("reduction", ["mean", "max"])
def test_group_pool_is_invariant(group, reduction) -> None:
    pool = GroupPool(group, reduction)
    n = group.order
    vectors = torch.randn(3, 5 * n, dtype=torch.float64)
    assert pool(vectors).shape == (3, 5)
    exact = torch.tensor([0, 2, 4, 6]) if group == CyclicGroup(8) else None  # spatial part
    exact_ok = reduction == "max"  # a mean over a permuted axis rounds differently
    assert_equivariant(
        pool, vectors, group, RegularAction(group), InvariantAction(), exact=exact_ok
    )
    maps = torch.randn(2, 2 * n, 7, 7, dtype=torch.float64)
    assert pool(maps).shape == (2, 2, 7, 7)
    # on feature maps the spatial part still acts: the pooled map transforms like an image
    assert_equivariant(pool, maps, group, RegularAction(group), ImageAction(), elements=exact)


def test_not_pooling_fails_the_invariance_check() -> None:
    group = CyclicGroup(4)
    first_slot = lambda t: t.reshape(t.shape[0], -1, 4)[..., 0]  # noqa: E731
    with pytest.raises(AssertionError, match="not equivariant"):
        assert_equivariant(
            first_slot, torch.randn(3, 8), group, RegularAction(group), InvariantAction()
        )


def test_group_pool_validation_and_export() -> None:
    pool = GroupPool(DihedralGroup(4), "max")
    with pytest.raises(ValueError, match="divisible by"):
        pool(torch.randn(2, 12))
    with pytest.raises(ValueError, match="reduction"):
        GroupPool(CyclicGroup(4), "sum")
    with pytest.raises(TypeError, match="finite group"):
        GroupPool("O2")
    x = torch.randn(2, 16, 3, 3)
    torch.testing.assert_close(pool.export()(x), pool(x))
    p = CentredPool2d(2, "max")
    torch.testing.assert_close(p.export()(x), p(x))
