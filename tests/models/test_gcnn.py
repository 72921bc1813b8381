"""P4 / P4M CNNs and ResNets, strided group convolutions and the regular batch norm."""

from __future__ import annotations

import pytest
import torch

from equify.actions import ImageAction, InvariantAction, RegularAction
from equify.groups import CyclicGroup, DihedralGroup
from equify.models import create_model, load_model, save_checkpoint
from equify.nn import GroupConv2d, LiftingConv2d, RegularBatchNorm
from equify.testing import assert_equivariant, equivariance_error

NAMES = ["p4cnn", "p4mcnn", "p4resnet", "p4mresnet"]


@pytest.mark.parametrize("name", NAMES)
def test_strided_models_are_exact_only_at_centred_sizes(name) -> None:
    torch.manual_seed(0)
    model = create_model(name, channels=(3, 4, 4)).eval()
    g = model.group
    assert model(torch.randn(2, 1, 29, 29)).shape == (2, 10)
    assert_equivariant(model, torch.randn(2, 1, 29, 29), g, ImageAction(), InvariantAction())
    off = equivariance_error(model, torch.randn(2, 1, 28, 28), g, ImageAction(), InvariantAction())
    assert off.max_relative_error() > 1e-4


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("size", [27, 28, 29, 30])
def test_centred_models_are_exact_at_every_size(name, size) -> None:
    torch.manual_seed(1)
    model = create_model(name, channels=(3, 4, 4), downsampling="centred").eval()
    x = torch.randn(2, 1, size, size)
    assert_equivariant(model, x, model.group, ImageAction(), InvariantAction())
    feats = model.features(x)
    assert feats.shape[1] == 4 * model.group.order
    assert_equivariant(model.features, x, model.group, ImageAction(), RegularAction(model.group))


def test_models_round_trip_through_checkpoints(tmp_path) -> None:
    model = create_model("p4mcnn", channels=(2, 3), in_channels=3, num_classes=4).eval()
    path = save_checkpoint(tmp_path / "m.pt", model)
    loaded = load_model(path).eval()
    x = torch.rand(2, 3, 17, 17)
    torch.testing.assert_close(loaded(x), model(x))
    with pytest.raises(ValueError, match="downsampling must be one of"):
        create_model("p4cnn", downsampling="pooled")


@pytest.mark.parametrize("group", [CyclicGroup(4), DihedralGroup(4)], ids=str)
def test_strided_and_dilated_group_convolutions(group) -> None:
    lift = LiftingConv2d(2, 3, 3, group, padding=1, stride=2).double()
    conv = GroupConv2d(3, 2, 3, group, dilation=2, stride=2, padding=2).double()
    x = torch.randn(2, 2, 13, 13, dtype=torch.float64)  # (13 + 2 - 2 - 1) % 2 == 0: centred
    assert_equivariant(lift, x, group, ImageAction(), RegularAction(group))
    f = lift(x)  # 7 x 7: (7 + 4 - 4 - 1) % 2 == 0
    assert_equivariant(conv, f, group, RegularAction(group), RegularAction(group))
    torch.testing.assert_close(conv.export()(f), conv(f))
    torch.testing.assert_close(lift.export()(x), lift(x))
    assert conv(f).shape == (2, 2 * group.order, 4, 4)
    off = equivariance_error(lift, x[..., :12, :12], group, ImageAction(), RegularAction(group))
    assert off.max_error() > 1e-3  # 12 pixels: not centred
    with pytest.raises(ValueError, match="stride must be a positive int"):
        GroupConv2d(2, 2, 3, group, stride=0)


def test_regular_batch_norm_commutes_with_the_group() -> None:
    g = DihedralGroup(4)
    bn = RegularBatchNorm(g, 3).double()
    x = torch.randn(4, 3 * 8, 5, 5, dtype=torch.float64)
    for mode in (True, False):
        bn.train(mode)
        assert_equivariant(bn, x, g, RegularAction(g), RegularAction(g))
    assert bn.running_mean.shape == (3,)
    with pytest.raises(ValueError, match="regular features"):
        bn(torch.randn(2, 5, 4, 4))
