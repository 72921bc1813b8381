"""The public equivariance checker, tested against equivariant and non-equivariant functions."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from equify.actions import ImageAction, InvariantAction, PointAction, RegularAction
from equify.groups import SO3, CyclicGroup, DihedralGroup
from equify.testing import assert_equivariant, default_tolerance, equivariance_error

C4, D4 = CyclicGroup(4), DihedralGroup(4)


class C4SymmetrizedConv(nn.Module):
    """f(x) = mean_g g·conv(g⁻¹x): C4-equivariant whatever the convolution's weights."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(2, 3, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        act = ImageAction()
        outs = [act.apply(self.conv(act.apply(x, C4.inverse(g), C4)), g, C4) for g in range(4)]
        return torch.stack(outs).mean(0)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_symmetrized_convolution_passes(dtype) -> None:
    model = C4SymmetrizedConv().to(dtype)
    x = torch.randn(2, 2, 13, 13, dtype=dtype)
    report = assert_equivariant(model, x, C4, ImageAction(), ImageAction())
    assert report.max_abs.shape == (4,)
    assert report.max_relative_error() < default_tolerance(dtype)[1]


def test_plain_convolution_fails_with_a_per_element_table() -> None:
    conv = nn.Conv2d(2, 3, 3, padding=1).double()
    x = torch.randn(2, 2, 13, 13, dtype=torch.float64)
    with pytest.raises(AssertionError) as info:
        assert_equivariant(conv, x, C4, ImageAction(), ImageAction())
    msg = str(info.value)
    assert "not equivariant to C4: 3 of 4 elements" in msg
    assert "1 (rotation 90°)" in msg and "max abs" in msg
    report = equivariance_error(conv, x, C4, ImageAction(), ImageAction())
    assert float(report.max_abs[0]) == 0.0  # the identity is always fine
    assert bool((report.max_abs[1:] > 1e-2).all())


def test_non_invariant_classifier_fails_and_pooled_one_passes() -> None:
    flat = nn.Sequential(nn.Flatten(), nn.Linear(2 * 9 * 9, 5)).double()
    pooled = nn.Sequential(nn.Conv2d(2, 5, 1), nn.AdaptiveAvgPool2d(1), nn.Flatten()).double()
    x = torch.randn(3, 2, 9, 9, dtype=torch.float64)
    with pytest.raises(AssertionError, match="not equivariant to D4"):
        assert_equivariant(flat, x, D4, ImageAction(), InvariantAction())
    # a 1x1 conv followed by global average pooling is D4 invariant (to rounding)
    assert_equivariant(pooled, x, D4, ImageAction(), InvariantAction())


def test_exact_mode_demands_bit_identical_outputs() -> None:
    x = torch.randn(2, 1, 8, 8)
    assert_equivariant(lambda t: 2 * t.relu(), x, D4, ImageAction(), ImageAction(), exact=True)
    nudged = lambda t: t + 1e-7 * t[..., :1, :1]  # noqa: E731 - tiny non-equivariant term
    assert_equivariant(nudged, x, D4, ImageAction(), ImageAction())  # passes the float32 tolerance
    with pytest.raises(AssertionError, match="atol=0"):
        assert_equivariant(nudged, x, D4, ImageAction(), ImageAction(), exact=True)


def test_regular_features_and_custom_elements() -> None:
    # Lifting x to (h -> h·φ(h⁻¹·x)) maps images to the regular representation exactly,
    # for any φ: the same φ(h⁻¹g·x) is computed on both sides of the check.
    phi = nn.Conv2d(1, 2, 3, padding=1)

    def lift(x: torch.Tensor) -> torch.Tensor:
        act = ImageAction()
        per_h = [act.apply(phi(act.apply(x, C4.inverse(h), C4)), h, C4) for h in range(4)]
        return torch.stack(per_h, dim=2).flatten(1, 2)  # channel c·|G| + h

    x = torch.randn(2, 1, 10, 10)
    assert_equivariant(lift, x, C4, ImageAction(), RegularAction(C4), exact=True)
    report = equivariance_error(
        lift, x, C4, ImageAction(), RegularAction(C4), elements=torch.tensor([1, 3])
    )
    assert report.elements.tolist() == [1, 3]


def test_continuous_group_samples() -> None:
    x = torch.randn(4, 16, 3, dtype=torch.float64)
    norms = lambda p: p.norm(dim=-1)  # noqa: E731
    first = lambda p: p[..., 0]  # noqa: E731
    report = assert_equivariant(norms, x, SO3(), PointAction(), InvariantAction(), n_samples=32)
    assert report.elements.shape == (32, 3, 3)
    with pytest.raises(AssertionError, match="32 of 32 elements"):
        assert_equivariant(first, x, SO3(), PointAction(), InvariantAction(), n_samples=32)
    # points -> points: centring is equivariant
    centre = lambda p: p - p.mean(1, keepdim=True)  # noqa: E731
    assert_equivariant(centre, x, SO3(), PointAction(), PointAction())


def test_checker_bad_input() -> None:
    x = torch.randn(1, 1, 4, 4)
    with pytest.raises(TypeError, match="Action"):
        equivariance_error(lambda t: t, x, C4, "image", ImageAction())  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="Group"):
        equivariance_error(lambda t: t, x, "C4", ImageAction(), ImageAction())  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="callable"):
        equivariance_error(3, x, C4, ImageAction(), ImageAction())  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="return a torch.Tensor"):
        equivariance_error(lambda t: (t,), x, C4, ImageAction(), ImageAction())
    with pytest.raises(ValueError, match="n_samples"):
        equivariance_error(
            lambda t: t, torch.randn(1, 3, 3), SO3(), PointAction(), PointAction(), n_samples=0
        )
    with pytest.raises(ValueError, match=r"\(n,\)"):
        equivariance_error(
            lambda t: t, x, C4, ImageAction(), ImageAction(), elements=torch.tensor([[1]])
        )
