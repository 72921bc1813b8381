"""Kernel transform bases: exact permutations for grid symmetries, coset consistency, ranking."""

from __future__ import annotations

import pytest
import torch

from equify import CyclicGroup, DihedralGroup, ImageAction, RegularAction, equivariance_error
from equify.canonicalization.networks import GroupScoreNetwork
from equify.nn import KERNEL_BASES, exact_elements, kernel_transform_basis
from equify.nn.kernels import check_kernel_size, resolve_basis

from ..actions.helpers import smooth_images
from .groups import EXACT_GROUPS, INTERPOLATED_GROUPS


def test_exact_elements_are_the_grid_symmetries() -> None:
    assert exact_elements(CyclicGroup(8)) == [0, 2, 4, 6]
    assert exact_elements(DihedralGroup(8)) == [0, 2, 4, 6, 8, 10, 12, 14]
    assert exact_elements(CyclicGroup(6)) == [0, 3]
    assert exact_elements(DihedralGroup(3)) == [0, 3]
    assert exact_elements(DihedralGroup(4)) == list(range(8))


def test_auto_basis() -> None:
    for g in EXACT_GROUPS:
        assert resolve_basis(g, "auto") == "square"
    for g in INTERPOLATED_GROUPS:
        assert resolve_basis(g, "auto") == "harmonic"
    assert set(KERNEL_BASES) == {"auto", "square", "disk", "harmonic"}


@pytest.mark.parametrize("group", EXACT_GROUPS, ids=str)
@pytest.mark.parametrize("k", [1, 3, 5])
def test_square_basis_is_image_action_on_the_kernel(group, k) -> None:
    t = kernel_transform_basis(group, k, "square")
    assert t.shape == (group.order, k * k, k * k)
    kernel = torch.randn(3, 1, k, k, dtype=torch.float64)
    for h in range(group.order):
        expected = ImageAction().apply(kernel, h, group).reshape(3, k * k)
        assert torch.equal((kernel.reshape(3, k * k) @ t[h].T), expected)
        # a 0/1 permutation matrix
        assert torch.equal(t[h].sum(0), torch.ones(k * k, dtype=torch.float64))
        assert set(t[h].unique().tolist()) <= {0.0, 1.0}


@pytest.mark.parametrize("group", INTERPOLATED_GROUPS + EXACT_GROUPS, ids=str)
@pytest.mark.parametrize("basis", ["square", "disk", "harmonic"])
def test_exact_subgroup_acts_by_exact_permutation(group, basis) -> None:
    """T[g·h] == P_g T[h] to the bit for every exact g: the root of exact-subgroup equivariance."""
    k = 5
    t = kernel_transform_basis(group, k, basis)
    for g in exact_elements(group):
        for h in range(group.order):
            gh = int(group.compose(g, h))
            moved = ImageAction().apply(t[h].T.reshape(-1, 1, k, k), g, group)
            assert torch.equal(t[gh], moved.reshape(-1, k * k).T)


def test_harmonic_basis_is_steerable() -> None:
    """Harmonic kernels are rotated analytically, not interpolated: ring functions do not
    change under rotation, and a rotated (cos φ, sin φ) pair mixes by the rotation matrix."""
    group = CyclicGroup(8)
    t = kernel_transform_basis(group, 5, "harmonic")
    assert t.shape == (8, 25, 9)  # rings r = 0, 1, 2 with m <= r: 1 + 3 + 5 coefficients
    rings, cos1, sin1 = [0, 1, 4], 2, 3
    for h in range(8):
        theta = torch.tensor(h * 2 * torch.pi / 8, dtype=torch.float64)
        assert torch.allclose(t[h][:, rings], t[0][:, rings], atol=1e-12)
        # (h·ψ)(d) = ψ(R⁻¹d): cos(φ - θ) = cos θ cos φ + sin θ sin φ
        expected = torch.cos(theta) * t[0][:, cos1] + torch.sin(theta) * t[0][:, sin1]
        assert torch.allclose(t[h][:, cos1], expected, atol=1e-12)
    # the reflection of D8 flips x: cos φ -> -cos φ, sin φ unchanged
    td = kernel_transform_basis(DihedralGroup(8), 5, "harmonic")
    assert torch.allclose(td[8][:, cos1], -td[0][:, cos1], atol=1e-12)
    assert torch.allclose(td[8][:, sin1], td[0][:, sin1], atol=1e-12)


def test_kernel_size_validation() -> None:
    with pytest.raises(ValueError, match="odd"):
        check_kernel_size(4)
    with pytest.raises(ValueError, match="positive"):
        check_kernel_size(0)
    with pytest.raises(TypeError):
        check_kernel_size(3.0)
    with pytest.raises(ValueError, match="kernel basis"):
        kernel_transform_basis(CyclicGroup(4), 3, "hexagon")
    with pytest.raises(TypeError, match="finite group"):
        kernel_transform_basis("C4", 3)  # type: ignore[arg-type]


def test_basis_ranking_for_interpolated_groups() -> None:
    """Harmonic kernels are far more rotation-equivariant than rotated pixel kernels (C8)."""
    group = CyclicGroup(8)
    x = smooth_images(4, 3, 33, 33, seed=1)
    errors = {}
    for basis, interp in [("square", "bilinear"), ("disk", "bilinear"), ("harmonic", "bilinear")]:
        torch.manual_seed(0)
        net = GroupScoreNetwork(group, 3, kernel_basis=basis, interpolation=interp)
        net = net.double().eval()
        rep = equivariance_error(net, x, group, ImageAction(), RegularAction(group))
        errors[basis] = rep.max_relative_error()
    assert errors["harmonic"] < 0.1
    assert errors["harmonic"] < errors["disk"] / 3 < errors["square"] / 3, errors
