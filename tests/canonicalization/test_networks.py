"""Equivariant score and vector networks for learned canonicalization."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from equify import (
    O2,
    SO2,
    CyclicGroup,
    DihedralGroup,
    ImageAction,
    PointAction,
    RegularAction,
    assert_equivariant,
    equivariance_error,
)
from equify.canonicalization.networks import (
    GroupScoreNetwork,
    InscribedDiskMask,
    ScoresToVectors,
    SpatialMean,
    VectorNetwork,
    count_parameters,
)
from equify.nn import CentredPool2d, GroupConv2d, LiftingConv2d, RegularGroupNorm, exact_elements

from ..actions.helpers import smooth_images
from ..conftest import devices
from ..nn.groups import EXACT_GROUPS

TOL32 = {"atol": 1e-5, "rtol": 1e-5}


def _net(group, dtype=torch.float64, **kw) -> GroupScoreNetwork:
    return GroupScoreNetwork(group, 3, **kw).to(dtype).eval()


@pytest.mark.parametrize("group", EXACT_GROUPS, ids=str)
@pytest.mark.parametrize("size", [27, 28, 32, 33])
def test_scores_exactly_equivariant_float64_and_float32(group, size) -> None:
    net = _net(group)
    x = torch.randn(2, 3, size, size, dtype=torch.float64)
    assert net(x).shape == (2, group.order)
    assert_equivariant(net, x, group, ImageAction(), RegularAction(group))
    assert_equivariant(net.float(), x.float(), group, ImageAction(), RegularAction(group), **TOL32)


@pytest.mark.parametrize("group", EXACT_GROUPS, ids=str)
def test_scores_exact_at_every_size_from_9_to_40(group) -> None:
    net = _net(group)
    for size in range(9, 41):
        x = torch.randn(1, 3, size, size, dtype=torch.float64)
        assert_equivariant(net, x, group, ImageAction(), RegularAction(group))


def test_naive_strided_network_fails_where_the_grid_is_not_centred() -> None:
    """With L plain stride-2 poolings the network is exact only for sizes divisible by 2^L."""
    group = CyclicGroup(4)
    naive = _net(group, downsampling="strided", num_layers=2)  # 2 poolings
    failing = []
    for size in range(9, 41):
        x = torch.randn(1, 3, size, size, dtype=torch.float64)
        report = equivariance_error(naive, x, group, ImageAction(), RegularAction(group))
        if report.max_relative_error() > 1e-10:
            failing.append(size)
    assert failing == [n for n in range(9, 41) if n % 4], failing
    deeper = _net(group, downsampling="strided", num_layers=3)
    for size, exact in [(27, False), (28, False), (32, True), (33, False)]:
        x = torch.randn(2, 3, size, size, dtype=torch.float64)
        if exact:
            assert_equivariant(deeper, x, group, ImageAction(), RegularAction(group))
        else:
            with pytest.raises(AssertionError, match="not equivariant"):
                assert_equivariant(deeper, x, group, ImageAction(), RegularAction(group))
    # the centred version of the same network passes at all four sizes
    centred = _net(group, num_layers=3)
    for size in (27, 28, 32, 33):
        x = torch.randn(2, 3, size, size, dtype=torch.float64)
        assert_equivariant(centred, x, group, ImageAction(), RegularAction(group))


def test_plain_cnn_scores_fail() -> None:
    group = CyclicGroup(4)
    plain = nn.Sequential(
        nn.Conv2d(3, 8, 5, padding=2), nn.ReLU(), nn.Conv2d(8, 4, 5, padding=2)
    ).double()
    scores = lambda t: plain(t).mean(dim=(-2, -1))  # noqa: E731
    x = torch.randn(2, 3, 16, 16, dtype=torch.float64)
    with pytest.raises(AssertionError, match="not equivariant"):
        assert_equivariant(scores, x, group, ImageAction(), RegularAction(group))


# Documented tolerances: measured worst relative error over 3 seeds (module docstring) x ~1.5-2.
APPROX_TOLERANCE = {
    CyclicGroup(8): 0.1,
    DihedralGroup(8): 0.25,
    CyclicGroup(3): 0.12,
    CyclicGroup(6): 0.12,
}


@pytest.mark.parametrize("group", list(APPROX_TOLERANCE), ids=str)
def test_interpolated_groups_are_approximately_equivariant_on_smooth_images(group) -> None:
    net = _net(group)
    x = smooth_images(4, 3, 33, 33, seed=1)
    report = equivariance_error(net, x, group, ImageAction(), RegularAction(group))
    exact = torch.zeros(group.order, dtype=torch.bool)
    exact[exact_elements(group)] = True
    assert float(report.relative[exact].max()) < 1e-12, report
    assert float(report.relative[~exact].max()) < APPROX_TOLERANCE[group], report


@pytest.mark.parametrize("group", [CyclicGroup(8), DihedralGroup(8)], ids=str)
def test_exact_subgroup_stays_exact_at_every_size(group) -> None:
    net = _net(group)
    elements = torch.tensor(exact_elements(group))
    for size in (9, 16, 27, 28, 32, 33):
        x = torch.randn(2, 3, size, size, dtype=torch.float64)
        assert_equivariant(net, x, group, ImageAction(), RegularAction(group), elements=elements)


def _grid_matrices(with_flips: bool) -> torch.Tensor:
    d4 = DihedralGroup(4)
    return d4.matrix(torch.arange(8 if with_flips else 4))


@pytest.mark.parametrize("continuous", [SO2(), O2()], ids=str)
@pytest.mark.parametrize("size", [28, 33])
def test_vectors_exact_for_quarter_turns_and_flips(continuous, size) -> None:
    net = VectorNetwork(continuous, 3).double().eval()
    x = torch.randn(2, 3, size, size, dtype=torch.float64)
    v = net(x)
    assert v.shape == (2, 1 if isinstance(continuous, SO2) else 2, 2)
    mats = _grid_matrices(with_flips=isinstance(continuous, O2))
    assert_equivariant(net, x, continuous, ImageAction(), PointAction(), elements=mats)
    assert_equivariant(
        net.float(), x.float(), continuous, ImageAction(), PointAction(), elements=mats.float()
    )


# Documented tolerances: measured worst max relative error over 3 seeds x ~2 (module docstring).
@pytest.mark.parametrize(("continuous", "tolerance"), [(SO2(), 0.15), (O2(), 0.25)], ids=str)
def test_vectors_approximately_equivariant_for_sampled_angles(continuous, tolerance) -> None:
    net = VectorNetwork(continuous, 3).double().eval()
    x = smooth_images(4, 3, 33, 33, seed=2)
    report = assert_equivariant(
        net, x, continuous, ImageAction(), PointAction(), n_samples=64, rtol=tolerance, atol=0
    )
    assert float(report.relative.median()) < tolerance / 2


def test_scores_to_vectors_is_equivariant_given_regular_scores() -> None:
    group = DihedralGroup(8)
    to_vec = ScoresToVectors(group, 2)
    s = torch.randn(5, 16, dtype=torch.float64)
    for g in range(16):
        moved = to_vec(RegularAction(group).apply(s, g, group))
        torch.testing.assert_close(moved, PointAction().apply(to_vec(s), g, group))
    with pytest.raises(ValueError, match="num_vectors"):
        ScoresToVectors(group, 3)


@pytest.mark.parametrize(
    "make",
    [
        lambda: GroupScoreNetwork(CyclicGroup(4), 3),
        lambda: GroupScoreNetwork(DihedralGroup(8), 3),
        lambda: VectorNetwork(SO2(), 3),
        lambda: VectorNetwork(O2(), 1),
    ],
    ids=["C4", "D8", "SO2", "O2"],
)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_export_gives_the_same_output_with_plain_modules(make, dtype) -> None:
    net = make().to(dtype).eval()
    exported = net.export().eval()
    allowed = (
        nn.Sequential,
        nn.Conv2d,
        nn.GroupNorm,
        nn.ReLU,
        CentredPool2d,
        SpatialMean,
        InscribedDiskMask,
        ScoresToVectors,
    )
    assert all(isinstance(m, allowed) for m in exported.modules())
    assert not any(
        isinstance(m, (LiftingConv2d, GroupConv2d, RegularGroupNorm)) for m in exported.modules()
    )
    x = torch.randn(3, net.in_channels, 31, 31, dtype=dtype)
    tol = 1e-5 if dtype == torch.float32 else 1e-12
    torch.testing.assert_close(exported(x), net(x), atol=tol, rtol=tol)


@pytest.mark.parametrize(
    "make",
    [
        lambda: GroupScoreNetwork("D4", 2),
        lambda: GroupScoreNetwork("C8", 2),
        lambda: VectorNetwork("O2", 2),
    ],
    ids=["D4", "C8", "O2"],
)
def test_gradients_reach_every_parameter(make) -> None:
    net = make()
    out = net(torch.randn(2, 2, 20, 20))
    (out * torch.randn_like(out)).sum().backward()
    for name, p in net.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
        assert p.grad.abs().sum() > 0, name


@pytest.mark.parametrize("group", [*EXACT_GROUPS, CyclicGroup(8), DihedralGroup(8)], ids=str)
def test_default_networks_are_small(group) -> None:
    net = GroupScoreNetwork(group, 3)
    assert count_parameters(net) < 50_000
    assert net.hidden_channels * group.order <= 64
    assert net.input_mask == (None if group in EXACT_GROUPS else "circle")
    # three blocks where every element acts exactly, two where a third multiplies the error
    assert net.num_layers == (3 if group in EXACT_GROUPS else 2)


def test_defaults_and_shapes() -> None:
    assert GroupScoreNetwork(CyclicGroup(4), 3).hidden_channels == 8
    assert GroupScoreNetwork(DihedralGroup(8), 3).hidden_channels == 4
    net = GroupScoreNetwork(DihedralGroup(2), 1, hidden_channels=3, num_layers=1)
    assert net(torch.randn(2, 1, 12, 17)).shape == (2, 4)  # rectangles work (flips, 180°)
    assert net(torch.randn(1, 1, 1, 1)).shape == (1, 4)
    so2 = VectorNetwork("SO2", 3, n_rotations=4)
    assert so2.finite_group == CyclicGroup(4) and so2.num_vectors == 1
    assert VectorNetwork(O2(), 3).finite_group == DihedralGroup(8)


@pytest.mark.parametrize("device", devices())
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_follows_device_and_dtype(device, dtype) -> None:
    net = VectorNetwork(SO2(), 3).to(device=device, dtype=dtype)
    v = net(torch.randn(2, 3, 16, 16, device=device, dtype=dtype))
    assert v.dtype == dtype and v.device.type == torch.device(device).type


def test_bad_inputs_raise_clear_errors() -> None:
    net = GroupScoreNetwork(CyclicGroup(4), 3)
    with pytest.raises(ValueError, match=r"\(B, Cin, H, W\)"):
        net(torch.randn(3, 16, 16))
    with pytest.raises(ValueError, match="expected 3 input channels"):
        net(torch.randn(1, 1, 16, 16))
    with pytest.raises(TypeError, match="floating"):
        net(torch.zeros(1, 3, 16, 16, dtype=torch.uint8))
    with pytest.raises(TypeError, match=r"\.to\("):
        net(torch.randn(1, 3, 16, 16, dtype=torch.float64))
    with pytest.raises(ValueError, match="downsampling"):
        GroupScoreNetwork(CyclicGroup(4), 3, downsampling="stride")
    with pytest.raises(ValueError, match="input_mask"):
        GroupScoreNetwork(CyclicGroup(4), 3, input_mask="square")
    with pytest.raises(ValueError, match="kernel_size must be odd"):
        GroupScoreNetwork(CyclicGroup(4), 3, kernel_size=4)
    with pytest.raises(ValueError, match="num_layers"):
        GroupScoreNetwork(CyclicGroup(4), 3, num_layers=0)
    with pytest.raises(TypeError, match="finite group"):
        GroupScoreNetwork(SO2(), 3)
    with pytest.raises(ValueError, match="SO2"):
        VectorNetwork(CyclicGroup(4), 3)
    with pytest.raises(ValueError, match="n_rotations"):
        VectorNetwork(SO2(), 3, n_rotations=2)
    vec = VectorNetwork(O2(), 3)
    with pytest.raises(ValueError, match="expected 3 input channels"):
        vec(torch.randn(1, 4, 16, 16))
