"""Lifting and group convolutions: equivariance, reference filter banks, export, validation."""

from __future__ import annotations

import copy
import pickle

import pytest
import torch
from torch import nn

from equify import (
    CyclicGroup,
    DihedralGroup,
    ImageAction,
    RegularAction,
    assert_equivariant,
    equivariance_error,
)
from equify.nn import GroupConv2d, LiftingConv2d, exact_elements

from ..conftest import devices
from .groups import EXACT_GROUPS, INTERPOLATED_GROUPS

TOL32 = {"atol": 1e-5, "rtol": 1e-5}


@pytest.mark.parametrize("group", EXACT_GROUPS, ids=str)
@pytest.mark.parametrize("size", [12, 13])
def test_lifting_conv_is_equivariant_float64(group, size) -> None:
    conv = LiftingConv2d(3, 4, 5, group).double()
    x = torch.randn(2, 3, size, size, dtype=torch.float64)
    assert_equivariant(conv, x, group, ImageAction(), RegularAction(group))


@pytest.mark.parametrize("group", EXACT_GROUPS, ids=str)
@pytest.mark.parametrize("size", [12, 13])
def test_group_conv_is_equivariant_float64(group, size) -> None:
    conv = GroupConv2d(3, 2, 3, group).double()
    x = torch.randn(2, 3 * group.order, size, size, dtype=torch.float64)
    assert_equivariant(conv, x, group, RegularAction(group), RegularAction(group))


@pytest.mark.parametrize("group", [CyclicGroup(4), DihedralGroup(4)], ids=str)
@pytest.mark.parametrize("padding", [0, 1, 4])
def test_equivariant_float32_and_any_padding(group, padding) -> None:
    lift = LiftingConv2d(2, 3, 3, group, padding=padding)
    conv = GroupConv2d(3, 2, 5, group, padding=padding)
    x = torch.randn(2, 2, 11, 11)
    assert_equivariant(lambda t: conv(lift(t)), x, group, ImageAction(), RegularAction(group))
    f = torch.randn(2, 3 * group.order, 10, 10)
    assert_equivariant(conv, f, group, RegularAction(group), RegularAction(group), **TOL32)


@pytest.mark.parametrize("group", INTERPOLATED_GROUPS, ids=str)
def test_exact_subgroup_of_interpolated_groups_is_exact(group) -> None:
    """Inside C8 the 90° rotations (inside D8 all of D4) stay exact to rounding."""
    exact = torch.tensor(exact_elements(group))
    lift = LiftingConv2d(2, 3, 5, group).double()
    conv = GroupConv2d(3, 2, 5, group).double()
    x = torch.randn(2, 2, 14, 14, dtype=torch.float64)
    assert_equivariant(
        lambda t: conv(lift(t)), x, group, ImageAction(), RegularAction(group), elements=exact
    )


@pytest.mark.parametrize("basis", ["square", "disk", "harmonic"])
def test_exact_subgroup_exact_for_every_basis(basis) -> None:
    group = CyclicGroup(8)
    conv = GroupConv2d(2, 2, 5, group, kernel_basis=basis).double()
    f = torch.randn(1, 16, 13, 13, dtype=torch.float64)
    report = equivariance_error(
        conv, f, group, RegularAction(group), RegularAction(group), elements=torch.arange(8)
    )
    rel = report.relative
    assert float(rel[::2].max()) < 1e-12  # 0°, 90°, 180°, 270°
    assert float(rel[1::2].min()) > 1e-3  # 45° multiples are interpolated, hence approximate


@pytest.mark.parametrize("group", EXACT_GROUPS, ids=str)
def test_lifting_filter_bank_matches_image_action_reference(group) -> None:
    conv = LiftingConv2d(2, 3, 3, group).double()
    k, n = 3, group.order
    kernel = conv.weight.detach().reshape(3, 2, k, k)
    bank = conv.filter_bank().detach().reshape(3, n, 2, k, k)
    for h in range(n):
        assert torch.equal(bank[:, h], ImageAction().apply(kernel, h, group))


@pytest.mark.parametrize("group", EXACT_GROUPS, ids=str)
def test_group_filter_bank_matches_derivation(group) -> None:
    """W[o·|G| + h, i·|G| + k] = h·Ψ[o, i, h⁻¹k], built here with explicit loops."""
    conv = GroupConv2d(2, 3, 3, group).double()
    n = group.order
    psi = conv.weight.detach().reshape(3, 2, n, 3, 3)
    bank = conv.filter_bank().detach().reshape(3, n, 2, n, 3, 3)
    for h in range(n):
        for kk in range(n):
            slot = int(group.compose(group.inverse(h), kk))
            expected = ImageAction().apply(psi[:, :, slot], h, group)
            assert torch.equal(bank[:, h, :, kk], expected)


@pytest.mark.parametrize("group", [CyclicGroup(4), DihedralGroup(4)], ids=str)
def test_plain_convolutions_fail_the_same_checks(group) -> None:
    n = group.order
    x = torch.randn(2, 3, 12, 12, dtype=torch.float64)
    plain = nn.Conv2d(3, 4 * n, 5, padding=2).double()
    with pytest.raises(AssertionError, match="not equivariant"):
        assert_equivariant(plain, x, group, ImageAction(), RegularAction(group))
    f = torch.randn(2, 2 * n, 12, 12, dtype=torch.float64)
    plain_g = nn.Conv2d(2 * n, 2 * n, 3, padding=1).double()
    with pytest.raises(AssertionError, match="not equivariant"):
        assert_equivariant(plain_g, f, group, RegularAction(group), RegularAction(group))


def test_group_conv_without_the_slot_permutation_fails() -> None:
    """Rotating kernels spatially without permuting the input group axis is not enough."""
    group = CyclicGroup(4)
    conv = GroupConv2d(2, 2, 3, group).double()
    conv._slot = torch.arange(4).expand(4, 4).clone()  # every h reads slot k (wrong)
    f = torch.randn(1, 8, 9, 9, dtype=torch.float64)
    with pytest.raises(AssertionError, match="not equivariant"):
        assert_equivariant(conv, f, group, RegularAction(group), RegularAction(group))


@pytest.mark.parametrize("group", [CyclicGroup(4), DihedralGroup(4), CyclicGroup(8)], ids=str)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_export_gives_the_same_output(group, dtype) -> None:
    lift = LiftingConv2d(3, 2, 5, group).to(dtype)
    conv = GroupConv2d(2, 3, 3, group, bias=False).to(dtype)
    x = torch.randn(2, 3, 15, 15, dtype=dtype)
    f = lift(x)
    plain_lift, plain_conv = lift.export(), conv.export()
    assert type(plain_lift) is nn.Conv2d and type(plain_conv) is nn.Conv2d
    assert plain_conv.bias is None
    tol = 1e-6 if dtype == torch.float32 else 1e-13
    torch.testing.assert_close(plain_lift(x), f, atol=tol, rtol=tol)
    torch.testing.assert_close(plain_conv(f), conv(f), atol=tol, rtol=tol)
    # detached: later training of the layer does not leak into the export
    before = plain_lift(x).detach().clone()
    with torch.no_grad():
        lift.weight.add_(1.0)
    torch.testing.assert_close(plain_lift(x), before, atol=0, rtol=0)


def test_bias_is_shared_over_the_group_axis() -> None:
    group = DihedralGroup(4)
    conv = LiftingConv2d(1, 3, 3, group)
    out = conv(torch.zeros(1, 1, 5, 5))
    expected = conv.bias.detach().repeat_interleave(8)
    torch.testing.assert_close(out[0, :, 2, 2], expected)
    assert conv.bias.shape == (3,)


@pytest.mark.parametrize("group", [CyclicGroup(4), CyclicGroup(8)], ids=str)
def test_gradients_reach_every_parameter(group) -> None:
    lift = LiftingConv2d(2, 3, 5, group)
    conv = GroupConv2d(3, 2, 5, group)
    out = conv(torch.relu(lift(torch.randn(2, 2, 9, 9))))
    out.square().mean().backward()
    for p in [*lift.parameters(), *conv.parameters()]:
        assert p.grad is not None and torch.isfinite(p.grad).all()
        assert p.grad.abs().sum() > 0


def test_shapes_and_parameter_counts() -> None:
    group = DihedralGroup(4)
    lift = LiftingConv2d(3, 4, 5, group)
    conv = GroupConv2d(4, 6, 3, group, padding=0)
    assert lift.weight.shape == (4, 3, 25)
    assert conv.weight.shape == (6, 4, 8, 9)
    out = conv(lift(torch.randn(2, 3, 10, 12)))
    assert out.shape == (2, 48, 8, 10)  # rectangular input, padding 0 shrinks by k - 1
    harmonic = LiftingConv2d(3, 4, 5, CyclicGroup(8))
    assert harmonic.weight.shape == (4, 3, 9) and harmonic.kernel_basis == "harmonic"
    assert "kernel_basis='harmonic'" in repr(harmonic)


def test_precision_survives_dtype_round_trips_and_copies() -> None:
    """The transform basis lives in float64 outside .to(): float() then double() loses nothing."""
    group = CyclicGroup(8)
    conv = GroupConv2d(2, 2, 5, group).float().double()
    reference = GroupConv2d(2, 2, 5, group).double()
    reference.load_state_dict(conv.state_dict())
    f = torch.randn(1, 16, 9, 9, dtype=torch.float64)
    torch.testing.assert_close(conv(f), reference(f), atol=0, rtol=0)
    for clone in (copy.deepcopy(conv), pickle.loads(pickle.dumps(conv))):
        torch.testing.assert_close(clone(f), conv(f), atol=0, rtol=0)
    assert set(conv.state_dict()) == {"weight", "bias"}


@pytest.mark.parametrize("device", devices())
def test_follows_the_device(device) -> None:
    group = CyclicGroup(4)
    conv = GroupConv2d(1, 1, 3, group).to(device)
    out = conv(torch.randn(1, 4, 6, 6, device=device))
    assert out.device.type == torch.device(device).type


def test_bad_inputs_raise_clear_errors() -> None:
    group = CyclicGroup(4)
    lift = LiftingConv2d(3, 2, 3, group)
    conv = GroupConv2d(2, 2, 3, group)
    with pytest.raises(ValueError, match="kernel_size must be odd"):
        LiftingConv2d(3, 2, 4, group)
    with pytest.raises(TypeError, match="finite group"):
        GroupConv2d(3, 2, 3, "SO2")
    with pytest.raises(TypeError, match="finite group"):
        GroupConv2d(3, 2, 3, 4)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="padding"):
        GroupConv2d(3, 2, 3, group, padding=-1)
    with pytest.raises(ValueError, match="in_channels"):
        GroupConv2d(0, 2, 3, group)
    with pytest.raises(ValueError, match="shape"):
        lift(torch.randn(3, 8, 8))
    with pytest.raises(ValueError, match="expected 3 input channels"):
        lift(torch.randn(1, 4, 8, 8))
    with pytest.raises(ValueError, match=r"expected 8 input channels \(B, Cin·\|G\|"):
        conv(torch.randn(1, 2, 8, 8))
    with pytest.raises(TypeError, match="floating"):
        lift(torch.ones(1, 3, 8, 8, dtype=torch.long))
    with pytest.raises(TypeError, match=r"\.to\("):
        lift(torch.randn(1, 3, 8, 8, dtype=torch.float64))
    with pytest.raises(TypeError, match="torch.Tensor"):
        lift([[1.0]])


def test_group_names_are_parsed() -> None:
    assert LiftingConv2d(1, 1, 3, "d4").group == DihedralGroup(4)
