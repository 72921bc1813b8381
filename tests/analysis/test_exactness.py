"""exact_sizes: predicted exactness of strided networks, checked against the measurement."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from equify.actions import ImageAction, InvariantAction
from equify.analysis import ExactSizePad, centred_axis, exact_sizes, nearest_exact_size
from equify.groups import CyclicGroup, DihedralGroup
from equify.models import GroupCNN, GroupResNet
from equify.testing import equivariance_error

SIZES = range(20, 41)


@pytest.mark.parametrize(
    "make",
    [
        lambda: GroupCNN("C4", channels=(4, 6, 8)),
        lambda: GroupCNN("D4", channels=(3, 4)),
        lambda: GroupResNet("C4", channels=(4, 6)),
        lambda: GroupResNet("D4", channels=(3, 4), blocks=2),
        lambda: GroupCNN("C4", channels=(4, 4, 4, 4), kernel_size=5),
    ],
    ids=["p4cnn-3stages", "p4mcnn-2stages", "p4resnet", "p4mresnet-2blocks", "p4cnn-4stages-k5"],
)
def test_prediction_matches_measurement_at_every_size(make) -> None:
    torch.manual_seed(0)
    model = make()
    verdicts = exact_sizes(model, model.group, SIZES, 1, feature_layer="features_net")
    exact = [v.size for v in verdicts if v.predicted_exact]
    assert exact and len(exact) < len(verdicts)  # some sizes are exact, some are not
    for v in verdicts:
        assert v.predicted_exact is v.measured_exact, (v.size, v.reason, v.logit_error)
        if v.predicted_exact:
            assert v.feature_error < 1e-4
        else:
            assert v.breaking_layer is not None and v.logit_error > 1e-4
            assert v.feature_error > 1e-3  # the regular features are off too


def test_the_strided_p4cnn_is_exact_for_one_size_in_four() -> None:
    model = GroupCNN("C4", channels=(4, 6, 8))  # two stride-2 stages (kernel 3, padding 1)
    exact = [v.size for v in exact_sizes(model, "C4", SIZES, 1, measure=False) if v.predicted_exact]
    assert exact == [n for n in SIZES if n % 4 == 1]


@pytest.mark.parametrize("make", [GroupCNN, GroupResNet], ids=["cnn", "resnet"])
@pytest.mark.parametrize("group", ["C4", "D4"])
def test_centred_variants_are_exact_at_every_size(make, group) -> None:
    torch.manual_seed(1)
    model = make(group, channels=(3, 4, 4), downsampling="centred")
    for v in exact_sizes(model, group, SIZES, 1):
        assert v.predicted_exact and v.logit_error < 1e-5, (v.size, v.logit_error)


def test_e2cnn_issue_36_exact_only_at_4k_plus_3() -> None:
    """Two stride-2 3x3 convolutions without padding: exact only for widths 4k + 3."""

    class TwoStrides(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.a = nn.Conv2d(1, 4, 3, stride=2)
            self.b = nn.Conv2d(4, 4, 3, stride=2)
            self.pool = nn.AdaptiveAvgPool2d(1)

        def forward(self, x):
            # an isotropic kernel keeps the layers rotation equivariant where the grid is centred
            return self.pool(self.b(torch.relu(self.a(x)))).flatten(1)

    model = TwoStrides()
    with torch.no_grad():
        for conv in (model.a, model.b):
            w = torch.randn(conv.weight.shape[:2])[..., None, None].expand_as(conv.weight)
            conv.weight.copy_(w.clone())
    verdicts = exact_sizes(model, "C4", range(10, 32), 1)
    assert [v.size for v in verdicts if v.predicted_exact] == [11, 15, 19, 23, 27, 31]
    for v in verdicts:
        assert v.predicted_exact is v.measured_exact, v.size


def test_exact_size_pad_makes_any_size_exact() -> None:
    torch.manual_seed(2)
    model = GroupCNN("D4", channels=(3, 4, 4)).eval()
    wrapped = ExactSizePad(model, "D4", 1).eval()
    for n in SIZES:
        x = torch.randn(2, 1, n, n)
        err = equivariance_error(wrapped, x, DihedralGroup(4), ImageAction(), InvariantAction())
        assert err.max_relative_error() < 1e-5, (n, wrapped.target(n))
        bare = equivariance_error(model, x, DihedralGroup(4), ImageAction(), InvariantAction())
        if n % 4 != 1:
            assert bare.max_relative_error() > 1e-4
    assert wrapped.target(27) == (29, "pad") and wrapped.target(28) == (29, "resize")
    assert wrapped.target(29) == (29, "none")
    with pytest.raises(ValueError, match="symmetric padding"):
        ExactSizePad(model, "D4", 1, mode="pad").target(28)


def test_nearest_exact_size() -> None:
    model = GroupCNN("C4", channels=(4, 6, 8))
    assert nearest_exact_size(model, "C4", 28, 1) == 29
    assert nearest_exact_size(model, "C4", 27, 1) == 29  # larger first at equal distance
    assert nearest_exact_size(model, "C4", 27, 1, parity=True) == 29
    assert nearest_exact_size(model, "C4", 3, 1) == 5  # 3 px is too small: skipped
    with pytest.raises(ValueError, match="no size within"):
        nearest_exact_size(model, "C4", 28, 1, max_distance=0)


@pytest.mark.filterwarnings("ignore:Using padding='same' with even kernel")
def test_user_models_standard_layers_and_what_is_not_analysed() -> None:
    class Mixed(nn.Module):
        def __init__(self, pool: nn.Module, extra: nn.Module | None = None) -> None:
            super().__init__()
            self.conv = nn.Conv2d(1, 2, 3, padding="same")
            self.extra = extra if extra is not None else nn.Identity()
            self.pool = pool

            with torch.no_grad():  # an isotropic kernel: equivariant where the grid allows it
                w = torch.randn(self.conv.weight.shape[:2])[..., None, None]
                self.conv.weight.copy_(w.expand_as(self.conv.weight).clone())

        def forward(self, x):  # a (pooled) map: it transforms like an image
            return self.pool(self.extra(self.conv(x)))

    for bins in (1, 2, 3):  # PyTorch's adaptive bins are mirror-symmetric at any size
        model = Mixed(nn.AdaptiveAvgPool2d(bins))
        adaptive = exact_sizes(model, "C4", [8, 9], 1, out_action=ImageAction())
        assert [v.predicted_exact for v in adaptive] == [True, True]
        assert [v.measured_exact for v in adaptive] == [True, True]
    pooled = Mixed(nn.Sequential(nn.MaxPool2d(2), nn.AdaptiveAvgPool2d(1)))
    floor = exact_sizes(pooled, "C4", [8, 9], 1, out_action=ImageAction())
    assert [v.predicted_exact for v in floor] == [True, False]  # 2x2 pooling drops a row at 9
    assert [v.measured_exact for v in floor] == [True, False]
    assert floor[1].breaking_layer == "pool.0" and "height" in floor[1].reason
    up = Mixed(nn.AdaptiveAvgPool2d(1), nn.Upsample(scale_factor=2))
    (v,) = exact_sizes(up, "C4", [9], 1, out_action=ImageAction())
    assert v.predicted_exact is None and v.unanalysed == ["extra"] and "not analysed" in v.reason
    even_same = nn.Sequential(nn.Conv2d(1, 2, 4, padding="same"), nn.AdaptiveAvgPool2d(1))
    with torch.no_grad():
        w = torch.randn(2, 1, 1, 1).expand(2, 1, 4, 4).clone()
        even_same[0].weight.copy_(w)
    (v,) = exact_sizes(even_same, "C4", [9], 1)
    assert v.predicted_exact is False and "asymmetric" in v.reason and not v.measured_exact


def test_centred_axis_and_bad_input() -> None:
    assert centred_axis(29, 3, 2, 1) and not centred_axis(28, 3, 2, 1)
    assert centred_axis(28, 2, 2, 0) and not centred_axis(2, 5, 1, 0)
    model = GroupCNN("C4", channels=(2, 2))
    with pytest.raises(ValueError, match="sizes must be positive ints"):
        exact_sizes(model, "C4", [0], 1)
    with pytest.raises(ValueError, match="finite group"):
        exact_sizes(model, "SO2", [9], 1)
    with pytest.raises(ValueError, match="no module named 'nosuch'"):
        exact_sizes(model, "C4", [9], 1, feature_layer="nosuch")
    with pytest.raises(TypeError, match="nn.Module"):
        exact_sizes(lambda x: x, "C4", [9], 1)
    assert CyclicGroup(4).order == 4


class _Iso(nn.Module):
    """A conv with isotropic kernels (equivariant where its grid is centred), then ``rest``."""

    def __init__(self, rest: nn.Module, stride: int = 2, padding: int = 0) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 3, 3, stride=stride, padding=padding)
        with torch.no_grad():
            w = torch.randn(3, 1, 1, 1).expand(3, 1, 3, 3).clone()
            self.conv.weight.copy_(w)
        self.rest = rest

    def forward(self, x):
        return self.rest(self.conv(x))


def _verdicts(model, sizes, group="C4"):
    return exact_sizes(model, group, sizes, 1, out_action=ImageAction())


def test_what_escapes_the_hooks_is_reported_not_guessed() -> None:
    # asymmetric padding in a module: predicted off, and so measured
    pad = nn.Sequential(nn.ZeroPad2d((1, 0, 1, 0)), _Iso(nn.AdaptiveAvgPool2d(1)))
    for v in _verdicts(pad, [14, 17]):
        assert v.predicted_exact is False and "asymmetric padding" in v.reason

    class Sliced(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.body = _Iso(nn.AdaptiveAvgPool2d(1), stride=1, padding=1)

        def forward(self, x):
            return self.body(x[..., 1:, 1:])  # a size no module produced

    (v,) = _verdicts(Sliced(), [15])
    assert v.predicted_exact is None and "outside the traced modules" in v.reason
    assert v.measured_exact is False

    class Functional(nn.Module):  # a leaf with its own F.conv2d: unknown, not exact
        def __init__(self) -> None:
            super().__init__()
            self.w = nn.Parameter(torch.ones(2, 1, 3, 3))

        def forward(self, x):
            return torch.nn.functional.conv2d(x, self.w, stride=2).mean((-2, -1), keepdim=True)

    (v,) = _verdicts(Functional(), [14])
    assert v.predicted_exact is None and "Functional is not a layer" in v.reason
    (v,) = _verdicts(nn.Sequential(nn.PixelUnshuffle(2), nn.AdaptiveAvgPool2d(1)), [14])
    assert v.predicted_exact is None
    head = nn.Sequential(
        _Iso(nn.Identity(), stride=1, padding=1), nn.Flatten(), nn.Linear(3 * 81, 2)
    )
    (v,) = exact_sizes(head, "C4", [9], 1)
    assert v.predicted_exact is False and "flattens a 9x9 map" in v.reason


def test_groups_and_geometry_that_do_not_fit() -> None:
    from equify.canonicalization import DiscreteCanonicalizer, EquivariantModel
    from equify.symmetrization import GroupAveraging

    pred = nn.Sequential(nn.Flatten(), nn.Linear(81, 3))
    for model in (
        GroupAveraging(pred, "C2"),
        EquivariantModel(pred, DiscreteCanonicalizer("C2", 1)),
    ):
        (v,) = exact_sizes(model, "C4", [9], 1)
        assert v.predicted_exact is False and "built for C2" in v.reason and not v.measured_exact
        (v,) = exact_sizes(model, "C2", [9], 1)
        assert v.predicted_exact and v.measured_exact
    p4 = GroupCNN("C4", channels=(3, 4))
    (v,) = exact_sizes(p4, "D4", [9], 1)
    assert v.predicted_exact is False and "built for C4" in v.reason and not v.measured_exact
    tall = nn.Sequential(nn.MaxPool2d((3, 1), 1, (1, 0)), nn.AdaptiveAvgPool2d(1))
    (v,) = exact_sizes(tall, "C4", [9], 1, out_action=ImageAction())
    assert v.predicted_exact is False and "height and width" in v.reason
    (v,) = exact_sizes(tall, "D1", [9], 1, out_action=ImageAction())  # flips only: fine
    assert v.predicted_exact is True


def test_ordinary_convolutions_leave_it_to_the_weights() -> None:
    from equify.models import create_model

    learned = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.AdaptiveAvgPool2d(1))
    (v,) = exact_sizes(learned, "C4", [28], 1, out_action=ImageAction())
    assert v.predicted_exact is None and v.grid_centred is True
    assert "depends on their weights" in v.reason and v.measured_exact is False
    # the plain CNN of the benchmarks: its flattened head decides, whatever the weights
    (v,) = exact_sizes(create_model("small_cnn"), "C4", [28], 1)
    assert v.predicted_exact is False and "flattens a 4x4 map" in v.reason
